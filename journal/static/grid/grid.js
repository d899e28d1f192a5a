// The teacher's grid: students × lessons, one layer at a time (attendance, FO, SOR, SOCh) and
// the lessons' topics. Keyboard first: arrows move, digits type, Enter saves and goes down,
// Delete empties a cell, [ and ] switch layers. Every change is signed on this device and
// queued in the outbox at once; the syncer sends it when the network allows.

import { Cells, GRADE_LAYERS, displayText, layerOf, sameValue, valueOf } from "./cells.js";
import { deviceKey } from "./keys.js";
import {
  askPersistentStorage,
  forgetPages,
  keepForOffline,
  onSignedOutElsewhere,
  registerServiceWorker,
  rememberReady,
  wasKept,
} from "./offline.js";
import { EntryTooLarge, discard, outboxRecords, queueEntry } from "./outbox.js";
import { BATCH_SIZE, Syncer } from "./sync.js";

const ATTENDANCE_KEYS = { 1: "absent", 2: "late", 3: "sick", 4: "excused" };
const EXPORT_FORMAT = "class-journal/unsynced-entries";
// One file per sync batch: the import takes no more entries at once than a sync does.
const EXPORT_PART = BATCH_SIZE;
const HEAD_STATES = new Set(["pending", "quarantined"]);
const ENROLLED_KEY = "class-journal.enrolled-kid";

function format(template, values = {}) {
  return template.replace(/\{(\w+)\}/g, (match, name) => String(values[name] ?? match));
}

class GridApp {
  constructor(state, strings) {
    this.state = state;
    this.t = strings;
    this.table = document.getElementById("grid");
    this.info = document.getElementById("cell-info");
    this.lessons = state.lessons.map(([id, date, period]) => ({ id, date, period }));
    this.students = state.students.map(([id, name, spans]) => ({ id, name, spans }));
    // The layers a value is written in; "all" shows them together (and takes no typing).
    this.valueLayers = state.graded ? ["att", ...GRADE_LAYERS] : ["att"];
    this.layers = state.graded ? [...this.valueLayers, "all"] : this.valueLayers;
    const remembered = localStorage.getItem("class-journal.layer");
    this.layer = this.layers.includes(remembered) ? remembered : "att";
    this.base = new Cells(state.heads, state.superseded);
    this.view = this.base.clone();
    this.records = [];
    this.unsynced = 0;
    this.row = 0;
    this.col = 0;
    this.buffer = "";
    this.key = null;
    this.enrolment = "unknown";
    this.confirmButton = document.getElementById("confirm-term");
    // Students whose term grade the log already holds as a signed term_grade entry.
    this.termConfirmed = new Set(
      [...document.querySelectorAll("#grid td.term-grade[data-confirmed='1']")].map((td) =>
        Number(td.dataset.student),
      ),
    );
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    this.syncer = new Syncer({
      urls: state.urls,
      csrfToken: csrf,
      author: state.author,
      journal: state.journal,
      subject: state.subject,
      cursor: state.cursor,
    });
  }

  // -- cells -----------------------------------------------------------------------------------

  tdAt(row, col) {
    if (row < 0) return this.table.tHead.rows[1].cells[col + 1];
    return this.table.tBodies[0].rows[row].cells[col + 1];
  }

  cellName(row, col, layer = this.layer) {
    const lesson = this.lessons[col].id;
    if (row < 0) return `topic:${lesson}`;
    return `${layer}:${lesson}:${this.students[row].id}`;
  }

  // The school's date on this device's clock (the server refuses later lessons anyway).
  today() {
    this.dayFormat ??= new Intl.DateTimeFormat("en-CA", { timeZone: this.state.timeZone });
    return this.dayFormat.format(new Date());
  }

  future(col) {
    return this.lessons[col].date > this.today();
  }

  enrolled(row, col) {
    if (row < 0) return true;
    const day = this.lessons[col].date;
    return this.students[row].spans.some(([from, to]) => from <= day && (to === null || day <= to));
  }

  rebuild() {
    this.view = this.base.clone();
    for (const record of this.records) {
      if (HEAD_STATES.has(record.state)) {
        this.view.apply(record.submission.payload, record.state, { message: record.message });
      } else {
        this.view.problem(record);
      }
    }
  }

