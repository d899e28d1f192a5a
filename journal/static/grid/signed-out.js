// Run by the sign-in page: whoever was signed in here before is not any more (signed out,
// session ended by the server, or someone else is signing in), so the journal's kept pages
// go, in this tab and in the journal's other open tabs. The outbox of signed entries stays
// (see offline.js).

import { forgetPages } from "./offline.js";

forgetPages({ otherTabs: true }).catch(() => {});
