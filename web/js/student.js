// The student's whiteboard (/student?session=<id>#token=<jwt>): their own canvas,
// the tutor's marks, mode, timers, assignment, announcements and help.
import { Connection, launchParameters } from "./connection.js";
import { createBoard } from "./render.js";
import { CanvasSync } from "./sync.js";
import { Drawing, toolbar } from "./tools.js";
import { $, clock, list, say, setStatus } from "./ui.js";

const { token, sessionId } = launchParameters();
const board = createBoard($("#board"));
let me = null;
let sync = null;
let drawing = null;
const timers = new Map();
let help = [];
let position = null;
let connectionStatus = "joining";

if (!token || !sessionId) {
  say("Open this page from your lesson link (it names the session and carries your sign-in).");
  setStatus("offline", "Not signed in");
} else {
  start();
}

function start() {
  const connection = new Connection({
    token,
    sessionId,
    since: () => (sync && sync.epoch ? { [me]: sync.seq } : null),
    onJoined: (ack) => joined(connection, ack),
    onStatus: (status) => {
      if (status !== "online") sync?.disconnected();
      connectionStatus = status;
      showStatus();
    },
    onRefused: (message) => say(message),
  });
  connection.on("canvas:patches", ({ items }) => {
    for (const item of items) {
      if (sync && item.student_id === me) sync.receive(item.seq, item.ops, true, item.epoch);
    }
  });
  connection.on("mode:changed", ({ student_id, mode }) => student_id === me && showMode(mode));
  connection.on("exercise:assigned", (a) => a.student_id === me && showAssignment(a));
  connection.on("help:updated", (update) => {
    help = help.filter((h) => h.id !== update.help_request.id);
    if (["OPEN", "IN_PROGRESS"].includes(update.help_request.status)) help.push(update.help_request);
    position = update.position;
    showHelp(update.help_request);
  });
  // Another student's request was raised, taken or closed ahead of ours.
  connection.on("help:position", (update) => {
    position = update.position;
    if (help.length) showHelp(null);
  });
  connection.on("timer:started", ({ timer }) => { timers.set(timer.id, timer); showTimers(); });
  connection.on("timer:cancelled", ({ timer }) => { timers.delete(timer.id); showTimers(); });
  connection.on("timer:alert", (alert) => {
    const what = alert.kind === "TIMER_END" ? "ended" : alert.kind === "TIMER_WARNING" ? "is ending soon" : "";
    say(`${alert.label || alert.kind} ${what}`.trim());
    if (alert.kind === "TIMER_END") { timers.delete(alert.timer_id); showTimers(); }
  });
  connection.on("announcement", (a) => {
    const li = document.createElement("li");
    li.textContent = `${a.title ? `${a.title}: ` : ""}${a.text}`;
    if (a.is_urgent) li.classList.add("alert");
    list($("#announcements"), [li, ...[...$("#announcements").children].filter((c) => !c.classList.contains("empty"))]);
  });
  connection.on("session:ended", () => end("The session has ended. Your board is saved."));
  connection.on("session:removed", () => end("You were removed from this session."));
  connection.on("hub:closing", ({ code }) => code === "TOKEN_EXPIRED" && say("Your sign-in expired: open the lesson link again."));
  setInterval(showTimers, 1000);
  document.addEventListener("visibilitychange", () =>
    connection.call("presence:ping", { session_id: sessionId, state: "active", focused: !document.hidden }));
  $("#help-form").addEventListener("submit", (e) => askForHelp(e, connection));
  $("#progress").addEventListener("change", () => reportProgress(connection));
  setUpTools();
}

function joined(connection, ack) {
  const mine = ack.students[0];
  $("#title").textContent = `${ack.session.title} · ${ack.you.name || ack.you.user_id}`;
  document.title = `${ack.session.title} · Whiteboard`;
  if (!sync) {
    me = ack.you.user_id;
    sync = new CanvasSync({
      sessionId, studentId: me, author: "student",
      call: (event, payload, ms) => connection.call(event, payload, ms),
      onChange: () => { board.render(sync.document); publish(); },
      onNotice: say,
    });
    drawing.documentOf = () => sync.document;
    drawing.commit = (ops) => sync.change(ops);
  }
  sync.takeCatchUp(ack.canvases[me]);
  sync.connected();
  showMode(mine?.mode);
  if (mine?.assignment) showAssignment({ ...mine.assignment, exercise: mine.assignment.exercise });
  const progress = ack.progress?.[me];
  if (progress && progress.exercise_id === $("#assignment").dataset.exerciseId) {
    $("#progress").value = String(progress.progress_pct);
  }
  timers.clear();
  for (const timer of ack.timers) timers.set(timer.id, timer);
  showTimers();
  help = ack.help;
  showHelp(help[0]);
}

