// The tutor's control center (/tutor[?session=<id>]#token=<jwt>): without a
// session, the day's sessions to pick from; with one, a tile per student (tiles.js),
// the help queue (help.js), timers, alerts and attendance (panels.js), one student
// large to annotate, assignments, notes, announcements and ending the session.
// Marks go through the student's CanvasSync, so they queue offline and resume with
// `since` exactly like the student's own strokes (docs/protocol.md, "Browser pages").
import { Connection, launchParameters, rest } from "./connection.js";
import { HelpQueue } from "./help.js";
import { Alerts, Attendance, Timers } from "./panels.js";
import { ANNOTATION_COLOR, createBoard } from "./render.js";
import { Tile } from "./tiles.js";
import { Drawing, toolbar } from "./tools.js";
import { $, clock, list, say, setStatus } from "./ui.js";

const { token, sessionId } = launchParameters();
const claims = readClaims(token);
const tiles = new Map(); // student id -> Tile
const nameOf = (id) => tiles.get(id)?.name || id;
let connection = null;
let session = null;
let connectionStatus = "joining";
let focused = null; // the Tile shown large
let focusBoard = null;
let drawing = null;
const histories = new Map(); // student id -> the undo history of the tutor's marks
const plans = new Map(); // student id -> the exercises planned for them (exercise_content.exercises)
let help;
let timers;
let alerts;
let attendance;

if (!token) {
  say("Open this page from your platform's link or from the development sign-in on /.");
} else if (!sessionId) {
  if (claims.role && claims.role !== "TUTOR") showSessions();
  else showDay();
} else {
  openSession();
}

/** The token's claims, read only to shape the page (the hub checks every call). */
function readClaims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "="))) || {};
  } catch {
    return {};
  }
}

// Staff who are not tutors (they observe) have no "my day": the sessions they may open.
async function showSessions() {
  $("#day").hidden = false;
  $("#day-h").textContent = "Sessions";
  const { data } = await rest("GET", "/api/v1/sessions?limit=100", token);
  list($("#sessions"), data.map((s) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `/tutor?session=${encodeURIComponent(s.id)}#token=${encodeURIComponent(token)}`;
    a.textContent = `${new Date(s.starts_at).toLocaleString()} · ${s.title} (${s.status.toLowerCase()})`;
    li.append(a);
    return li;
  }), "No sessions.");
}

// "My day" (docs/protocol.md): today's sessions in the browser's time zone, each
// with its students and open help, then what is waiting on the tutor.
async function showDay() {
  $("#day").hidden = false;
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  let day;
  try {
    ({ data: day } = await rest("GET", `/api/v1/tutors/me/day?tz=${encodeURIComponent(tz)}`, token));
  } catch (e) {
    say(`Your day was not loaded: ${e.message}`);
    return;
  }
  $("#day-h").textContent = `My day · ${new Date(`${day.date}T12:00:00`).toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" })}`;
  const titles = new Map(day.sessions.map((s) => [s.id, s.title]));
  const names = new Map();
  for (const s of day.sessions) for (const st of s.students) names.set(st.student_id, st.student_name || st.student_id);
  const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const item = (text, className) => {
    const li = document.createElement("li");
    if (className) li.className = className;
    if (text !== undefined) li.textContent = text;
    return li;
  };
  list($("#sessions"), day.sessions.map((s) => {
    const li = item(undefined, "day-session");
    li.dataset.session = s.id;
    const a = document.createElement("a");
    a.href = `/tutor?session=${encodeURIComponent(s.id)}#token=${encodeURIComponent(token)}`;
    a.textContent = `${time(s.starts_at)}–${time(s.ends_at)} · ${s.title}`;
    const status = document.createElement("span");
    status.className = "badge";
    status.textContent = s.status.toLowerCase();
    const helpBadge = document.createElement("span");
    helpBadge.className = `badge open-help${s.open_help ? " alert" : ""}`;
    helpBadge.dataset.count = String(s.open_help);
    helpBadge.textContent = `${s.open_help} open help`;
    const students = document.createElement("p");
    students.className = "small day-students";
    students.textContent = s.students.length
      ? s.students.map((st) => `${st.student_name || st.student_id}${st.attendance ? ` (${String(st.attendance).toLowerCase()})` : ""}`).join(", ")
      : "No students enrolled.";
    li.append(a, " ", status, " ", helpBadge, students);
    return li;
  }), "No sessions today.");
  const section = (id, heading, items, empty) => {
    const h = document.createElement("h3");
    h.id = `${id}-h`;
    h.textContent = `${heading} (${items.length})`;
    const ul = document.createElement("ul");
    ul.id = id;
    ul.className = "plain small";
    ul.setAttribute("aria-labelledby", h.id);
    list(ul, items, empty);
    return [h, ul];
  };
  const where = (r) => `${names.get(r.student_id) || r.student_name || r.student_id} · ${titles.get(r.session_id) || r.session_id}`;
  $("#day-extra").replaceChildren(
    ...section("day-help", "Open help requests", day.open_help_requests.map((r) =>
      item(`${where(r)} · ${r.priority.toLowerCase()} · ${r.status === "IN_PROGRESS" ? "in progress" : `since ${time(r.created_at)}`}: ${r.message}`)),
    "Nobody is waiting."),
    ...section("day-absent", "Absent without catch-up work", day.absent_without_catch_up.map((a) =>
      item(`${where(a)}${a.attendance ? ` (${String(a.attendance).toLowerCase()})` : " (never joined)"}`)),
    "Nobody."),
    ...section("day-assess", "Assessments waiting", day.assessments_waiting.map((a) => item(where(a))), "None."),
  );
}

