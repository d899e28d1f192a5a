// The class journal's service worker (scope "/"): the app shell from its versioned cache, the
// teacher's pages network-first with their last copy kept for a day without network. The
// outbox lives in IndexedDB, not here: a new version of this worker never touches it.
const VERSION = {{ version|tojson }};
const SHELL = {{ shell|tojson }};
const MANIFEST = {{ manifest|tojson }};
const SHELL_CACHE = `class-journal-shell-${VERSION}`;
const PAGES_CACHE = "class-journal-pages";
const NETWORK_TIMEOUT_MS = 6000;
const OFFLINE_PAGE = {{ offline_page|tojson }};

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
      await self.clients.claim();
    })(),
  );
});

// The page asks to keep the week and waits for the answer on the port it sends: only then does
// it tell the teacher that the device is ready to work offline.
self.addEventListener("message", (event) => {
  if (!event.data || event.data.type !== "keep-week") return;
  const reply = event.ports[0];
  event.waitUntil(keepWeek().finally(() => reply?.postMessage({ type: "week-kept" })));
});

// The grids with this week's lessons, so that tomorrow's classroom without network works.
async function keepWeek() {
  try {
    const response = await fetch(MANIFEST, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) return;
    const { pages } = await response.json();
    const cache = await caches.open(PAGES_CACHE);
    for (const url of pages) {
      const page = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (page.ok && !page.redirected) await cache.put(url, page);
    }
  } catch (error) {
    // Offline or signed out: keep what we have.
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  if (request.mode === "navigate") {
    event.respondWith(networkFirst(request, url));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(cacheFirst(request));
  }
});

async function networkFirst(request, url) {
  const cache = await caches.open(PAGES_CACHE);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_TIMEOUT_MS);
  try {
    const response = await fetch(request, { signal: controller.signal });
    if (response.ok && response.type === "basic" && url.pathname.startsWith("/teacher/")) {
      await cache.put(url.pathname + url.search, response.clone());
    }
    return response;
  } catch (error) {
    const cached = await cache.match(url.pathname + url.search);
    if (cached) return cached;
    return new Response(OFFLINE_PAGE, {
      status: 503,
      headers: { "Content-Type": "text/html; charset=utf-8" },
    });
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
