// Per-student replay (/replay?session=<id>&student=<id>#token=<jwt>): one student's
// board stroke by stroke with their help requests, mode changes, tutor marks and
// attendance on one time axis, with a scrubber. The timeline and the board at each
// point come from timeline.js; the board is drawn by render.js.
import { launchParameters } from "./connection.js";
import { createBoard } from "./render.js";
import { loadTimeline, Replay } from "./timeline.js";
import { $, clock, list, say, setStatus } from "./ui.js";

// "Skip idle gaps": a stretch of the session with nothing in it for longer than this
// is jumped over, up to a moment before the next entry.
const IDLE_GAP_MS = 2000;
const IDLE_LEAD_MS = 500;
// The rows of the track, top to bottom: what each entry is marked as.
const KINDS = [
  ["student", "Student strokes"],
  ["tutor", "Tutor marks"],
  ["help", "Help"],
  ["mode", "Mode"],
  ["attendance", "Attendance"],
  ["assignment", "Assignments"],
  ["timer", "Timers"],
];
const ROW = 10;
const TRACK_WIDTH = 1000;

const { token, sessionId } = launchParameters();
const studentId = new URLSearchParams(location.search).get("student");
const board = createBoard($("#board"));
const scrubber = $("#scrubber");
let replay = null;
let t = 0; // where the player stands on the axis, epoch ms
let playing = false;
let speed = 1;
let lastFrame = 0;
let eventItems = []; // [entry index, <li>] of the side list

// For the browser tests and the curious: what the page shows, as a fresh read-only copy.
Object.defineProperty(window, "__replay", {
  get: () =>
    replay &&
    Object.freeze({
      document: structuredClone(replay.document),
      index: replay.index,
      total: replay.entries.length,
      at: t,
      start: replay.start,
      end: replay.end,
      playing,
    }),
});

function trackKind(entry) {
  if (entry.kind === "patch") return entry.author === "tutor" ? "tutor" : "student";
  return entry.kind === "exercise" ? "assignment" : entry.kind;
}

const HELP_WORDS = {
  raised: "Help asked",
  escalated: "Help request waiting long (escalated)",
  answered: "Tutor took the help request",
  resolved: "Help resolved",
  cancelled: "Help cancelled",
};

/** A non-canvas entry in words. */
function describe(entry) {
  switch (entry.kind) {
    case "help": {
      const by = entry.handled_by ? ` by ${entry.handled_by}` : "";
      const said = entry.event === "raised" ? `: “${entry.message}” (${String(entry.priority).toLowerCase()})`
        : entry.response ? `: “${entry.response}”` : "";
      return `${HELP_WORDS[entry.event] || `Help ${entry.event}`}${by}${said}`;
    }
    case "mode":
      return `Mode: ${entry.mode === "TEACH" ? "Teach" : "Observe"}${entry.changed_by ? ` (${entry.changed_by})` : ""}`;
    case "attendance":
      if (entry.event === "marked") return `Marked ${String(entry.status).toLowerCase()} by ${entry.marked_by}`;
      return entry.event === "joined" ? "Joined" : "Left";
    case "assignment":
      return `Assigned: ${entry.exercise?.title || entry.exercise?.id || "an exercise"}`;
    case "exercise":
      return `Exercise ${entry.exercise_id} ${entry.event}${entry.event === "completed" ? ` (${entry.progress_pct}%)` : ""}`;
    case "timer":
      return `Timer “${entry.label || entry.timer_id}” ${entry.event}${entry.student_id ? "" : " (whole session)"}`;
    default:
      return entry.kind;
  }
}

const offset = (ms) => clock(ms - replay.start);

function svg(name, attributes) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

const trackX = (ms) => (replay.duration ? ((ms - replay.start) / replay.duration) * TRACK_WIDTH : 0);