const call = (event, payload, ms) => connection.call(event, { session_id: sessionId, ...payload }, ms);

function openSession() {
  $("#room").hidden = false;
  help = new HelpQueue({ ol: $("#help"), nameOf, act: actOnHelp, onChange: showHelpBadges });
  timers = new Timers({ ul: $("#timers"), nameOf, cancel: cancelTimer });
  alerts = new Alerts({ ul: $("#alerts"), nameOf });
  attendance = new Attendance({ tbody: $("#attendance"), all: $("#attendance-all"), nameOf });
  connection = new Connection({
    token, sessionId,
    since: () => Object.fromEntries(
      [...tiles].filter(([, t]) => t.sync.epoch).map(([id, t]) => [id, t.sync.seq]),
    ),
    onJoined: joined,
    onStatus: (s) => {
      if (s !== "online") for (const t of tiles.values()) t.sync.disconnected();
      connectionStatus = s;
      showStatus();
    },
    onRefused: say,
  });
  const on = (event, handler) => connection.on(event, handler);
  on("canvas:patches", ({ items }) => {
    for (const item of items) tiles.get(item.student_id)?.sync.receive(item.seq, item.ops, true, item.epoch);
  });
  on("presence:update", (p) => tiles.get(p.student_id)?.setPresence(p));
  on("mode:changed", (m) => tiles.get(m.student_id)?.setMode(m.mode));
  on("exercise:assigned", (a) => tiles.get(a.student_id)?.setExercise(a.exercise));
  on("progress:update", (p) => tiles.get(p.student_id)?.setProgress(p));
  on("help:updated", (update) => help.update(update));
  on("timer:started", ({ timer }) => timers.started(timer));
  on("timer:cancelled", ({ timer }) => timers.ended(timer.id));
  on("timer:alert", (alert) => {
    alerts.add(alert);
    if (alert.kind === "TIMER_END") timers.ended(alert.timer_id);
    if (alert.kind === "HELP_WAITING" && alert.help_id) help.escalate(alert.help_id);
  });
  on("attendance:update", (record) => attendance.take([record]));
  on("announcement", (a) => alerts.add({ kind: "ANNOUNCEMENT", label: `Announced${a.student_id ? ` to ${nameOf(a.student_id)}` : ""}: ${a.text}`, at: a.at }));
  on("session:ended", () => ended());
  on("hub:closing", ({ code }) => code === "TOKEN_EXPIRED" && say("Your sign-in expired: open the link again."));
  setUpFocus();
  setUpForms();
  setInterval(tick, 1000);
  publish();
}

