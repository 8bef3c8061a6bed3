// One student's tile in the control center: their live board (drawn at most once an
// animation frame), presence with time in session, Teach/Observe, exercise and
// progress, and a help badge. The tile holds the student's CanvasSync, so the
// tutor's marks made in the large view queue and resume like the student's own.
import { createBoard } from "./render.js";
import { CanvasSync } from "./sync.js";
import { clock } from "./ui.js";

const PRESENCE_WORDS = { active: "Active", idle: "Idle", offline: "Offline" };

function element(name, className, text) {
  const e = document.createElement(name);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

export class Tile {
  /**
   * @param {object} options
   * @param {object} options.student the join ack's enrollment (with presence)
   * @param {string} options.sessionId
   * @param {(event: string, payload: object, ms?: number) => Promise<object>} options.call
   * @param {{onMode, onOpen, onChange, onNotice}} options.hooks what the page does
   * @param {string} [options.replayHref] the student's replay page (opens in a new tab)
   */
  constructor({ student, sessionId, call, hooks, replayHref }) {
    this.id = student.student_id;
    this.name = student.student_name || student.student_id;
    this.hooks = hooks;
    this.presence = { status: "offline", session_time_s: 0, total_time_s: 0, at: Date.now() };
    this.article = element("article", "tile");
    this.article.dataset.student = this.id;
    this.article.setAttribute("aria-label", this.name);

    const head = element("div", "tile-head");
    this.title = element("h3", "name", this.name);
    this.title.title = this.name;
    this.helpBadge = element("span", "help-badge");
    this.helpBadge.hidden = true;
    this.presenceBadge = element("span", "presence");
    head.append(this.title, this.helpBadge, this.presenceBadge);

    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.classList.add("board");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${this.name}'s board`);
    this.board = createBoard(svg);

    const work = element("p", "work-line");
    this.exercise = element("span", "exercise", "No exercise yet");
    this.progress = element("progress");
    this.progress.max = 100;
    this.progress.value = 0;
    this.progress.setAttribute("aria-label", `${this.name}'s progress`);
    work.append(this.exercise, this.progress);

    const actions = element("div", "tile-actions");
    this.modeButton = element("button", "mode", "Teach");
    this.modeButton.type = "button";
    this.modeButton.setAttribute("aria-pressed", "false");
    this.modeButton.addEventListener("click", () =>
      hooks.onMode(this, this.mode === "TEACH" ? "OBSERVE" : "TEACH"));
    this.openButton = element("button", "open", "Open");
    this.openButton.type = "button";
    this.openButton.setAttribute("aria-label", `Open ${this.name}'s board large`);
    this.openButton.addEventListener("click", () => hooks.onOpen(this));
    svg.addEventListener("dblclick", () => hooks.onOpen(this));
    actions.append(this.modeButton, this.openButton);
    if (replayHref) {
      this.replayLink = element("a", "replay", "Replay");
      this.replayLink.href = replayHref;
      this.replayLink.target = "_blank";
      this.replayLink.rel = "noopener";
      this.replayLink.setAttribute("aria-label", `Replay ${this.name}'s session (new tab)`);
      actions.append(this.replayLink);
    }

    this.article.append(head, svg, work, actions);
    this.sync = new CanvasSync({
      sessionId, studentId: this.id, author: "tutor", call,
      onChange: () => {
        this.board.schedule(() => this.sync.document);
        hooks.onChange(this);
      },
      onNotice: hooks.onNotice,
    });
    this.take(student);
  }

  /** The join ack's fields for this student (again on every re-join). */
  take(student) {
    this.setPresence({
      status: student.status,
      session_time_s: student.session_time_s ?? 0,
      total_time_s: student.total_time_s ?? 0,
    });
    this.setMode(student.mode);
    const exercise = student.assignment?.exercise;
    if (exercise) this.setExercise(exercise);
  }

  setPresence({ status, session_time_s = 0, total_time_s = 0 }) {
    this.presence = { status, session_time_s, total_time_s, at: Date.now() };
    this.article.dataset.presence = status;
    this.tick();
  }

  /** Time in session counts on while the student is connected (once a second). */
  tick() {
    const { status, session_time_s, total_time_s, at } = this.presence;
    const running = status === "offline" ? 0 : (Date.now() - at) / 1000;
    const total = clock((total_time_s + running) * 1000);
    this.presenceBadge.textContent = `${PRESENCE_WORDS[status] || status} · ${total}`;
    this.presenceBadge.className = `presence presence-${status}`;
    this.presenceBadge.title = `${PRESENCE_WORDS[status] || status}; in this session for ${total}`
      + (status === "offline" ? "" : ` (this stretch ${clock((session_time_s + running) * 1000)})`);
  }

  setMode(mode) {
    this.mode = mode === "TEACH" ? "TEACH" : "OBSERVE";
    this.article.dataset.mode = this.mode;
    this.modeButton.setAttribute("aria-pressed", String(this.mode === "TEACH"));
    this.modeButton.textContent = this.mode === "TEACH" ? "Teaching" : "Observing";
    this.modeButton.setAttribute("aria-label",
      `Teach ${this.name} (now ${this.mode === "TEACH" ? "teaching" : "observing"})`);
  }

  setExercise(exercise) {
    this.exerciseId = exercise.id;
    this.exercise.textContent = exercise.title || exercise.id;
    this.exercise.title = exercise.title || exercise.id;
    this.setProgress({ exercise_id: exercise.id, progress_pct: 0, completed: false });
  }

  setProgress({ exercise_id, progress_pct, completed }) {
    if (this.exerciseId && exercise_id !== this.exerciseId) return;
    this.progress.value = progress_pct;
    this.progress.textContent = `${progress_pct}%`;
    this.progress.title = completed ? "Completed" : `${progress_pct}%`;
    this.article.dataset.progress = String(progress_pct);
    this.article.classList.toggle("completed", Boolean(completed));
  }

  /** The student's active requests, in serving order, with their places in the queue. */
  setHelp(requests, places) {
    const first = requests[0];
    this.helpBadge.hidden = !first;
    this.article.dataset.help = first ? first.status : "";
    if (!first) return;
    const place = places.get(first.id);
    this.helpBadge.textContent = first.status === "IN_PROGRESS" ? "Helping" : `Help #${place}`;
    this.helpBadge.className = `help-badge priority-${first.priority}${first.escalated ? " escalated" : ""}`;
    this.helpBadge.title = `${first.priority.toLowerCase()} priority: ${first.message}`;
  }
}
