// Sends the outbox to the server and pulls what others wrote (DESIGN §6).
// Deletes an entry only on accepted or duplicate; retries on network errors, 5xx and 429;
// shows every other answer to the person. A 401 keeps the outbox and asks to sign in again.
// Only the signed-in person's entries are sent: another's wait for their own next sign-in.

import { outboxRecords, settle } from "./outbox.js";

export const BATCH_SIZE = 200;
const MAX_RETRY_MS = 60000;

export class Syncer extends EventTarget {
  constructor({ urls, csrfToken, author, journal, subject, cursor }) {
    super();
    this.urls = urls;
    this.author = author;
    this.csrfToken = csrfToken;
    this.journal = journal;
    this.subject = subject;
    this.cursor = cursor;
    this.retryDelay = 1000;
    this.timer = null;
    this.state = navigator.onLine ? "idle" : "offline";
    window.addEventListener("online", () => this.run());
    window.addEventListener("offline", () => this.setState("offline"));
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  schedule(delay = 300) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), delay);
  }

  retryLater(seconds) {
    const delay = seconds ? seconds * 1000 : this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, MAX_RETRY_MS);
    this.setState("retrying", { delay });
    this.schedule(delay);
  }

  // ``everything``: also send again what the server refused before (the "sync now" button).
  async run({ everything = false } = {}) {
    clearTimeout(this.timer);
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    await navigator.locks.request("class-journal-sync", { ifAvailable: true }, async (lock) => {
      if (lock === null) {
        this.schedule(2000); // another tab is syncing; look again soon
        return;
      }
      this.setState("syncing");
      if (await this.drain(everything)) {
        this.retryDelay = 1000;
        // No journal (a page that only sends what waits): nothing to pull.
        if (this.journal === null || (await this.pull())) this.setState("idle");
      }
    });
  }

  // A correction that overtook the entry it corrects (another device still offline) is
  // refused with bad_supersedes and kept: it goes again with every sync until it is stored.
  async drain(everything) {
    if (this.author === null || this.author === undefined) return true; // nobody's to send
    const records = (await outboxRecords(this.author)).filter(
      (record) =>
        everything ||
        record.state === "pending" ||
        (record.state === "rejected" && record.code === "bad_supersedes"),
    );
    for (let start = 0; start < records.length; start += BATCH_SIZE) {
      if (!(await this.send(records.slice(start, start + BATCH_SIZE)))) return false;
    }
    return true;
  }

  headers() {
    return { "Content-Type": "application/json", "X-CSRFToken": this.csrfToken };
  }

  async post(batch) {
    return fetch(this.urls.entries, {
      method: "POST",
      credentials: "same-origin",
      headers: this.headers(),
      body: JSON.stringify({ entries: batch.map((record) => record.submission) }),
    });
  }

  // One batch; false when syncing must stop for now (offline, signed out, server trouble).
  async send(batch) {
    let response;
    try {
      response = await this.post(batch);
      if (response.status === 400) {
        const body = await response.clone().json().catch(() => ({}));
        // An old offline page carries an expired CSRF token: fetch a fresh one, once.
        if (body.error === "csrf" && (await this.refreshSession())) {
          response = await this.post(batch);
        }
      }
    } catch (error) {
      this.retryLater();
      return false;
    }
    if (response.status === 401) {
      this.setState("signed-out");
      return false;
    }
    if (response.status === 429 || response.status >= 500) {
      this.retryLater(Number(response.headers.get("Retry-After")) || 0);
      return false;
    }
    let body = {};
    try {
      body = await response.json();
    } catch (error) {
      this.retryLater();
      return false;
    }
    if (!response.ok) {
      const message = body.message ?? `HTTP ${response.status}`;
      const refused = batch.map((record) => ({
        ...record,
        state: "rejected",
        code: body.error ?? "http",
        message,
      }));
      await settle([], refused);
      this.emit("results", { stored: [], refused, conflicts: [], gaps: [] });
      return true;
    }
    const stored = [];
    const refused = [];
    for (const result of body.results) {
      const record = batch[result.index];
      if (result.status === "accepted" || result.status === "duplicate") {
        stored.push({ record, seq: result.seq, status: result.status });
      } else {
        refused.push({ ...record, state: result.status, code: result.code, message: result.message });
      }
    }
    await settle(stored.map(({ record }) => record.entry_id), refused);
    this.emit("results", {
      stored,
      refused,
      conflicts: body.conflicts ?? [],
      gaps: body.device_seq_gaps ?? [],
    });
    return true;
  }

  async refreshSession() {
    let response;
    try {
      response = await fetch(this.urls.session, { credentials: "same-origin" });
    } catch (error) {
      return null;
    }
    if (response.status === 401 || response.status === 403) {
      this.setState("signed-out");
      return null;
    }
    if (!response.ok) return null;
    const info = await response.json();
    this.csrfToken = info.csrf_token;
    this.emit("session", info);
    return info;
  }

  // Leaves others wrote (another device, a colleague's correction) since our cursor.
  async pull() {
    for (;;) {
      const query = new URLSearchParams({
        journal: this.journal,
        subject: String(this.subject),
        cursor: String(this.cursor),
      });
      let response;
      try {
        response = await fetch(`${this.urls.pull}?${query}`, { credentials: "same-origin" });
      } catch (error) {
        this.retryLater();
        return false;
      }
      if (response.status === 401) {
        this.setState("signed-out");
        return false;
      }
      if (!response.ok) {
        this.retryLater(Number(response.headers.get("Retry-After")) || 0);
        return false;
      }
      const page = await response.json();
      const leaves = page.entries.map((item) => ({ seq: item.seq, ...JSON.parse(item.leaf) }));
      this.cursor = page.next;
      this.emit("pulled", { leaves, cursor: page.next });
      if (!page.more) return true;
    }
  }
}