  spanFor(cell, layer) {
    const heads = this.view.headsOf(cell);
    const problems = this.view.problemsOf(cell);
    if (!heads.length && !problems.length) return null;
    const labels = this.state.attendance;
    const values = heads.length
      ? heads.map((head) => displayText(layer, head.v, labels))
      : problems.map((record) => displayText(layer, valueOf(record.submission.payload), labels));
    const span = document.createElement("span");
    span.className = `v v-${layer}`;
    span.dataset.state = this.view.stateOf(cell);
    span.textContent = values.filter((text) => text !== "").join(" | ");
    // A value emptied by a correction: an empty cell, which says so when pointed at.
    if (!span.textContent) span.title = this.t.voided;
    return span;
  }

  renderCell(row, col) {
    const td = this.tdAt(row, col);
    if (!this.enrolled(row, col)) return;
    const editing = row >= 0 && row === this.row && col === this.col && this.buffer;
    const spans = [];
    for (const layer of row < 0 ? ["topic"] : this.valueLayers) {
      if (editing && layer === this.layer) {
        const span = document.createElement("span");
        span.className = `v v-${layer} editing`;
        span.textContent = this.buffer;
        spans.push(span);
        continue;
      }
      const span = this.spanFor(this.cellName(row, col, layer), layer);
      if (span) spans.push(span);
    }
    td.replaceChildren(...spans);
    td.dataset.state = this.view.stateOf(this.cellName(row, col));
  }

  renderAll() {
    for (let col = 0; col < this.lessons.length; col += 1) {
      this.renderCell(-1, col);
      for (let row = 0; row < this.students.length; row += 1) this.renderCell(row, col);
    }
    this.renderTermGrades();
    this.renderCounter();
    this.showInfo();
  }

  // -- term grades -----------------------------------------------------------------------------

  isThisTermGrade(payload) {
    const button = this.confirmButton;
    return (
      payload.kind === "term_grade" &&
      button !== null &&
      payload.subject === Number(button.dataset.subject) &&
      payload.term === Number(button.dataset.term)
    );
  }

  termGradePending(studentId) {
    return this.records.some(
      (record) =>
        HEAD_STATES.has(record.state) &&
        this.isThisTermGrade(record.submission.payload) &&
        record.submission.payload.student === studentId,
    );
  }

  renderTermGrades() {
    for (const td of this.table.querySelectorAll("tbody td.term-grade")) {
      if (td.dataset.sealed === "1") continue;
      const student = Number(td.dataset.student);
      let state = "0";
      if (this.termConfirmed.has(student)) state = "1";
      else if (this.termGradePending(student)) state = "pending";
      td.dataset.confirmed = state;
      const labels = { 1: this.t.termConfirmed, pending: this.t.states.pending, 0: "" };
      td.querySelector(".term-state").textContent = labels[state];
    }
  }

  // Sign one term_grade entry per student whose computed grade is not confirmed yet, with the
  // values and the rule the server rendered; they leave through the outbox like any mark.
  async confirmTermGrades() {
    if (this.confirming) return;
    if (this.state.readonly) {
      this.say(this.t.readonly);
      return;
    }
    if (!this.key) {
      this.say(this.t.noKey);
      return;
    }
    const button = this.confirmButton;
    const cells = [...this.table.querySelectorAll("tbody td.term-grade")];
    // New confirmations, and confirmations the marks no longer give (signed again with a
    // reason, superseding the old one). Incomplete pupils and statuses are left alone.
    const fresh = cells.filter(
      (td) => (td.dataset.grade !== "" || td.dataset.result !== "") && td.dataset.confirmed === "0",
    );
    const stale = cells.filter(
      (td) => td.dataset.stale === "1" && /^(\d+|pass|fail)$/.test(td.dataset.now),
    );
    if (!fresh.length && !stale.length) {
      this.say(this.t.termNothing);
      return;
    }
    let reason = null;
    if (stale.length) {
      reason = await this.askReason(false);
      if (!reason) return;
    }
    this.confirming = true;
    let queued = 0;
    const sign = (td, value, percent, extra) => {
      const fields = {
        journal: this.state.journal,
        author: this.state.author,
        kind: "term_grade",
        student: Number(td.dataset.student),
        subject: Number(button.dataset.subject),
        term: Number(button.dataset.term),
        percent: percent === "" ? null : percent,
        rule: { id: button.dataset.ruleId, version: Number(button.dataset.ruleVersion) },
        ...extra,
      };
      if (/^\d+$/.test(value)) fields.grade = Number(value);
      else fields.result = value;
      return this.queue(fields);
    };
    try {
      for (const td of fresh) {
        const value = td.dataset.grade !== "" ? td.dataset.grade : td.dataset.result;
        if (!(await sign(td, value, td.dataset.percent, {}))) break;
        queued += 1;
      }
      for (const td of stale) {
        const extra = { supersedes: [td.dataset.entry], reason };
        if (!(await sign(td, td.dataset.now, td.dataset.nowPercent, extra))) break;
        queued += 1;
      }
    } finally {
      this.confirming = false;
    }
    this.renderTermGrades();
    if (queued) this.say(format(this.t.termQueued, { n: queued }));
  }