function joined(ack) {
  session = ack.session;
  $("#title").textContent = `${ack.session.title} · control center`;
  document.title = `${ack.session.title} · Control center`;
  $("#end").hidden = ack.you.role !== "TUTOR";
  const observing = ack.you.role === "OBSERVER";
  for (const student of ack.students) {
    plans.set(student.student_id, plannedExercises(student));
    let tile = tiles.get(student.student_id);
    if (!tile) {
      tile = new Tile({
        student, sessionId, call: (e, p, ms) => connection.call(e, p, ms),
        hooks: { onMode: setMode, onOpen: openLarge, onChange: tileChanged, onNotice: say },
        replayHref: replayHref(student.student_id),
      });
      tiles.set(tile.id, tile);
      $("#tiles").append(tile.article);
    } else {
      tile.take(student);
    }
    if (ack.progress?.[student.student_id]) tile.setProgress(ack.progress[student.student_id]);
    tile.sync.takeCatchUp(ack.canvases[student.student_id]);
    tile.sync.connected();
  }
  readOnly(observing);
  for (const select of document.querySelectorAll(".student-choice")) {
    const keep = select.value;
    select.replaceChildren(select.options[0], ...[...tiles.values()].map((t) => new Option(t.name, t.id)));
    select.value = keep;
  }
  help.reset(ack.help);
  timers.reset(ack.timers);
  attendance.ensure([...tiles.keys()]);
  rest("GET", `/api/v1/sessions/${encodeURIComponent(sessionId)}/attendance`, token)
    .then(({ data }) => attendance.take(data))
    .catch((e) => say(`Attendance not loaded: ${e.message}`));
  tick();
}

/** The replay page of one student's session (docs/protocol.md, "Browser pages"). */
function replayHref(studentId) {
  return `/replay?session=${encodeURIComponent(sessionId)}&student=${encodeURIComponent(studentId)}`
    + `#token=${encodeURIComponent(token)}`;
}

/**
 * An observer (docs/protocol.md, "Who may do what live") sees the tutor's view with
 * every control the hub would refuse hidden or disabled; a center admin (or super
 * admin) may still mark attendance over REST, a supervisor may not.
 */
function readOnly(observing) {
  document.body.classList.toggle("observing", observing);
  document.body.classList.toggle("no-attendance", observing && !["CENTER_ADMIN", "SUPER_ADMIN"].includes(claims.role));
  $("#observing").hidden = !observing;
  drawing.enabled = !observing && connectionStatus !== "ended";
  for (const tile of tiles.values()) {
    tile.modeButton.disabled = observing;
    if (observing) tile.modeButton.title = "Observers cannot change the mode";
  }
}

function tileChanged(tile) {
  if (focused === tile) focusBoard.schedule(() => tile.sync.document);
  publish();
}

// For the browser tests and the curious: each tile's document, position and what
// waits to be sent, read on demand (copies), and the rendered count on each board.
function publish() {
  showStatus();
  if (window.__control) return;
  const view = (tile) => tile && {
    document: structuredClone(tile.sync.document),
    seq: tile.sync.seq,
    epoch: tile.sync.epoch,
    pending: tile.sync.pending,
    rendered: Number(tile.board.svg.dataset.count || 0),
  };
  window.__control = Object.freeze({
    students: () => [...tiles.keys()],
    tile: (id) => view(tiles.get(id)),
    pending: () => [...tiles.values()].reduce((n, t) => n + t.sync.pending, 0),
  });
}

function showStatus() {
  const pending = [...tiles.values()].reduce((n, t) => n + t.sync.pending, 0);
  const queued = pending ? ` · ${pending} mark(s) waiting to be sent` : "";
  const words = { online: "Online", offline: "Offline — keep marking", joining: "Reconnecting…", ended: "Session over" };
  setStatus(connectionStatus, (words[connectionStatus] || connectionStatus) + queued);
  if ($("#status").dataset.pending !== String(pending)) $("#status").dataset.pending = String(pending);
}

