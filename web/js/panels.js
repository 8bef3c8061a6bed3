// The control center's side panels that are lists the hub keeps: running timers,
// alerts (the tutor's timers and the hub's own), and attendance with bulk marking.
import { clock, list } from "./ui.js";

const ALERT_WORDS = {
  TIMER_WARNING: "is ending soon",
  TIMER_END: "has ended",
  SESSION_ENDING: "The session ends soon",
  SESSION_OVERTIME: "The session is past its end",
  STUDENT_IDLE: "is idle",
  HELP_WAITING: "has waited too long for help",
};
const MAX_ALERTS = 30;

export class Timers {
  constructor({ ul, nameOf, cancel }) {
    Object.assign(this, { ul, nameOf, cancel });
    this.running = new Map();
  }

  reset(timers) {
    this.running = new Map(timers.map((t) => [t.id, t]));
    this.show();
  }

  started(timer) {
    this.running.set(timer.id, timer);
    this.show();
  }

  ended(timerId) {
    this.running.delete(timerId);
    this.show();
  }

  show() {
    const items = [...this.running.values()]
      .sort((a, b) => Date.parse(a.ends_at) - Date.parse(b.ends_at))
      .map((t) => {
        const li = document.createElement("li");
        li.className = "timer";
        li.dataset.timer = t.id;
        const words = document.createElement("span");
        words.textContent = `${t.label}${t.student_id ? ` (${this.nameOf(t.student_id)})` : ""}`;
        const left = document.createElement("span");
        left.className = "left";
        left.dataset.ends = String(Date.parse(t.ends_at));
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.textContent = "Cancel";
        cancel.setAttribute("aria-label", `Cancel the timer ${t.label}`);
        cancel.addEventListener("click", () => this.cancel(t));
        li.append(words, left, cancel);
        return li;
      });
    list(this.ul, items, "No timer running.");
    this.tick();
  }

  tick() {
    for (const left of this.ul.querySelectorAll("[data-ends]")) {
      left.textContent = clock(Number(left.dataset.ends) - Date.now());
    }
  }
}

export class Alerts {
  constructor({ ul, nameOf }) {
    Object.assign(this, { ul, nameOf });
    this.items = [];
  }

  /** A `timer:alert`: the tutor's timers and the hub's own alerts, newest first. */
  add(alert) {
    const who = alert.student_id ? this.nameOf(alert.student_id) : "";
    let text;
    if (alert.kind === "TIMER_WARNING" || alert.kind === "TIMER_END") {
      text = `${alert.label}${who ? ` (${who})` : ""} ${ALERT_WORDS[alert.kind]}`;
    } else if (["STUDENT_IDLE", "HELP_WAITING"].includes(alert.kind)) {
      text = `${who || "A student"} ${ALERT_WORDS[alert.kind]}`;
    } else {
      text = ALERT_WORDS[alert.kind] || alert.label || alert.kind;
    }
    const li = document.createElement("li");
    li.dataset.kind = alert.kind;
    li.className = alert.kind === "TIMER_END" || alert.kind === "SESSION_OVERTIME" ? "alert" : "";
    const at = new Date(alert.at || Date.now());
    const time = document.createElement("time");
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(time, ` ${text}`);
    this.items = [li, ...this.items].slice(0, MAX_ALERTS);
    list(this.ul, this.items, "No alerts.");
  }
}

const STATUS_WORDS = { PRESENT: "Present", LATE: "Late", ABSENT: "Absent", EXCUSED: "Excused" };

export class Attendance {
  constructor({ tbody, all, nameOf }) {
    Object.assign(this, { tbody, all, nameOf });
    this.rows = new Map(); // student id -> {status, catch_up}
    all.addEventListener("change", () => {
      for (const box of this.tbody.querySelectorAll("input[type=checkbox]")) box.checked = all.checked;
    });
  }

  /** `GET /sessions/{id}/attendance`'s rows, or `attendance:update`s. */
  take(records) {
    for (const r of records) this.rows.set(r.student_id, { ...this.rows.get(r.student_id), ...r });
    this.show();
  }

  ensure(studentIds) {
    for (const id of studentIds) if (!this.rows.has(id)) this.rows.set(id, { student_id: id, status: null });
    this.show();
  }

  selected() {
    return [...this.tbody.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
  }

  show() {
    const chosen = new Set(this.selected());
    const rows = [...this.rows.values()].map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.student = r.student_id;
      tr.dataset.status = r.status || "";
      const pick = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = r.student_id;
      box.checked = chosen.has(r.student_id);
      box.setAttribute("aria-label", `Select ${this.nameOf(r.student_id)}`);
      pick.append(box);
      const name = document.createElement("td");
      name.textContent = this.nameOf(r.student_id);
      const status = document.createElement("td");
      status.className = `attendance-${r.status || "NONE"}`;
      status.textContent = (STATUS_WORDS[r.status] || "Not joined") + (r.catch_up ? " · catch-up" : "");
      tr.append(pick, name, status);
      return tr;
    });
    this.tbody.replaceChildren(...rows);
  }
}
