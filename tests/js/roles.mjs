// Drives a running tutor hub with the stock socket.io-client and reports what it saw.
//
//   node tests/js/roles.mjs '<scenario json>'
//
// The scenario (built by tests/test_js_client.py):
//   {
//     "url": "http://127.0.0.1:PORT",
//     "session_id": "...",
//     "tokens": {
//       "bad_signature", "expired",            // refused at connect
//       "tutor", "supervisor", "student",       // may join
//       "stranger_student", "parent", "other_center_tutor"  // joins refused
//     }
//   }
//
// Prints one JSON object of observations on stdout and exits 0. Judging them
// is the Python test's job; this script only records. It exits 1 (after
// printing what it has, plus "fatal") when a step throws, and 2 when the whole
// run takes longer than HARD_TIMEOUT_MS.

import { readFileSync } from "node:fs";
import { io } from "socket.io-client";

const HARD_TIMEOUT_MS = 20_000;
const STEP_TIMEOUT_MS = 5_000;
const POLL_MS = 20;

const hardTimeout = setTimeout(() => {
  process.stderr.write(`roles.mjs: gave up after ${HARD_TIMEOUT_MS} ms\n`);
  process.exit(2);
}, HARD_TIMEOUT_MS);
hardTimeout.unref();

const scenario = JSON.parse(process.argv[2] ?? "null");
if (!scenario || typeof scenario.url !== "string" || !scenario.tokens || !scenario.session_id) {
  process.stderr.write("usage: node roles.mjs '{\"url\", \"session_id\", \"tokens\": {...}}'\n");
  process.exit(64);
}
const { url, session_id: sessionId, tokens } = scenario;

const sockets = [];

function open(token) {
  const socket = io(url, {
    auth: { token },
    transports: ["websocket"],
    reconnection: false,
    timeout: STEP_TIMEOUT_MS,
    forceNew: true,
  });
  // Everything the hub sends this socket, in order.
  socket.heard = [];
  socket.onAny((event, ...args) => socket.heard.push({ event, args }));
  sockets.push(socket);
  return socket;
}

// Resolves with the socket once connected; rejects with the connect_error.
function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(err));
  });
}

async function connect(token) {
  return connected(open(token));
}

// A refused connect: what connect_error carried.
async function refusal(token) {
  const socket = open(token);
  try {
    await connected(socket);
    return { connected: true };
  } catch (err) {
    return {
      connected: socket.connected,
      error_message: err.message,
      code: err.data?.code ?? null,
      message: err.data?.message ?? null,
    };
  } finally {
    socket.close();
  }
}

function call(socket, event, payload) {
  return socket.timeout(STEP_TIMEOUT_MS).emitWithAck(event, payload);
}

function join(socket) {
  return call(socket, "session:join", { session_id: sessionId });
}

async function waitFor(what, check) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    if (check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function heard(socket, event) {
  return socket.heard.filter((h) => h.event === event).map((h) => h.args[0]);
}

function clientVersion() {
  try {
    const manifest = new URL("./node_modules/socket.io-client/package.json", import.meta.url);
    return JSON.parse(readFileSync(manifest, "utf8")).version;
  } catch {
    return null;
  }
}

async function run(observed) {
  observed.client_version = clientVersion();

  observed.refusals = {
    no_token: await refusal(undefined),
    bad_signature: await refusal(tokens.bad_signature),
    expired: await refusal(tokens.expired),
  };

  const joins = (observed.joins = {});
  const tutor = await connect(tokens.tutor);
  joins.tutor = await join(tutor);
  const supervisor = await connect(tokens.supervisor);
  joins.supervisor = await join(supervisor);

  const student = await connect(tokens.student);
  joins.student = await join(student);
  await waitFor("presence:update (active) at the tutor", () =>
    heard(tutor, "presence:update").length >= 1,
  );

  const refused = {
    stranger_student: await connect(tokens.stranger_student),
    parent: await connect(tokens.parent),
    other_center_tutor: await connect(tokens.other_center_tutor),
  };
  for (const [name, socket] of Object.entries(refused)) {
    joins[name] = await join(socket);
  }

  observed.leave = await call(student, "session:leave", { session_id: sessionId });
  observed.leave_again = await call(student, "session:leave", { session_id: sessionId });
  await waitFor("presence:update (offline) at the tutor", () =>
    heard(tutor, "presence:update").length >= 2,
  );
  await waitFor("presence:update (offline) at the supervisor", () =>
    heard(supervisor, "presence:update").length >= 2,
  );
  // The attendance mark with left_at is written after the offline is announced.
  for (const [name, socket] of [["tutor", tutor], ["supervisor", supervisor]]) {
    await waitFor(`attendance:update (left) at the ${name}`, () =>
      heard(socket, "attendance:update").length >= 2,
    );
  }

  observed.presence = {
    tutor: heard(tutor, "presence:update"),
    supervisor: heard(supervisor, "presence:update"),
  };
  observed.attendance = {
    tutor: heard(tutor, "attendance:update"),
    supervisor: heard(supervisor, "attendance:update"),
  };
  // Events (by name) each socket heard other than the staff's presence and attendance.
  const staffOnly = new Set(["presence:update", "attendance:update"]);
  observed.other_events = Object.fromEntries(
    Object.entries({ tutor, supervisor, student, ...refused }).map(([name, socket]) => [
      name,
      socket.heard
        .map((h) => h.event)
        .filter((e) => !staffOnly.has(e) || !["tutor", "supervisor"].includes(name)),
    ]),
  );
  observed.still_connected = Object.fromEntries(
    Object.entries({ tutor, supervisor, student, ...refused }).map(([name, s]) => [
      name,
      s.connected,
    ]),
  );
}

const observed = {};
let exitCode = 0;
try {
  await run(observed);
} catch (err) {
  observed.fatal = String(err?.stack ?? err);
  exitCode = 1;
} finally {
  for (const socket of sockets) socket.close();
}
process.stdout.write(JSON.stringify(observed) + "\n", () => process.exit(exitCode));
