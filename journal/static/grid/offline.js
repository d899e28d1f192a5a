// The service worker and the offline copies of the teacher's pages. The worker keeps them, for
// the person signed in only (see sw.js); pages ask it and never write the cache themselves.

const PAGES_CACHE = "class-journal-pages";
const CHANNEL = "class-journal";

export async function registerServiceWorker(url) {
  if (!("serviceWorker" in navigator)) return null;
  const registration = await navigator.serviceWorker.register(url, { scope: "/" });
  registration.update().catch(() => {}); // look for a new app version on every load
  return registration;
}

// Resolves when the service worker has kept this page and the week's grids (or has given up:
// offline, signed out), with whether this page was kept, so that "ready to work offline" is
// true when it is shown. A worker that does not answer (an older version) is not waited for
// longer than WEEK_TIMEOUT_MS.
const WEEK_TIMEOUT_MS = 30000;

export async function keepForOffline(pageUrl) {
  if (!("serviceWorker" in navigator)) return false;
  const registration = await navigator.serviceWorker.ready;
  const worker = registration.active;
  if (!worker) return false;
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(false), WEEK_TIMEOUT_MS);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      resolve(event.data?.kept === true);
    };
    worker.postMessage({ type: "keep-week", page: pageUrl }, [channel.port2]);
  });
}

// Drop every kept page (children's names and grades) from this browser: on the sign-in page,
// and when the server says the session has ended. The outbox in IndexedDB stays: its entries
// wait for their author's next sign-in. ``otherTabs``: also tell the journal's other open tabs.
export async function forgetPages({ otherTabs = false } = {}) {
  forgetReady();
  if ("caches" in self) {
    for (const name of await caches.keys()) {
      if (name === PAGES_CACHE || name.startsWith(`${PAGES_CACHE}-`)) await caches.delete(name);
    }
  }
  // The worker too: it must not store a copy it is fetching right now.
  const registration = await navigator.serviceWorker?.getRegistration("/");
  registration?.active?.postMessage({ type: "forget" });
  if (otherTabs && "BroadcastChannel" in self) {
    const channel = new BroadcastChannel(CHANNEL);
    channel.postMessage({ type: "signed-out" });
    channel.close();
  }
}

// Another tab went to the sign-in page: the session here is over too.
export function onSignedOutElsewhere(callback) {
  if (!("BroadcastChannel" in self)) return;
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = (event) => {
    if (event.data?.type === "signed-out") callback();
  };
}

export async function askPersistentStorage() {
  if (!navigator.storage?.persist) return null;
  if (await navigator.storage.persisted()) return true;
  return navigator.storage.persist();
}

// Which pages the worker said it kept: "ready to work offline" is shown again after a reload
// without network, until the kept pages are forgotten.
const READY_KEY = "class-journal.kept-pages";

function readyPages() {
  try {
    return JSON.parse(localStorage.getItem(READY_KEY) ?? "[]");
  } catch (error) {
    return [];
  }
}

export function rememberReady(pageUrl) {
  const pages = readyPages().filter((page) => page !== pageUrl);
  localStorage.setItem(READY_KEY, JSON.stringify([...pages.slice(-49), pageUrl]));
}

export function wasKept(pageUrl) {
  return readyPages().includes(pageUrl);
}

function forgetReady() {
  try {
    localStorage.removeItem(READY_KEY);
  } catch (error) {
    // storage unavailable: nothing was remembered
  }
}
