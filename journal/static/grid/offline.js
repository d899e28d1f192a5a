// The service worker and the offline copy of this page.

export const PAGES_CACHE = "class-journal-pages";

export async function registerServiceWorker(url) {
  if (!("serviceWorker" in navigator)) return null;
  const registration = await navigator.serviceWorker.register(url, { scope: "/" });
  registration.update().catch(() => {}); // look for a new app version on every load
  return registration;
}

// Keep this page (and the week's other grids) for a day without network.
export async function keepForOffline(pageUrl) {
  if (!("serviceWorker" in navigator)) return false;
  const registration = await navigator.serviceWorker.ready;
  const cache = await caches.open(PAGES_CACHE);
  const response = await fetch(pageUrl, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok || response.redirected) return false;
  await cache.put(pageUrl, response);
  await keepWeek(registration);
  return true;
}

// Resolves when the service worker has kept the week's grids (or has given up: offline,
// signed out), so that "ready to work offline" is true when it is shown. A worker that does
// not answer (an older version) is not waited for longer than WEEK_TIMEOUT_MS.
const WEEK_TIMEOUT_MS = 30000;

function keepWeek(registration) {
  const worker = registration.active;
  if (!worker) return Promise.resolve();
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(resolve, WEEK_TIMEOUT_MS);
    channel.port1.onmessage = () => {
      clearTimeout(timer);
      resolve();
    };
    worker.postMessage({ type: "keep-week" }, [channel.port2]);
  });
}

export async function askPersistentStorage() {
  if (!navigator.storage?.persist) return null;
  if (await navigator.storage.persisted()) return true;
  return navigator.storage.persist();
}
