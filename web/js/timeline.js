// One student's session on one time axis (docs/protocol.md, "Replay timeline"):
// loading every page of GET .../canvases/{student_id}/timeline, and the board at
// any point of it. No DOM here; the replay page (replay.js) draws what this answers.
import { applyOps, normalized } from "./patch.js";
import { rest } from "./connection.js";

// The most pages one load follows (1,000 entries each): a bound, not an expectation.
export const MAX_PAGES = 200;
const PAGE_LIMIT = 1000;
// A copy of the document every this many patches, so a seek applies at most this many.
export const CHECKPOINT_EVERY = 50;

/** An ISO time as epoch milliseconds (the hub writes microseconds; Date wants three digits). */
export function millis(iso) {
  return iso ? Date.parse(iso.replace(/(\.\d{3})\d+/, "$1")) : NaN;
}

/**
 * Every page of the timeline, following `next_cursor` until `has_more` is false
 * (at most `maxPages`). Answers the first page's fields with all the entries, and
 * `truncated` when the bound stopped it.
 */
export async function loadTimeline(sessionId, studentId, token, maxPages = MAX_PAGES) {
  const path = `/api/v1/sessions/${encodeURIComponent(sessionId)}/canvases/${encodeURIComponent(studentId)}/timeline`;
  let cursor = null;
  let first = null;
  const entries = [];
  for (let page = 0; page < maxPages; page++) {
    const query = new URLSearchParams({ limit: String(PAGE_LIMIT) });
    if (cursor) query.set("cursor", cursor);
    const { data } = await rest("GET", `${path}?${query}`, token);
    first ??= data;
    entries.push(...data.entries);
    if (!data.has_more) return { ...first, entries, truncated: false };
    cursor = data.next_cursor;
  }
  return { ...first, entries, truncated: true };
}

/**
 * The timeline made playable. `times[i]` is entry i's place on the axis: its `at`,
 * never earlier than the entry before (patches from hubs whose clocks differ may
 * come a little out of order; they are applied in the order they come). A position
 * is an index k: the entries before k have happened.
 */
export class Replay {
  constructor(timeline) {
    this.timeline = timeline;
    this.entries = timeline.entries;
    let last = -Infinity;
    this.times = this.entries.map((entry) => (last = Math.max(last, millis(entry.at))));
    const first = this.times.length ? this.times[0] : NaN;
    const opened = millis(timeline.started_at);
    // The session's axis: from its start (or its first entry, if earlier) to its end
    // (or its last entry, if later; a live session ends at its last entry).
    this.start = [opened, first].filter(Number.isFinite).reduce((a, b) => Math.min(a, b), Infinity);
    if (!Number.isFinite(this.start)) this.start = millis(timeline.starts_at) || 0;
    this.end = [millis(timeline.ended_at), this.times.at(-1), this.start]
      .filter(Number.isFinite)
      .reduce((a, b) => Math.max(a, b));
    // Patches in the order they apply, and how many come before each position.
    this.patches = [];
    this.patchesBefore = [0];
    for (const entry of this.entries) {
      if (entry.kind === "patch") this.patches.push(entry);
      this.patchesBefore.push(this.patches.length);
    }
    this.base = normalized(timeline.base?.doc);
    this.checkpoints = [structuredClone(this.base)];
    const doc = structuredClone(this.base);
    this.patches.forEach((entry, n) => {
      applyOps(doc, entry.ops);
      if ((n + 1) % CHECKPOINT_EVERY === 0) this.checkpoints.push(structuredClone(doc));
    });
    this.states = states(timeline);
    this.document = structuredClone(this.base);
    this.applied = 0; // patches in `document`
    this.index = 0;
  }

  get duration() {
    return Math.max(0, this.end - this.start);
  }

  /** The position at axis time `ms`: every entry at or before it has happened. */
  indexAt(ms) {
    let low = 0;
    let high = this.times.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.times[middle] <= ms) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The axis time of position k: when its last entry happened (the start for 0). */
  timeOf(k) {
    return k > 0 ? this.times[k - 1] : this.start;
  }

  /**
   * Move to position k and bring `document` there: forward by applying the patches
   * between, anything else from the nearest checkpoint at or before it. Answers
   * whether the board changed.
   */
  seek(k) {
    k = Math.max(0, Math.min(this.entries.length, k));
    this.index = k;
    const target = this.patchesBefore[k];
    if (target === this.applied) return false;
    if (target < this.applied || target - this.applied > CHECKPOINT_EVERY) {
      const checkpoint = Math.floor(target / CHECKPOINT_EVERY);
      this.document = structuredClone(this.checkpoints[checkpoint]);
      this.applied = checkpoint * CHECKPOINT_EVERY;
    }
    for (; this.applied < target; this.applied++) {
      applyOps(this.document, this.patches[this.applied].ops);
    }
    return true;
  }

  /** What holds at position k: the mode, whether the student is connected, the assignment. */
  stateAt(k) {
    return this.states[Math.max(0, Math.min(this.entries.length, k))];
  }
}

function states(timeline) {
  let state = { mode: timeline.initial_mode || "OBSERVE", present: false, assignment: null };
  const out = [state];
  for (const entry of timeline.entries) {
    if (entry.kind === "mode") state = { ...state, mode: entry.mode };
    else if (entry.kind === "assignment") state = { ...state, assignment: entry.exercise };
    else if (entry.kind === "attendance" && entry.event !== "marked") {
      state = { ...state, present: entry.event === "joined" };
    }
    out.push(state);
  }
  return out;
}
