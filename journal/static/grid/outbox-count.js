// The teacher's home: how many entries wait in this browser's outbox, per class × subject, each
// with a link to the grid that sends them. The page holds the names (#outbox-places, JSON); the
// section stays hidden without script, and when nothing of this person's waits.

import { outboxRecords } from "./outbox.js";

const places = JSON.parse(document.getElementById("outbox-places").textContent);
const section = document.getElementById("outbox-waiting");
const body = section.querySelector("tbody");

function placeOf(record) {
  const journal = places.journals[record.journal];
  const payload = record.submission.payload;
  const subjectId = String(payload.subject ?? places.lessons[String(payload.lesson)] ?? "");
  const subject = journal?.subjects[subjectId];
  return {
    key: `${record.journal}|${subject ? subjectId : ""}`,
    className: journal?.class ?? section.dataset.unknownClass,
    subjectName: subject?.name ?? section.dataset.otherLessons,
    url: subject?.url ?? section.dataset.classesUrl,
  };
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
  return td;
}

async function show() {
  const records = await outboxRecords(places.author);
  const counts = new Map();
  for (const record of records) {
    const place = placeOf(record);
    const found = counts.get(place.key) ?? { ...place, count: 0 };
    found.count += 1;
    counts.set(place.key, found);
  }
  body.replaceChildren();
  for (const place of counts.values()) {
    const row = document.createElement("tr");
    row.className = "unsynced-row";
    cell(row, place.className);
    cell(row, place.subjectName);
    cell(row, String(place.count));
    const link = document.createElement("a");
    link.href = place.url;
    link.textContent = section.dataset.openGrid;
    cell(row, "").append(link);
    body.append(row);
  }
  section.hidden = counts.size === 0;
}

show().catch(() => {});
// send-waiting.js tells when it has sent what waited.
document.addEventListener("outbox-changed", () => show().catch(() => {}));
