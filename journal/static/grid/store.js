// The device's IndexedDB database: its signing key, its device_seq counter and the outbox
// of signed entries the server has not confirmed yet. Opening never deletes a store: a new
// app version may add stores, never drop the outbox.

const DB_NAME = "class-journal";
const DB_VERSION = 1;
let opening = null;

export function openDb() {
  if (opening) return opening;
  opening = new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains("keys")) db.createObjectStore("keys");
      if (!db.objectStoreNames.contains("counters")) db.createObjectStore("counters");
      if (!db.objectStoreNames.contains("outbox")) {
        db.createObjectStore("outbox", { keyPath: "entry_id" });
      }
    };
    request.onsuccess = () => {
      const db = request.result;
      // A newer page wants to upgrade: let it, and open again on the next call.
      db.onversionchange = () => {
        db.close();
        opening = null;
      };
      resolve(db);
    };
    request.onerror = () => {
      opening = null;
      reject(request.error);
    };
  });
  return opening;
}

export function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
  });
}

function result(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function read(storeName, key) {
  const db = await openDb();
  return result(db.transaction(storeName).objectStore(storeName).get(key));
}

export async function readAll(storeName) {
  const db = await openDb();
  return result(db.transaction(storeName).objectStore(storeName).getAll());
}

export async function write(storeName, value, key) {
  const db = await openDb();
  const transaction = db.transaction(storeName, "readwrite");
  transaction.objectStore(storeName).put(value, key);
  return done(transaction);
}