// For the browser tests and the curious: the document shown, its position, what is
// waiting to be sent (read-only copies).
function publish() {
  window.__board = Object.freeze({
    document: structuredClone(sync.document),
    seq: sync.seq,
    epoch: sync.epoch,
    pending: sync.pending,
  });
  $("#board").dataset.seq = String(sync.seq);
  $("#board").dataset.pending = String(sync.pending);
  showStatus();
}

function showStatus() {
  const queued = sync?.pending ? ` · ${sync.pending} change(s) waiting to be sent` : "";
  const words = { online: "Online", offline: "Offline — keep drawing", joining: "Reconnecting…" };
  setStatus(connectionStatus, words[connectionStatus] + queued);
}

function setUpTools() {
  drawing = new Drawing({ board, section: "elements", documentOf: () => ({}), commit: () => {} });
  toolbar({
    drawing,
    buttons: [...document.querySelectorAll("[data-tool]")],
    textLabel: $("#text-label"),
    keys: { p: "pen", r: "rect", e: "ellipse", l: "line", a: "arrow", t: "text", x: "eraser" },
  });
  $("#undo").addEventListener("click", () => drawing.undo());
  $("#color").addEventListener("input", (e) => { drawing.color = e.target.value; });
  $("#width").addEventListener("input", (e) => { drawing.width = Number(e.target.value); });
  $("#text").addEventListener("input", (e) => { drawing.text = e.target.value; });
}

function showMode(mode) {
  const badge = $("#mode");
  badge.textContent = `Mode: ${mode === "TEACH" ? "Teach" : "Observe"}`;
  badge.dataset.mode = mode || "OBSERVE";
  badge.className = `badge mode-${mode || "OBSERVE"}`;
}

function showAssignment(a) {
  const exercise = a.exercise || {};
  if ($("#assignment").dataset.exerciseId !== (exercise.id || "")) $("#progress").value = "0";
  $("#assignment").textContent = exercise.title ? `${exercise.title}` : "No exercise assigned yet.";
  $("#assignment").dataset.exerciseId = exercise.id || "";
  const instructions = typeof exercise.instructions === "string" ? exercise.instructions : "";
  $("#instructions").textContent = instructions;
  $("#instructions").hidden = !instructions;
}

function showTimers() {
  const items = [...timers.values()].map((t) => {
    const li = document.createElement("li");
    li.textContent = `${t.label}: ${clock(Date.parse(t.ends_at) - Date.now())}`;
    return li;
  });
  list($("#timers"), items, "No timer running.");
}

function showHelp(request) {
  const status = $("#help-status");
  const active = help.find((h) => ["OPEN", "IN_PROGRESS"].includes(h.status));
  if (active) {
    const place = active.status === "IN_PROGRESS"
      ? `Your tutor is on it${active.response ? `: “${active.response}”` : "."}`
      : position ? `Place in the queue: ${position}.` : "Waiting for your tutor.";
    status.textContent = `Asked (${active.priority.toLowerCase()}): “${active.message}”. ${place}`;
    status.dataset.position = position ?? "";
  } else if (request && request.status === "RESOLVED") {
    status.textContent = `Resolved${request.response ? `: ${request.response}` : "."}`;
  } else {
    status.textContent = "";
  }
}

async function askForHelp(event, connection) {
  event.preventDefault();
  const ack = await connection.call("help:request", {
    session_id: sessionId, message: $("#help-message").value.trim(), priority: $("#help-priority").value,
  });
  if (!ack.ok) { say(`Help request not sent: ${ack.error?.message || ack.error?.code}`); return; }
  $("#help-message").value = "";
  if (!help.some((h) => h.id === ack.help_request.id)) help.push(ack.help_request);
  showHelp(ack.help_request);
}

async function reportProgress(connection) {
  const exerciseId = $("#assignment").dataset.exerciseId;
  if (!exerciseId) { say("There is no exercise to report progress on yet."); return; }
  const pct = Number($("#progress").value);
  await connection.call("exercise:progress", {
    session_id: sessionId, exercise_id: exerciseId, progress_pct: pct, completed: pct === 100,
  });
}

function end(message) {
  say(message);
  drawing.enabled = false;
  setStatus("offline", "Session over");
}