  // A status instead of a grade (exempt, not attested) for one pupil's term, with a reason;
  // it replaces a confirmation already signed (naming it).
  async setTermStatus(td) {
    const dialog = document.getElementById("status-dialog");
    const button = this.confirmButton;
    if (!dialog || !button || td.dataset.sealed === "1") return;
    if (!this.key) {
      this.say(this.t.noKey);
      return;
    }
    const student = Number(td.dataset.student);
    const select = dialog.querySelector("select[name=status]");
    const reason = dialog.querySelector("input[name=reason]");
    const name = this.students.find((item) => item.id === student)?.name ?? "";
    dialog.querySelector(".status-who").textContent = name;
    if (td.dataset.code === "exempt" || td.dataset.code === "not_attested") select.value = td.dataset.code;
    reason.value = "";
    dialog.returnValue = "";
    dialog.showModal();
    select.focus();
    const saved = await new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "save"), { once: true });
    });
    if (!saved || !reason.value.trim()) return;
    const fields = {
      journal: this.state.journal,
      author: this.state.author,
      kind: "term_grade",
      student,
      subject: Number(button.dataset.subject),
      term: Number(button.dataset.term),
      percent: null,
      rule: { id: button.dataset.ruleId, version: Number(button.dataset.ruleVersion) },
      status: select.value,
      reason: reason.value.trim(),
    };
    const confirmation = td.dataset.entry;
    if (confirmation) fields.supersedes = [confirmation];
    if (!(await this.queue(fields))) return;
    td.dataset.entry = this.records[this.records.length - 1].entry_id; // a later change names it
    // What the column shows now; the grade's confirmation is no longer offered for this pupil.
    this.termConfirmed.delete(student);
    td.dataset.code = select.value;
    td.dataset.grade = "";
    td.dataset.result = "";
    td.dataset.stale = "0";
    td.querySelector(".term-value").textContent = select.selectedOptions[0].textContent;
    td.querySelector(".term-percent")?.remove();
    td.querySelector(".term-stale")?.remove();
    this.renderTermGrades();
  }

  // Once every term is closed: sign the year results the server computed from the sealed term
  // results (grades or pass/fail; statuses are signed one by one with a reason elsewhere).
  async confirmYearGrades() {
    const button = document.getElementById("confirm-year");
    if (!button || this.confirming) return;
    if (!this.key) {
      this.say(this.t.noKey);
      return;
    }
    const waiting = [...document.querySelectorAll("#year-grades td.year-grade")].filter(
      (td) => td.dataset.confirmed === "0" && /^(\d+|pass|fail)$/.test(td.dataset.code),
    );
    this.confirming = true;
    let queued = 0;
    try {
      for (const td of waiting) {
        const fields = {
          journal: this.state.journal,
          author: this.state.author,
          kind: "year_grade",
          student: Number(td.dataset.student),
          subject: Number(button.dataset.subject),
          rule: { id: button.dataset.ruleId, version: Number(button.dataset.ruleVersion) },
        };
        if (/^\d+$/.test(td.dataset.code)) fields.grade = Number(td.dataset.code);
        else fields.result = td.dataset.code;
        if (!(await this.queue(fields))) break;
        td.dataset.confirmed = "pending";
        queued += 1;
      }
    } finally {
      this.confirming = false;
    }
    this.say(queued ? format(this.t.yearQueued, { n: queued }) : this.t.termNothing);
  }

  renderCounter() {
    document.getElementById("unsynced").textContent = String(this.unsynced);
  }

  // -- moving and typing -----------------------------------------------------------------------

  // The home page's "today" links name their lesson (?lesson=ID): start in its column.
  wantedColumn() {
    const wanted = Number(new URLSearchParams(window.location.search).get("lesson"));
    return Math.max(0, this.lessons.findIndex((lesson) => lesson.id === wanted));
  }

  focusCell(row, col) {
    const previous = this.tdAt(this.row, this.col);
    if (previous) previous.tabIndex = -1;
    this.buffer = "";
    this.renderCell(this.row, this.col);
    this.row = Math.max(-1, Math.min(row, this.students.length - 1));
    this.col = Math.max(0, Math.min(col, this.lessons.length - 1));
    const td = this.tdAt(this.row, this.col);
    td.tabIndex = 0;
    this.showColumn();
    td.focus();
    this.showInfo();
  }

  // -- the phone's card view: one lesson, the pupils down, a keypad ----------------------------

  showColumn() {
    const card = this.phone?.matches ?? false;
    this.table.classList.toggle("card", card);
    const col = card ? this.col : -1;
    if (col === this.shownCol) return;
    for (const tr of this.table.rows) {
      tr.cells[this.shownCol + 1]?.classList.remove("here");
      if (col >= 0) tr.cells[col + 1]?.classList.add("here");
    }
    this.shownCol = col;
    const header = col >= 0 ? this.table.tHead.rows[0].cells[col + 1] : null;
    const label = document.getElementById("card-lesson");
    if (label) label.textContent = header ? header.innerText.replace(/\s+/g, " ") : "";
  }

  bindCard() {
    this.shownCol = -1;
    this.phone = window.matchMedia("(max-width: 600px)");
    this.phone.addEventListener("change", () => this.showColumn());
    const move = (step) => this.focusCell(Math.max(this.row, 0), this.col + step);
    document.getElementById("card-prev")?.addEventListener("click", () => move(-1));
    document.getElementById("card-next")?.addEventListener("click", () => move(1));
    const pad = document.getElementById("pad");
    if (!pad) return;
    // The keys keep the focus on the cell (no on-screen keyboard opens).
    pad.addEventListener("pointerdown", (event) => event.preventDefault());
    pad.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-key]");
      if (!button) return;
      this.onKey({ key: button.dataset.key, preventDefault() {} });
    });
  }

  setLayer(layer) {
    this.layer = layer;
    localStorage.setItem("class-journal.layer", layer);
    for (const name of this.layers) this.table.classList.toggle(`layer-${name}`, name === layer);
    for (const button of document.querySelectorAll("#layers [data-layer]")) {
      button.setAttribute("aria-selected", String(button.dataset.layer === layer));
    }
    this.buffer = "";
    for (let col = 0; col < this.lessons.length; col += 1) {
      for (let row = 0; row < this.students.length; row += 1) {
        this.tdAt(row, col).dataset.state = this.view.stateOf(this.cellName(row, col));
      }
    }
    this.showInfo();
  }

  onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = {
      ArrowUp: [-1, 0],
      ArrowDown: [1, 0],
      ArrowLeft: [0, -1],
      ArrowRight: [0, 1],
    };
    const { key } = event;
    if (key in moves) {
      event.preventDefault();
      const [down, right] = moves[key];
      this.focusCell(this.row + down, this.col + right);
    } else if (key === "Home" || key === "End") {
      event.preventDefault();
      this.focusCell(this.row, key === "Home" ? 0 : this.lessons.length - 1);
    } else if (key === "Enter") {
      event.preventDefault();
      if (this.row < 0) this.editTopic();
      else if (this.buffer) this.commit();
      else this.focusCell(this.row + 1, this.col);
    } else if (key === "Escape") {
      this.buffer = "";
      this.renderCell(this.row, this.col);
    } else if (key === "Backspace") {
      event.preventDefault();
      this.buffer = this.buffer.slice(0, -1);
      this.renderCell(this.row, this.col);
    } else if (key === "Delete") {
      event.preventDefault();
      if (this.row >= 0 && this.layer !== "all") this.write(this.cellName(this.row, this.col), null);
    } else if (key === "[" || key === "]") {
      const index = this.layers.indexOf(this.layer) + (key === "]" ? 1 : -1);
      this.setLayer(this.layers[(index + this.layers.length) % this.layers.length]);
    } else if (/^[0-9/]$/.test(key) && this.row >= 0 && this.buffer.length < 7) {
      event.preventDefault();
      if (this.layer === "all") {
        this.say(this.t.chooseLayer);
        return;
      }
      if (!this.enrolled(this.row, this.col)) {
        this.say(this.t.notEnrolled);
        return;
      }
      if (this.future(this.col)) {
        this.say(this.t.futureLesson);
        return;
      }
      this.buffer += key;
      this.renderCell(this.row, this.col);
    }
  }

  // The lesson's maximum, from the other pupils' results (one maximum per lesson).
  columnMax(layer, col, exceptRow = -1) {
    const lesson = this.lessons[col].id;
    for (const student of this.students) {
      if (student === this.students[exceptRow]) continue;
      for (const head of this.view.headsOf(`${layer}:${lesson}:${student.id}`)) {
        if (head.v && head.v.max) return head.v.max;
      }
    }
    return null;
  }

  parseInput(layer, text, col) {
    if (layer === "att") {
      return ATTENDANCE_KEYS[text] ? { value: ATTENDANCE_KEYS[text] } : { error: this.t.attKeys };
    }
    if (layer === "FO") {
      const score = Number(text);
      return /^\d{1,2}$/.test(text) && score >= 1 && score <= 10
        ? { value: { score } }
        : { error: this.t.foRange };
    }
    const match = /^(\d{1,3})(?:\/(\d{1,3}))?$/.exec(text);
    if (!match) return { error: this.t.pointsFormat };
    const known = this.columnMax(layer, col, this.row);
    const max = match[2] ? Number(match[2]) : known;
    if (max === null) return { error: this.t.pointsFormat };
    if (known !== null && max !== known) return { error: format(this.t.maxOnce, { max: known }) };
    const points = Number(match[1]);
    if (max < 1 || max > 100 || points > max) return { error: this.t.pointsRange };
    return { value: { points, max } };
  }

  // Save the typed value and go down at once: the next keys belong to the next cell even
  // while this entry is still being signed.
  commit() {
    const parsed = this.parseInput(this.layer, this.buffer, this.col);
    if (parsed.error) {
      this.say(parsed.error);
      return;
    }
    const cell = this.cellName(this.row, this.col);
    this.buffer = "";
    this.focusCell(this.row + 1, this.col);
    this.write(cell, parsed.value);
  }

  // -- writing ---------------------------------------------------------------------------------

  // Sign a new entry for ``cell`` (a correction when the cell has a value); null empties it.
  async write(cell, value) {
    if (this.state.readonly) {
      this.say(this.t.readonly);
      return false;
    }
    if (!this.key) {
      this.say(this.t.noKey);
      return false;
    }
    const heads = this.view.headsOf(cell);
    if (heads.length === 0 && value === null) return false;
    if (heads.length === 1 && sameValue(heads[0].v, value)) return true;
    const [layer, lesson, student] = cell.split(":");
    const kind = layer === "att" ? "attendance" : layer === "topic" ? "topic" : "grade";
    const col = this.lessons.findIndex((item) => item.id === Number(lesson));
    if (kind !== "topic" && col >= 0 && this.future(col)) {
      this.say(this.t.futureLesson);
      return false;
    }
    const fields = { journal: this.state.journal, author: this.state.author, lesson: Number(lesson) };
    if (kind !== "topic") fields.student = Number(student);
    if (kind === "grade") fields.component = layer;
    if (value === null) {
      fields.value = "void";
    } else if (kind === "topic") {
      fields.topic = value.topic;
      if (value.homework) fields.homework = value.homework;
    } else {
      fields.value = value;
    }
    if (heads.length) {
      const reason = await this.askReason(heads.length > 1);
      if (!reason) return false;
      Object.assign(fields, {
        kind: "correction",
        corrects: kind,
        supersedes: heads.map((head) => head.id),
        reason,
      });
    } else {
      fields.kind = kind;
    }
    return this.queue(fields);
  }

  // Queue one entry (also what tests and bulk tools call).
  async queue(fields) {
    let record;
    try {
      record = await queueEntry(this.key, fields);
    } catch (error) {
      this.say(error instanceof EntryTooLarge ? this.t.tooLong : String(error));
      return false;
    }
    this.records.push(record);
    this.unsynced += 1;
    this.say(""); // an earlier hint is over once something is saved
    const cell = this.view.apply(record.submission.payload, "pending");
    const position = cell === null ? null : this.positionOf(cell);
    if (position) this.renderCell(...position);
    this.renderCounter();
    this.showInfo();
    this.syncer.schedule();
    return true;
  }

  positionOf(cell) {
    const [layer, lesson, student] = cell.split(":");
    const col = this.lessons.findIndex((item) => item.id === Number(lesson));
    if (col < 0) return null;
    if (layer === "topic") return [-1, col];
    const row = this.students.findIndex((item) => item.id === Number(student));
    return row < 0 ? null : [row, col];
  }

  askReason(conflict) {
    const dialog = document.getElementById("reason-dialog");
    const input = dialog.querySelector("input[name=reason]");
    dialog.querySelector(".conflict-note").hidden = !conflict;
    input.value = "";
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
    return new Promise((resolve) => {
      dialog.addEventListener(
        "close",
        () => resolve(dialog.returnValue === "save" ? input.value.trim() : null),
        { once: true },
      );
    });
  }

  async editTopic() {
    const col = this.col;
    const cell = this.cellName(-1, col);
    const current = this.view.headsOf(cell).find((head) => head.v)?.v ?? {};
    const dialog = document.getElementById("topic-dialog");
    const topic = dialog.querySelector("input[name=topic]");
    const homework = dialog.querySelector("input[name=homework]");
    topic.value = current.topic ?? "";
    homework.value = current.homework ?? "";
    dialog.returnValue = "";
    dialog.showModal();
    topic.focus();
    const saved = await new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "save"), { once: true });
    });
    if (saved && topic.value.trim()) {
      await this.write(cell, { topic: topic.value.trim(), homework: homework.value.trim() });
    }
    this.focusCell(-1, col);
  }

  // -- what the person sees about the focused cell ----------------------------------------------

  say(message) {
    document.getElementById("grid-message").textContent = message;
  }

  showInfo() {
    if (!this.lessons.length || this.row >= this.students.length) return;
    const cell = this.cellName(this.row, this.col);
    const lesson = this.lessons[this.col];
    const who = this.row < 0 ? this.t.topic : this.students[this.row].name;
    const layer = this.row < 0 ? "topic" : this.layer;
    const lines = [];
    const title = document.createElement("p");
    title.className = "cell-title";
    title.textContent = `${who} · ${lesson.date} · ${this.t.layers[layer]}`;
    lines.push(title);
    for (const head of this.view.headsOf(cell)) {
      const item = document.createElement("p");
      item.dataset.state = head.status;
      const text = displayText(layer, head.v, this.state.attendance) || this.t.voided;
      item.textContent = `${text}: ${this.t.states[head.status] ?? head.status}`;
      lines.push(item);
    }
    if (this.view.headsOf(cell).length > 1) {
      const note = document.createElement("p");
      note.dataset.state = "conflict";
      note.textContent = this.t.conflictHelp;
      lines.push(note);
    }
    for (const record of this.view.problemsOf(cell)) {
      const item = document.createElement("p");
      item.dataset.state = "error";
      const text = displayText(layer, valueOf(record.submission.payload), this.state.attendance);
      item.textContent = format(this.t.refused, {
        value: text || this.t.voided,
        status: record.state,
        message: record.message ?? "",
      });
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary discard";
      button.dataset.entry = record.entry_id;
      button.textContent = this.t.discard;
      item.append(" ", button);
      lines.push(item);
    }
    this.info.replaceChildren(...lines);
  }

  // -- syncing ---------------------------------------------------------------------------------

  onResults({ stored, refused, gaps }) {
    const done = new Set(stored.map(({ record }) => record.entry_id));
    for (const { record, seq } of stored) {
      this.base.apply(record.submission.payload, "synced", { seq });
      const payload = record.submission.payload;
      if (this.isThisTermGrade(payload)) this.termConfirmed.add(payload.student);
    }
    const updated = new Map(refused.map((record) => [record.entry_id, record]));
    this.records = this.records
      .filter((record) => !done.has(record.entry_id))
      .map((record) => updated.get(record.entry_id) ?? record);
    this.unsynced = Math.max(0, this.unsynced - done.size);
    if (gaps.length) {
      const missing = gaps
        .filter((gap) => gap.kid === this.key?.kid)
        .flatMap((gap) => gap.missing.map(([from, to]) => (from === to ? `${from}` : `${from}–${to}`)));
      if (missing.length) this.setDevice(format(this.t.gaps, { seqs: missing.join(", ") }), "warn");
    }
    this.rebuild();
    this.renderAll();
    if (done.size) this.refreshOfflineCopy();
  }

  onPulled({ leaves }) {
    if (!leaves.length) return;
    for (const leaf of leaves) {
      this.base.apply(leaf.payload, "synced", { seq: leaf.seq });
      if (this.isThisTermGrade(leaf.payload)) this.termConfirmed.add(leaf.payload.student);
    }
    this.rebuild();
    this.renderAll();
    this.refreshOfflineCopy();
  }

  onState({ state, delay }) {
    const line = document.getElementById("net-state");
    line.dataset.state = state;
    line.textContent = format(this.t.net[state] ?? state, { seconds: Math.round((delay ?? 0) / 1000) });
    document.getElementById("signed-out").hidden = state !== "signed-out";
    document.body.dataset.sync = state;
    // The server ended the session: its kept pages go (the outbox stays for the next sign-in).
    if (state === "signed-out") forgetPages().catch(() => {});
  }

  refreshOfflineCopy() {
    clearTimeout(this.copyTimer);
    this.copyTimer = setTimeout(() => {
      keepForOffline(location.pathname).catch(() => {});
    }, 1000);
  }

  setDevice(message, kind = "") {
    const line = document.getElementById("device-state");
    line.textContent = message;
    line.dataset.kind = kind;
  }

  setEnrolment(status, message, kind = "") {
    this.enrolment = status;
    // Remembered for a reload without network, when the server cannot be asked.
    if (this.key && status === "enrolled") localStorage.setItem(ENROLLED_KEY, this.key.kid);
    else if (this.key && status === "revoked") localStorage.removeItem(ENROLLED_KEY);
    this.setDevice(message, kind);
    document.getElementById("device-state").dataset.enrolment = status;
  }

  // The device's name, shown in "My devices" and the access log: the server's suggestion from
  // the browser ("Chrome on Android") until the person writes their own.
  showDeviceName(label) {
    const input = document.getElementById("device-name");
    if (!input || input.dataset.edited || document.activeElement === input) return;
    input.value = label ?? "";
  }

  async saveDeviceName() {
    const input = document.getElementById("device-name");
    const state = document.getElementById("device-name-state");
    const label = input.value.trim();
    if (!label) return;
    input.dataset.edited = "1";
    if (!this.key || this.enrolment !== "enrolled") {
      state.textContent = state.dataset.later; // sent with the enrolment
      return;
    }
    let response;
    try {
      response = await fetch(`${this.state.urls.devices}/${this.key.kid}/name`, {
        method: "POST",
        credentials: "same-origin",
        headers: this.syncer.headers(),
        body: JSON.stringify({ label }),
      });
    } catch (error) {
      state.textContent = state.dataset.failed;
      return;
    }
    const body = await response.json().catch(() => ({}));
    state.textContent = response.ok ? state.dataset.saved : (body.message ?? state.dataset.failed);
    if (response.ok) delete input.dataset.edited;
  }

  // The device key must be enrolled for the server to take its entries (until then they are
  // held in quarantine): enrol it through the accounts API after a fresh second factor.
  async onSession(info) {
    if (!this.key) return;
    const mine = info.device_keys.find((key) => key.kid === this.key.kid);
    this.showDeviceName(mine ? mine.label : info.suggested_device_name);
    if (mine) {
      const wasEnrolled = this.enrolment === "enrolled";
      if (mine.revoked_at) this.setEnrolment("revoked", this.t.keyRevoked, "bad");
      else this.setEnrolment("enrolled", this.t.keyEnrolled);
      const held = this.records.some((record) => record.state === "quarantined");
      if (!wasEnrolled && this.enrolment === "enrolled" && held) this.syncer.run({ everything: true });
      return;
    }
    if (this.enrolment === "asking") return;
    this.enrolment = "asking";
    let response;
    try {
      response = await fetch(this.state.urls.devices, {
        method: "POST",
        credentials: "same-origin",
        headers: this.syncer.headers(),
        body: JSON.stringify({
          alg: this.key.alg,
          public_key: this.key.publicKey,
          label: document.getElementById("device-name")?.value.trim() ?? "",
        }),
      });
    } catch (error) {
      this.enrolment = "unknown";
      return;
    }
    if (response.ok) {
      const enrolled = await response.json().catch(() => ({}));
      if (enrolled.label) {
        delete document.getElementById("device-name").dataset.edited;
        this.showDeviceName(enrolled.label);
      }
      this.setEnrolment("enrolled", this.t.keyEnrolled);
      this.syncer.run({ everything: true });
    } else if (response.status === 401 || response.status === 403) {
      this.setEnrolment("needs-second-factor", this.t.keyNeedsSecondFactor, "warn");
      document.getElementById("enrol-link").hidden = false;
    } else {
      this.setEnrolment("not-enrolled", this.t.keyNotEnrolled, "warn");
    }
  }

  exportUnsynced() {
    outboxRecords(this.state.author).then((records) => {
      if (!records.length) {
        this.say(this.t.nothingToExport);
        return;
      }
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      for (let part = 0; part * EXPORT_PART < records.length; part += 1) {
        const slice = records.slice(part * EXPORT_PART, (part + 1) * EXPORT_PART);
        const document_ = {
          format: EXPORT_FORMAT,
          version: 1,
          exported_at: new Date().toISOString(),
          device: this.key?.kid ?? null,
          entries: slice.map((record) => record.submission),
        };
        const blob = new Blob([JSON.stringify(document_)], { type: "application/json" });
        const link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = `journal-unsynced-${stamp}-${part + 1}.json`;
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      }
      this.say(format(this.t.exported, { n: records.length }));
    });
  }

  // -- start -----------------------------------------------------------------------------------

  bind() {
    this.bindCard();
    this.table.addEventListener("keydown", (event) => this.onKey(event));
    this.table.addEventListener("click", (event) => {
      const td = event.target.closest("td");
      if (td?.classList.contains("term-grade") && td.parentElement.parentElement !== this.table.tHead) {
        if (!this.state.readonly) this.setTermStatus(td);
        return;
      }
      if (!td) return;
      const row = td.parentElement.parentElement === this.table.tHead ? -1 : td.parentElement.sectionRowIndex;
      this.focusCell(row, td.cellIndex - 1);
    });
    for (const button of document.querySelectorAll("#layers [data-layer]")) {
      button.addEventListener("click", () => {
        this.setLayer(button.dataset.layer);
        this.focusCell(this.row, this.col);
      });
    }
    document.getElementById("sync-now").addEventListener("click", () => {
      this.syncer.refreshSession().then(() => this.syncer.run({ everything: true }));
    });
    document.getElementById("export").addEventListener("click", () => this.exportUnsynced());
    document.getElementById("device-name-save").addEventListener("click", () => this.saveDeviceName());
    document.getElementById("device-name").addEventListener("input", (event) => {
      event.target.dataset.edited = "1";
    });
    this.confirmButton?.addEventListener("click", () => this.confirmTermGrades());
    document
      .getElementById("confirm-year")
      ?.addEventListener("click", () => this.confirmYearGrades());
    this.info.addEventListener("click", async (event) => {
      const button = event.target.closest("button.discard");
      if (!button) return;
      await discard(button.dataset.entry);
      this.records = this.records.filter((record) => record.entry_id !== button.dataset.entry);
      this.unsynced = Math.max(0, this.unsynced - 1);
      this.rebuild();
      this.renderAll();
    });
    this.syncer.addEventListener("results", (event) => this.onResults(event.detail));
    this.syncer.addEventListener("pulled", (event) => this.onPulled(event.detail));
    this.syncer.addEventListener("state", (event) => this.onState(event.detail));
    this.syncer.addEventListener("session", (event) => this.onSession(event.detail));
    // Signed out in another tab: reload, so that the server decides what this tab shows.
    onSignedOutElsewhere(() => location.reload());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.syncer.state === "signed-out") {
        this.syncer.refreshSession().then((info) => info && this.syncer.run());
      }
    });
  }

  async start() {
    this.bind();
    this.setLayer(this.layer);
    this.onState({ state: navigator.onLine ? "idle" : "offline" });
    try {
      this.key = await deviceKey(this.state.author);
      const badge = document.getElementById("device-key");
      badge.textContent = this.key.kid;
      badge.dataset.kid = this.key.kid;
      badge.dataset.alg = this.key.alg;
      badge.dataset.publicKey = this.key.publicKey;
      // Until the server answers (or without network), what it said last time.
      if (localStorage.getItem(ENROLLED_KEY) === this.key.kid) this.setDevice(this.t.keyEnrolled);
    } catch (error) {
      this.setDevice(format(this.t.noKeyReason, { reason: String(error) }), "bad");
    }
    const records = await outboxRecords(this.state.author);
    this.unsynced = records.length;
    this.records = records.filter((record) => record.journal === this.state.journal);
    this.rebuild();
    this.renderAll();
    if (this.lessons.length && this.students.length) this.focusCell(0, this.wantedColumn());
    document.body.dataset.gridReady = "1";
    askPersistentStorage().then((persisted) => {
      const line = document.getElementById("storage-state");
      if (persisted !== null) line.textContent = persisted ? this.t.persisted : this.t.notPersisted;
    });
    const showReady = () => {
      const line = document.getElementById("offline-ready");
      line.dataset.ready = "1";
      line.textContent = this.t.offlineReady;
    };
    // A page the service worker serves is kept for offline work already: say so at once,
    // also after a reload without network.
    if (navigator.serviceWorker?.controller && wasKept(location.pathname)) showReady();
    registerServiceWorker(this.state.urls.serviceWorker)
      .then(() => navigator.onLine && keepForOffline(location.pathname))
      .then((kept) => {
        if (kept) {
          rememberReady(location.pathname);
          showReady();
        }
      })
      .catch(() => {});
    if (navigator.onLine) {
      await this.syncer.refreshSession();
      this.syncer.run();
    }
  }
}

const state = JSON.parse(document.getElementById("grid-state").textContent);
const strings = JSON.parse(document.getElementById("grid-strings").textContent);
export const grid = new GridApp(state, strings);
grid.start();
