// The outbox: every change becomes a signed entry here at once, before any network. Entries
// leave it only when the server answers accepted or duplicate (DESIGN §6).

import { cellOf } from "./cells.js";
import { canonicalBytes } from "./jcs.js";
import { base64, sign } from "./keys.js";
import { done, openDb, readAll } from "./store.js";

export const MAX_PAYLOAD_BYTES = 4096;

export class EntryTooLarge extends Error {}

// Sign ``fields`` (journal, kind, author and the kind's own fields) as the next entry of this
// device. device_seq is gap-free per device: a Web Lock holds it across tabs while signing.
export function queueEntry(key, fields) {
  return navigator.locks.request("class-journal-device-seq", async () => {
    const db = await openDb();
    const counter = db.transaction("counters").objectStore("counters").get(key.kid);
    const next = await new Promise((resolve, reject) => {
      counter.onsuccess = () => resolve(counter.result ?? 0);
      counter.onerror = () => reject(counter.error);
    });
    const payload = {
      ...fields,
      v: 1,
      entry_id: crypto.randomUUID(),
      device_id: key.kid,
      device_seq: next,
      created_at: new Date().toISOString(),
    };
    const bytes = canonicalBytes(payload);
    if (bytes.length > MAX_PAYLOAD_BYTES) throw new EntryTooLarge("the entry is too long");
    const sig = await sign(key, bytes);
    const record = {
      entry_id: payload.entry_id,
      kid: key.kid,
      device_seq: next,
      journal: payload.journal,
      cell: cellOf(payload),
      submission: { payload, alg: key.alg, kid: key.kid, sig: base64(sig) },
      state: "pending",
      created: Date.now(),
    };
    const transaction = db.transaction(["counters", "outbox"], "readwrite");
    transaction.objectStore("counters").put(next + 1, key.kid);
    transaction.objectStore("outbox").put(record);
    await done(transaction);
    return record;
  });
}

// The entries waiting on this device, of ``author`` only when given: the outbox outlives
// sign-outs, and nobody sees, sends or exports someone else's entries.
export async function outboxRecords(author = undefined) {
  const records = (await readAll("outbox")).filter(
    (record) => author === undefined || record.submission.payload.author === author,
  );
  return records.sort((a, b) => a.kid.localeCompare(b.kid) || a.device_seq - b.device_seq);
}

export async function settle(removedIds, updatedRecords) {
  const db = await openDb();
  const transaction = db.transaction("outbox", "readwrite");
  const store = transaction.objectStore("outbox");
  for (const id of removedIds) store.delete(id);
  for (const record of updatedRecords) store.put(record);
  return done(transaction);
}

// The teacher's own decision about an entry the server refused: drop it from this device.
export async function discard(entryId) {
  return settle([entryId], []);
}