function tick() {
  for (const tile of tiles.values()) tile.tick();
  help.tick();
  timers.tick();
  if (session) {
    const left = Date.parse(session.ends_at) - Date.now();
    $("#clock").textContent = left >= 0 ? `Ends in ${clock(left)}` : `Over by ${clock(-left)}`;
    $("#clock").classList.toggle("alert", left < 5 * 60 * 1000);
  }
}

function showHelpBadges() {
  const ordered = help.ordered();
  const places = new Map(ordered.map((r, i) => [r.id, i + 1]));
  for (const tile of tiles.values()) tile.setHelp(ordered.filter((r) => r.student_id === tile.id), places);
  $("#help-count").textContent = String(ordered.length);
}

async function report(what, ack) {
  if (!ack.ok) say(`${what}: ${ack.error?.message || ack.error?.code}`);
  return ack.ok;
}

async function setMode(tile, mode) {
  await report("Mode not changed", await call("mode:set", { student_id: tile.id, mode }));
}

async function actOnHelp(request, status, response) {
  const ack = await call("help:update", { help_id: request.id, status, ...(response ? { response } : {}) });
  if (!(await report("Help request not updated", ack))) return false;
  help.update({ help_request: ack.help_request });
  return true;
}

async function cancelTimer(timer) {
  if (await report("Timer not cancelled", await call("timer:cancel", { timer_id: timer.id }))) {
    timers.ended(timer.id);
  }
}

function setUpFocus() {
  focusBoard = createBoard($("#focus-board"));
  drawing = new Drawing({ board: focusBoard, section: "annotations", documentOf: () => ({}), commit: () => {} });
  drawing.color = ANNOTATION_COLOR;
  toolbar({
    drawing,
    buttons: [...document.querySelectorAll("#focus [data-tool]")],
    textLabel: $("#focus-text-label"),
    keys: { p: "pen", r: "rect", e: "ellipse", a: "arrow", t: "text", x: "eraser" },
    active: () => Boolean(focused),
  });
  $("#focus-undo").addEventListener("click", () => drawing.undo());
  $("#focus-text").addEventListener("input", (e) => { drawing.text = e.target.value; });
  $("#focus-close").addEventListener("click", closeLarge);
  document.addEventListener("keydown", (e) => {
    if (focused && e.key === "Escape" && !e.target.closest("input, textarea, select, dialog")) closeLarge();
  });
}

function openLarge(tile) {
  focused = tile;
  if (!histories.has(tile.id)) histories.set(tile.id, []);
  drawing.history = histories.get(tile.id);
  drawing.documentOf = () => tile.sync.document;
  drawing.commit = (ops) => tile.sync.change(ops);
  $("#focus-h").textContent = `${tile.name} · your marks are red`;
  $("#focus-board").setAttribute("aria-label", `${tile.name}'s board, large. Your marks are drawn in red; Enter places the chosen shape or text in the middle.`);
  $("#focus").dataset.student = tile.id;
  showPlan(tile);
  $("#focus-replay").href = replayHref(tile.id);
  $("#focus-replay").setAttribute("aria-label", `Replay ${tile.name}'s session (new tab)`);
  $("#tiles").hidden = true;
  $("#focus").hidden = false;
  focusBoard.render(tile.sync.document);
  $("#focus-board").focus();
  loadNotes(tile);
}

function closeLarge() {
  const tile = focused;
  focused = null;
  drawing.cancel();
  $("#focus").hidden = true;
  $("#tiles").hidden = false;
  tile?.openButton.focus();
}

async function loadNotes(tile) {
  try {
    const { data } = await rest("GET",
      `/api/v1/sessions/${encodeURIComponent(sessionId)}/notes?student_id=${encodeURIComponent(tile.id)}&limit=100`, token);
    if (focused === tile) $("#notes").replaceChildren(...data.map(noteItem));
  } catch (e) {
    say(`Notes not loaded: ${e.message}`);
  }
}

function noteItem(note) {
  const li = document.createElement("li");
  li.textContent = `${new Date(note.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} (${note.visibility.toLowerCase()}) ${note.text}`;
  return li;
}

