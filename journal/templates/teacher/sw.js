// The class journal's service worker (scope "/"): the app shell from its versioned cache, the
// teacher's pages network-first with their last copy kept for a day without network. The
// outbox lives in IndexedDB, not here: a new version of this worker, and signing out, never
// touch it.
//
// Kept pages hold children's names and grades, so each belongs to the person signed in when it
// was kept: the server keeps a cookie naming that person (opaquely) in step with the session,
// set while someone is fully signed in and removed when the session ends. Pages go to that
// person's cache only, are shown only while the cookie still names them, and are dropped when
// the cookie names nobody or someone else, on the way to the sign-in page, and on signing out.
const VERSION = {{ version|tojson }};
const SHELL = {{ shell|tojson }};
const MANIFEST = {{ manifest|tojson }};
const LOGIN = {{ login|tojson }};
const LOGOUT = {{ logout|tojson }};
const OWNER_COOKIE = {{ owner_cookie|tojson }};
const SHELL_CACHE = `class-journal-shell-${VERSION}`;
const PAGES_CACHE = "class-journal-pages"; // one per person: class-journal-pages-<owner>
const NETWORK_TIMEOUT_MS = 6000;
const OFFLINE_PAGE = {{ offline_page|tojson }};
const SIGNED_OUT_OFFLINE_PAGE = {{ signed_out_offline_page|tojson }};
const HTML = { "Content-Type": "text/html; charset=utf-8" };

// Bumped whenever pages are dropped: a copy fetched before that is not kept after it.
let generation = 0;

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL_CACHE);
      await cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("class-journal-shell-") && name !== SHELL_CACHE) {
          await caches.delete(name);
        }
      }
      await forgetPages(await pagesOwner()); // also the unowned cache of older versions
      await self.clients.claim();
    })(),
  );
});

// Whose pages this browser may keep and show: the owner cookie's value, null when nobody is
// signed in. Without the Cookie Store API, "shared": then only the explicit clean-ups (sign-in
// page, signing out, a 401 seen by the grid) drop pages.
async function pagesOwner() {
  if (!("cookieStore" in self)) return "shared";
  try {
    const cookie = await self.cookieStore.get(OWNER_COOKIE);
    return cookie && cookie.value ? cookie.value : null;
  } catch (error) {
    return null;
  }
}

function isPagesCache(name) {
  return name === PAGES_CACHE || name.startsWith(`${PAGES_CACHE}-`);
}

// Drop every kept page, but those of ``keep`` when given.
async function forgetPages(keep = null) {
  const kept = keep === null ? null : `${PAGES_CACHE}-${keep}`;
  let dropped = false;
  for (const name of await caches.keys()) {
    if (isPagesCache(name) && name !== kept) {
      dropped = true;
      await caches.delete(name);
    }
  }
  if (dropped || keep === null) generation += 1;
}

// Keep a page fetched since ``since`` for the person the cookie names now (after the response:
// a response that ended the session has removed the cookie by then).
async function keepPage(key, response, since) {
  const owner = await pagesOwner();
  if (owner === null || generation !== since) return false;
  const cache = await caches.open(`${PAGES_CACHE}-${owner}`);
  await cache.put(key, response);
  if (generation === since) return true;
  await cache.delete(key); // dropped while it was being stored
  return false;
}

async function keptPage(key) {
  const owner = await pagesOwner();
  if (owner === null) return undefined;
  const name = `${PAGES_CACHE}-${owner}`;
  if (!(await caches.has(name))) return undefined;
  return (await caches.open(name)).match(key);
}

self.addEventListener("message", (event) => {
  const reply = event.ports[0];
  if (event.data?.type === "keep-week") {
    // The page asks to keep itself and the week and waits for the answer on the port it sends:
    // only then does it tell the teacher that the device is ready to work offline.
    event.waitUntil(
      keepWeek(event.data.page)
        .catch(() => false)
        .then((kept) => reply?.postMessage({ type: "week-kept", kept })),
    );
  } else if (event.data?.type === "forget") {
    event.waitUntil(forgetPages().finally(() => reply?.postMessage({ type: "forgotten" })));
  }
});

// The page itself and the grids with this week's lessons, so that tomorrow's classroom without
// network works. True when ``page`` was kept. Nobody opens these copies now: the header tells
// the server, whose access log records them as pre-fetches, not as the teacher's views.
const PREFETCH = { credentials: "same-origin", cache: "no-store", headers: { {{ prefetch_header|tojson }}: "offline-copy" } };

async function keepWeek(page) {
  const since = generation;
  let kept = false;
  try {
    if (page) {
      const response = await fetch(page, PREFETCH);
      if (response.ok && !response.redirected) kept = await keepPage(page, response, since);
    }
    const response = await fetch(MANIFEST, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) return kept;
    const { pages } = await response.json();
    for (const url of pages) {
      const copy = await fetch(url, PREFETCH);
      if (copy.ok && !copy.redirected) await keepPage(url, copy, since);
    }
  } catch (error) {
    // Offline or signed out: keep what we have.
  }
  return kept;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && request.method === "POST" && url.pathname === LOGOUT) {
    event.respondWith(signOut(request));
    return;
  }
  if (request.method !== "GET" || url.pathname.startsWith("/api/")) return;
  if (request.mode === "navigate") {
    event.respondWith(networkFirst(request, url));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(cacheFirst(request));
  }
});

// "Sign out" drops the kept pages whether or not the server can be reached. Without network
// the server still holds the session: the page that answers says so.
async function signOut(request) {
  await forgetPages();
  try {
    return await fetch(request);
  } catch (error) {
    try {
      await self.cookieStore?.delete(OWNER_COOKIE);
    } catch (ignored) {
      // The cookie comes back with the next answer of a server that still knows the session.
    }
    return new Response(SIGNED_OUT_OFFLINE_PAGE, { status: 503, headers: HTML });
  }
}

async function networkFirst(request, url) {
  // On the way to the sign-in page a session has ended or another is starting.
  const signingIn = url.pathname === LOGIN;
  const owner = signingIn ? null : await pagesOwner();
  await forgetPages(owner);
  const since = generation;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_TIMEOUT_MS);
  try {
    const response = await fetch(request, { signal: controller.signal });
    if (response.ok && response.type === "basic" && url.pathname.startsWith("/teacher/")) {
      await keepPage(url.pathname + url.search, response.clone(), since);
    }
    return response;
  } catch (error) {
    const cached = signingIn ? undefined : await keptPage(url.pathname + url.search);
    if (cached) return cached;
    return new Response(OFFLINE_PAGE, { status: 503, headers: HTML });
  } finally {
    clearTimeout(timer);
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  const cached = await cache.match(request, { ignoreSearch: true });
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}
