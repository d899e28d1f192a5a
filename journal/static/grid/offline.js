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
  registration.active?.postMessage({ type: "keep-week" });
  return true;
}

export async function askPersistentStorage() {
  if (!navigator.storage?.persist) return null;
  if (await navigator.storage.persisted()) return true;
  return navigator.storage.persist();
}
