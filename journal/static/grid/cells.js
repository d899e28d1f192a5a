// What each grid cell holds: the heads (entries no correction supersedes) folded from the
// server's state, pulled leaves and the outbox. Cell names match the server's Entry.cell.

export const GRADE_LAYERS = ["FO", "SOR", "SOCh"];

export function cellOf(payload) {
  const kind = payload.kind === "correction" ? payload.corrects : payload.kind;
  if (kind === "topic") return `topic:${payload.lesson}`;
  if (kind === "attendance") return `att:${payload.lesson}:${payload.student}`;
  if (kind === "grade") return `${payload.component}:${payload.lesson}:${payload.student}`;
  return null;
}

export function layerOf(cell) {
  return cell.slice(0, cell.indexOf(":"));
}

// The value a head gives its cell; null for a void correction.
export function valueOf(payload) {
  if (payload.kind === "correction" && payload.value === "void") return null;
  const kind = payload.kind === "correction" ? payload.corrects : payload.kind;
  if (kind === "topic") return { topic: payload.topic ?? "", homework: payload.homework ?? "" };
  return payload.value;
}

export function displayText(layer, value, attendanceLabels) {
  if (value === null || value === undefined) return "";
  if (layer === "att") return attendanceLabels[value] ?? String(value);
  if (layer === "topic") return value.topic ?? "";
  if ("score" in value) return String(value.score);
  if ("points" in value) return `${value.points}/${value.max}`;
  if ("mark" in value) return String(value.mark);
  return "";
}

export function sameValue(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Cells {
  constructor(heads = {}, superseded = []) {
    this.heads = new Map();
    for (const [cell, list] of Object.entries(heads)) {
      this.heads.set(cell, list.map(([id, seq, v]) => ({ id, seq, v, status: "synced" })));
    }
    this.superseded = new Set(superseded);
    // Entries the server refused (rejected, conflict): shown on their cell, never heads.
    this.problems = new Map();
  }

  clone() {
    const copy = new Cells();
    for (const [cell, list] of this.heads) copy.heads.set(cell, list.map((h) => ({ ...h })));
    copy.superseded = new Set(this.superseded);
    return copy;
  }

  // Fold one entry in; returns its cell (or null for entries outside the grid's cells).
  apply(payload, status, extra = {}) {
    const cell = cellOf(payload);
    if (cell === null) return null;
    for (const id of payload.supersedes ?? []) this.superseded.add(id);
    const list = (this.heads.get(cell) ?? []).filter((head) => !this.superseded.has(head.id));
    if (!this.superseded.has(payload.entry_id)) {
      const existing = list.find((head) => head.id === payload.entry_id);
      if (existing) {
        Object.assign(existing, { status }, extra);
      } else {
        list.push({ id: payload.entry_id, v: valueOf(payload), status, ...extra });
      }
    }
    this.heads.set(cell, list);
    return cell;
  }

  problem(record) {
    const list = this.problems.get(record.cell) ?? [];
    list.push(record);
    this.problems.set(record.cell, list);
  }

  headsOf(cell) {
    return this.heads.get(cell) ?? [];
  }

  problemsOf(cell) {
    return this.problems.get(cell) ?? [];
  }

  // empty | synced | pending | conflict | error
  stateOf(cell) {
    const heads = this.headsOf(cell);
    if (this.problemsOf(cell).length) return "error";
    if (heads.length > 1) return "conflict";
    if (heads.some((head) => head.status !== "synced")) return "pending";
    return heads.length ? "synced" : "empty";
  }
}