function drawTrack() {
  const track = $("#track");
  track.setAttribute("viewBox", `0 0 ${TRACK_WIDTH} ${KINDS.length * ROW}`);
  const rows = KINDS.map(([kind], row) => svg("rect", {
    class: `row row-${row % 2}`, x: 0, y: row * ROW, width: TRACK_WIDTH, height: ROW, "data-kind": kind,
  }));
  const marks = replay.entries.map((entry, i) => {
    const row = KINDS.findIndex(([kind]) => kind === trackKind(entry));
    const x = trackX(replay.times[i]).toFixed(2);
    return svg("line", {
      class: `mark kind-${trackKind(entry)}`, x1: x, x2: x, y1: row * ROW + 1, y2: row * ROW + ROW - 1,
    });
  });
  const playhead = svg("line", { id: "playhead", class: "playhead", x1: 0, x2: 0, y1: 0, y2: KINDS.length * ROW });
  track.replaceChildren(...rows, ...marks, playhead);
  track.addEventListener("click", (event) => {
    const box = track.getBoundingClientRect();
    seekTime(replay.start + ((event.clientX - box.left) / box.width) * replay.duration);
  });
  list($("#legend"), KINDS.map(([kind, words]) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch kind-${kind}`;
    li.append(swatch, words);
    return li;
  }));
}

function drawEvents() {
  eventItems = [];
  const items = [];
  replay.entries.forEach((entry, i) => {
    if (entry.kind === "patch") return;
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = `event kind-${trackKind(entry)}`;
    Object.assign(button.dataset, { index: String(i), kind: entry.kind, event: entry.event || entry.mode || "" });
    const time = document.createElement("time");
    time.dateTime = entry.at;
    time.textContent = offset(replay.times[i]);
    time.title = new Date(replay.times[i]).toLocaleString();
    button.append(time, ` ${describe(entry)}`);
    button.addEventListener("click", () => {
      pause();
      go(i + 1);
    });
    li.append(button);
    items.push(li);
    eventItems.push([i, li]);
  });
  list($("#events"), items, "Nothing but the board in this session.");
}

/** Show position `replay.index` at time `t`; redraw the board only when it changed. */
function show(boardChanged) {
  if (boardChanged) board.render(replay.document);
  const { index, entries } = replay;
  scrubber.value = String(Math.round(t - replay.start));
  const where = `${offset(t)} / ${clock(replay.duration)}`;
  scrubber.setAttribute("aria-valuetext", `${where}, ${index} of ${entries.length} entries`);
  $("#clock").textContent = where;
  const x = trackX(t).toFixed(2);
  $("#playhead").setAttribute("x1", x);
  $("#playhead").setAttribute("x2", x);
  $("#previous").disabled = index === 0;
  $("#next").disabled = index === entries.length;
  let current = null;
  for (const [i, li] of eventItems) {
    li.classList.toggle("future", i >= index);
    li.removeAttribute("aria-current");
    if (i < index) current = li;
  }
  if (current) {
    current.setAttribute("aria-current", "step");
    keepInView(current);
  }
  const state = replay.stateAt(index);
  $("#mode").textContent = `Mode: ${state.mode === "TEACH" ? "Teach" : "Observe"}`;
  $("#mode").className = `badge mode-${state.mode}`;
  $("#presence").textContent = state.present ? "Connected" : "Not connected";
  $("#now").textContent = `${index} of ${entries.length} entries; ${Object.keys(replay.document.elements || {}).length} element(s), ${Object.keys(replay.document.annotations || {}).length} tutor mark(s).`;
  $("#assignment").textContent = state.assignment ? `Exercise: ${state.assignment.title || state.assignment.id}` : "";
  $("#board").dataset.index = String(index);
}

// Scroll the event list (only the list, never the page) to keep the current event visible.
function keepInView(li) {
  const listBox = $("#events");
  const top = li.offsetTop - listBox.offsetTop;
  if (top < listBox.scrollTop || top + li.offsetHeight > listBox.scrollTop + listBox.clientHeight) {
    listBox.scrollTop = Math.max(0, top - listBox.clientHeight / 2);
  }
}

/** Go to position k (after its last entry). */
function go(k) {
  const changed = replay.seek(k);
  t = replay.timeOf(replay.index);
  show(changed);
}

/** Go to axis time `ms`: every entry at or before it has happened. */
function seekTime(ms) {
  t = Math.max(replay.start, Math.min(replay.end, ms));
  show(replay.seek(replay.indexAt(t)));
}

function play() {
  if (playing || !replay) return;
  if (replay.index === replay.entries.length && t >= replay.end) go(0);
  playing = true;
  lastFrame = performance.now();
  showPlaying();
  requestAnimationFrame(frame);
}

function pause() {
  if (!playing) return;
  playing = false;
  showPlaying();
}

function showPlaying() {
  $("#play").textContent = playing ? "Pause" : "Play";
  $("#play").setAttribute("aria-pressed", String(playing));
  setStatus("online", playing ? `Playing ${speed}×` : "Paused");
}

function frame(now) {
  if (!playing) return;
  let next = t + (now - lastFrame) * speed;
  lastFrame = now;
  if ($("#skip-idle").checked) {
    const upcoming = replay.times[replay.indexAt(t)] ?? replay.end;
    if (upcoming - t > IDLE_GAP_MS) next = Math.max(next, upcoming - IDLE_LEAD_MS);
  }
  seekTime(next);
  if (t >= replay.end) {
    show(replay.seek(replay.entries.length));
    pause();
    return;
  }
  requestAnimationFrame(frame);
}

function setUpControls() {
  $("#play").addEventListener("click", () => (playing ? pause() : play()));
  $("#previous").addEventListener("click", () => go(replay.index - 1));
  $("#next").addEventListener("click", () => go(replay.index + 1));
  const speeds = [...document.querySelectorAll("[data-speed]")];
  for (const button of speeds) {
    button.addEventListener("click", () => {
      speed = Number(button.dataset.speed);
      for (const b of speeds) b.setAttribute("aria-pressed", String(b === button));
      if (playing) showPlaying();
    });
  }
  scrubber.max = String(Math.round(replay.duration));
  scrubber.addEventListener("input", () => seekTime(replay.start + Number(scrubber.value)));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest("select, textarea, input:not([type=range])")) return;
    const onButton = Boolean(target.closest("button"));
    const actions = {
      " ": () => (playing ? pause() : play()),
      ArrowLeft: () => go(replay.index - 1),
      ArrowRight: () => go(replay.index + 1),
      Home: () => go(0),
      End: () => go(replay.entries.length),
    };
    // Space on a button presses that button, as everywhere else.
    if (!actions[event.key] || (event.key === " " && onButton)) return;
    event.preventDefault();
    actions[event.key]();
  });
  for (const id of ["#play", "#previous", "#next"]) $(id).disabled = false;
  scrubber.disabled = false;
}

async function start() {
  setStatus("joining", "Loading the timeline…");
  let timeline;
  try {
    timeline = await loadTimeline(sessionId, studentId, token);
  } catch (error) {
    setStatus("offline", "Not loaded");
    say(`Could not load the timeline: ${error.message}`);
    return;
  }
  try {
    replay = new Replay(timeline);
  } catch (error) {
    setStatus("offline", "Not playable");
    say(`The timeline's patches do not apply: ${error.message}`);
    return;
  }
  $("#title").textContent = `Replay · ${studentId} · ${new Date(replay.start).toLocaleString()}`;
  document.title = `Replay · ${studentId} · Tutor hub`;
  if (timeline.truncated) say(`Only the first ${replay.entries.length} entries are shown: the timeline is longer.`);
  drawTrack();
  drawEvents();
  setUpControls();
  go(0);
  board.render(replay.document);
  setStatus("online", `${replay.entries.length} entries loaded`);
  document.body.dataset.loaded = "true";
}

if (!token || !sessionId || !studentId) {
  say("Open this page with a link that names the session and the student and carries a sign-in: /replay?session=<id>&student=<id>#token=<jwt>.");
  setStatus("offline", "Not signed in");
} else {
  start();
}
