// The tutor's control center (/tutor[?session=<id>]#token=<jwt>). A beginning: the
// day's sessions to pick from, then one tile per student with their live board and
// presence, and the Teach/Observe toggle. The rest of issue 17's control center
// (help queue, timers, annotating, assignments, notes, attendance, announcements,
// ending) is still to come.
import { Connection, launchParameters, rest } from "./connection.js";
import { createBoard } from "./render.js";
import { CanvasSync } from "./sync.js";
import { $, say, setStatus } from "./ui.js";

const { token, sessionId } = launchParameters();
const tiles = new Map(); // student id -> {sync, board, presence, mode}

if (!token) {
  say("Open this page from your platform's link or from the development sign-in on /.");
} else if (!sessionId) {
  showDay();
} else {
  openSession();
}

async function showDay() {
  $("#day").hidden = false;
  const { data } = await rest("GET", "/api/v1/sessions?limit=100", token);
  const items = data.map((s) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `/tutor?session=${encodeURIComponent(s.id)}#token=${encodeURIComponent(token)}`;
    a.textContent = `${new Date(s.starts_at).toLocaleTimeString()} · ${s.title} (${s.status.toLowerCase()})`;
    li.append(a);
    return li;
  });
  $("#sessions").replaceChildren(...items);
}

function openSession() {
  $("#room").hidden = false;
  const connection = new Connection({
    token, sessionId,
    since: () => Object.fromEntries(
      [...tiles].filter(([, t]) => t.sync.epoch).map(([id, t]) => [id, t.sync.seq]),
    ),
    onJoined: (ack) => joined(connection, ack),
    onStatus: (s) => {
      for (const t of tiles.values()) if (s !== "online") t.sync.disconnected();
      setStatus(s, { online: "Online", offline: "Offline", joining: "Reconnecting…" }[s]);
    },
    onRefused: say,
  });
  connection.on("canvas:patches", ({ items }) => {
    for (const item of items) tiles.get(item.student_id)?.sync.receive(item.seq, item.ops, true, item.epoch);
  });
  connection.on("presence:update", (p) => tiles.get(p.student_id) && showPresence(p.student_id, p.status));
  connection.on("mode:changed", (m) => tiles.get(m.student_id) && showMode(m.student_id, m.mode));
}

function joined(connection, ack) {
  $("#title").textContent = `${ack.session.title} · control center`;
  for (const student of ack.students) {
    let tile = tiles.get(student.student_id);
    if (!tile) tile = addTile(connection, student);
    tile.sync.takeCatchUp(ack.canvases[student.student_id]);
    tile.sync.connected();
    showPresence(student.student_id, student.status);
    showMode(student.student_id, student.mode);
  }
}

function addTile(connection, student) {
  const id = student.student_id;
  const article = document.createElement("article");
  article.className = "tile";
  article.dataset.student = id;
  article.innerHTML = `<h2><span class="name"></span> <span class="presence"></span></h2>
    <svg class="board" role="img"></svg>
    <button type="button" class="mode" aria-pressed="false">Teach</button>`;
  article.querySelector(".name").textContent = student.student_name || id;
  article.querySelector("svg").setAttribute("aria-label", `${student.student_name || id}'s board`);
  $("#tiles").append(article);
  const board = createBoard(article.querySelector("svg"));
  const tile = { article, board };
  tile.sync = new CanvasSync({
    sessionId, studentId: id, author: "tutor",
    call: (e, p, ms) => connection.call(e, p, ms),
    onChange: () => board.render(tile.sync.document),
    onNotice: say,
  });
  article.querySelector(".mode").addEventListener("click", async (e) => {
    const teach = e.currentTarget.getAttribute("aria-pressed") !== "true";
    const ack = await connection.call("mode:set", { session_id: sessionId, student_id: id, mode: teach ? "TEACH" : "OBSERVE" });
    if (!ack.ok) say(`Mode not changed: ${ack.error?.message}`);
  });
  tiles.set(id, tile);
  return tile;
}

function showPresence(id, status) {
  const span = tiles.get(id).article.querySelector(".presence");
  span.textContent = status;
  span.className = `presence presence-${status}`;
}

function showMode(id, mode) {
  const button = tiles.get(id).article.querySelector(".mode");
  button.setAttribute("aria-pressed", String(mode === "TEACH"));
  button.setAttribute("aria-label", `Teach ${tiles.get(id).article.querySelector(".name").textContent} (now ${mode === "TEACH" ? "teaching" : "observing"})`);
}