/** The exercises a center planned for a student's course, lesson and level: the
 * enrollment's `exercise_content.exercises`, each `{id, title, ...}` (others skipped). */
function plannedExercises(student) {
  const planned = student.exercise_content?.exercises;
  if (!Array.isArray(planned)) return [];
  return planned.filter((e) => e && typeof e.id === "string" && typeof e.title === "string"
    && e.id && e.title.trim() && e.title.length <= 200);
}

/** The assign form offers the student's plan; "Type a title" is always there. */
function showPlan(tile) {
  const pick = $("#assign-pick");
  const options = (plans.get(tile.id) || []).map((e, i) => {
    const option = new Option(e.id === tile.exerciseId ? `${e.title} (current)` : e.title, String(i));
    return option;
  });
  pick.replaceChildren(...options, new Option("Type a title…", ""));
  pick.value = options.length ? "0" : "";
  showTitleField();
}

function showTitleField() {
  const typed = $("#assign-pick").value === "";
  $("#assign-title-label").hidden = !typed;
  $("#assign-title").required = typed;
}

function submit(selector, handler) {
  $(selector).addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.target.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await handler(event.target);
    } finally {
      button.disabled = false;
    }
  });
}

function setUpForms() {
  $("#assign-pick").addEventListener("change", showTitleField);
  submit("#assign-form", async () => {
    const tile = focused;
    const chosen = $("#assign-pick").value;
    const exercise = chosen === ""
      ? { id: `ex-${crypto.randomUUID().slice(0, 8)}`, title: $("#assign-title").value.trim() }
      : plans.get(tile.id)[Number(chosen)];
    const ack = await call("exercise:assign", { student_id: tile.id, exercise });
    if (await report("Exercise not assigned", ack)) {
      tile.setExercise(exercise);
      $("#assign-title").value = "";
      if (focused === tile) showPlan(tile);
    }
  });
  submit("#note-form", async () => {
    const ack = await call("note:add", {
      student_id: focused.id, text: $("#note-text").value.trim(), visibility: $("#note-visibility").value,
    });
    if (await report("Note not saved", ack)) {
      $("#notes").append(noteItem(ack.note));
      $("#note-text").value = "";
    }
  });
  submit("#timer-form", async () => {
    const duration = Math.round(Number($("#timer-minutes").value) * 60);
    const payload = { label: $("#timer-label").value.trim(), duration_s: duration };
    if (duration >= 120) payload.warn_before_s = 60; // a minute's warning
    if ($("#timer-student").value) payload.student_id = $("#timer-student").value;
    const ack = await call("timer:start", payload);
    if (await report("Timer not started", ack)) timers.started(ack.timer);
  });
  submit("#announce-form", async () => {
    const payload = { text: $("#announce-text").value.trim() };
    if ($("#announce-student").value) payload.student_id = $("#announce-student").value;
    if (await report("Announcement not sent", await call("announcement:send", payload))) {
      $("#announce-text").value = "";
    }
  });
  submit("#attendance-form", async () => {
    const status = $("#attendance-status").value;
    const ids = attendance.selected();
    if (!ids.length) { say("Select the students to mark first."); return; }
    try {
      const { data } = await rest("POST", "/api/v1/attendance/bulk", token, {
        session_id: sessionId, records: ids.map((student_id) => ({ student_id, status })),
      });
      attendance.take(data.records);
      const made = data.catch_ups_created?.length;
      say(`Marked ${ids.length} ${status.toLowerCase()}${made ? `; ${made} catch-up package(s) created` : ""}.`);
    } catch (e) {
      say(`Attendance not marked: ${e.message}`);
    }
  });
  $("#end").addEventListener("click", () => $("#end-dialog").showModal());
  $("#end-dialog").addEventListener("close", async () => {
    if ($("#end-dialog").returnValue !== "end") return;
    await report("The session was not ended", await call("session:end", {}));
  });
}

function ended() {
  say("The session has ended. Every board is saved.");
  connectionStatus = "ended";
  drawing.enabled = false;
  $("#end").hidden = true;
  showStatus();
}
