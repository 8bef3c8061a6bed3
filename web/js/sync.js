// One canvas kept in step with the hub, never losing a change (docs/protocol.md,
// "Canvases"; the pages' rules are in "Browser pages").
//
// `confirmed` is the hub's document at (`epoch`, `seq`); `outbox` holds this
// page's own changes not yet acked, in order, each with the seq it was made on
// (`base_seq`, kept here only: the wire has no such field). What the page shows is
// `confirmed` with the outbox applied on top. Patches go out one at a time, the
// next after the previous ack, so order holds across retries; every change is a
// whole entry added or removed, so a patch resent after a lost ack cannot conflict.
import { applyOps, normalized, sectionsCopy } from "./patch.js";

// Refusals a resend may cure; any other error means the hub will never take it.
const RETRY = new Set(["RATE_LIMITED", "INTERNAL", "NOT_JOINED", "TIMEOUT", "DISCONNECTED"]);
const ACK_TIMEOUT_MS = 10000;
const RETRY_MS = [250, 500, 1000, 2000, 4000];

export class CanvasSync {
  /**
   * @param {object} options
   * @param {string} options.sessionId
   * @param {string} options.studentId whose canvas
   * @param {string|null} options.author "student" (writes elements) or "tutor" (annotations)
   * @param {(event: string, payload: object) => Promise<object>} options.call
   * @param {() => void} options.onChange the shown document changed
   * @param {(message: string) => void} options.onNotice something the user should know
   */
  constructor({ sessionId, studentId, author, call, onChange, onNotice }) {
    Object.assign(this, { sessionId, studentId, author, call, onChange, onNotice });
    this.confirmed = normalized(null);
    this.epoch = null;
    this.seq = 0;
    this.outbox = [];
    this.early = new Map(); // seq -> ops that came before the one they follow
    this.online = false;
    this.sending = false;
    this.nextRef = 1;
    this.shown = normalized(null);
  }

  /** The document the page shows: the hub's, with this page's pending changes on it. */
  get document() {
    return this.shown;
  }

  get pending() {
    return this.outbox.length;
  }

  /** A catch-up answer (join ack or `canvas:sync`): `{seq, epoch, doc}` or `{seq, epoch, ops}`. */
  takeCatchUp(answer) {
    if ("doc" in answer || answer.epoch !== this.epoch) {
      if (!("doc" in answer)) {
        // A new epoch answered with patches: only a whole document is safe.
        this.resync("the board's history was reset on the hub");
        return;
      }
      this.confirmed = normalized(answer.doc);
      this.epoch = answer.epoch;
      this.seq = answer.seq;
      this.early.clear();
    } else {
      for (const item of answer.ops) this.receive(item.seq, item.ops, false);
    }
    this.refresh();
  }

  /** A relayed item (or this page's own acked patch) for this canvas. */
  receive(seq, ops, refresh = true, epoch = this.epoch) {
    if (epoch !== this.epoch) {
      this.resync(null);
      return;
    }
    if (seq <= this.seq) return; // already held (a re-join overlaps the relay)
    this.early.set(seq, ops);
    while (this.early.has(this.seq + 1)) {
      const next = this.early.get(this.seq + 1);
      this.early.delete(this.seq + 1);
      applyOps(this.confirmed, next);
      this.seq += 1;
    }
    if (this.early.size) this.fillGap();
    if (refresh) this.refresh();
  }

  /** A change made on this page: shown at once, sent when the hub can take it. */
  change(ops) {
    this.outbox.push({ ops, base_seq: this.seq, ref: `${this.author}-${this.nextRef++}` });
    this.refresh();
    this.pump();
  }

  /** The connection is back and the session re-joined (`takeCatchUp` done): send. */
  connected() {
    this.online = true;
    this.pump();
  }

  disconnected() {
    this.online = false;
  }

  refresh() {
    // Sections copied, entries shared (entries are never changed in place).
    const shown = sectionsCopy(this.confirmed);
    for (const patch of this.outbox) {
      try {
        applyOps(shown, patch.ops);
      } catch {
        // Shown as the hub would have it: a change that cannot apply is left out.
      }
    }
    this.shown = shown;
    this.onChange();
  }

  async fillGap() {
    if (this.filling || !this.online) return;
    this.filling = true;
    try {
      const answer = await this.call("canvas:sync", {
        session_id: this.sessionId, student_id: this.studentId, since: this.seq,
      });
      if (answer.ok) this.takeCatchUp(answer);
    } finally {
      this.filling = false;
    }
  }

  /** Take the hub's whole document (a refused change, a reset log); say why. */
  async resync(why) {
    if (why) this.onNotice(why);
    this.epoch = null;
    if (!this.online) return; // the re-join brings the document
    const answer = await this.call("canvas:sync", {
      session_id: this.sessionId, student_id: this.studentId, since: 0,
    });
    if (answer.ok) {
      this.confirmed = normalized(answer.doc);
      this.epoch = answer.epoch;
      this.seq = answer.seq;
      this.early.clear();
      if (answer.ops) {
        // since 0 answered as patches from the start of the log
        this.confirmed = normalized(null);
        this.seq = 0;
        for (const item of answer.ops) this.receive(item.seq, item.ops, false);
      }
      this.refresh();
    }
  }

  async pump() {
    if (this.sending) return;
    this.sending = true;
    let attempt = 0;
    try {
      while (this.online && this.outbox.length) {
        const patch = this.outbox[0];
        const payload = { session_id: this.sessionId, ops: patch.ops, client_ref: patch.ref };
        if (this.author === "tutor") payload.student_id = this.studentId;
        const ack = await this.call("canvas:patch", payload, ACK_TIMEOUT_MS);
        if (ack.ok) {
          attempt = 0;
          this.outbox.shift();
          // Shown again even when a relay of this patch came before its ack.
          this.receive(ack.seq, patch.ops, false);
          this.refresh();
          continue;
        }
        const code = ack.error?.code;
        if (RETRY.has(code)) {
          if (!this.online) break; // sent again after the re-join
          await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(attempt++, 4)]));
          continue;
        }
        // The hub will never take it: drop it and show the hub's document.
        this.outbox.shift();
        await this.resync(`A change was refused by the hub (${code}); the board shows the hub's copy.`);
      }
    } finally {
      this.sending = false;
    }
  }
}
