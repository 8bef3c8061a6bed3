// A stock socket.io-client listening while tests/fuzz.py fuzzes a hub.
//
//   node tests/js/fuzz_watch.mjs '{"url", "session_id", "tokens": {name: token}, "max_s"}'
//
// Each named client connects, joins the session and counts what the hub sends it
// until this script's stdin closes (or max_s passes); then each joins again and
// asks canvas:sync since 0 for every canvas in that join. Prints one JSON object:
// {ready, disconnects, received, joins: {name: ack}, syncs: {name: {student: ack}}}.
// A disconnect (the stock client's answer to a packet it cannot parse) is
// recorded, not thrown. It prints "ready" on stderr once every client joined.

import { io } from "socket.io-client";

const STEP_TIMEOUT_MS = 10_000;
const { url, session_id: sessionId, tokens, max_s: maxS } = JSON.parse(process.argv[2]);
const hardTimeout = setTimeout(() => {
  process.stderr.write(`fuzz_watch.mjs: gave up after ${maxS + 30} s\n`);
  process.exit(2);
}, (maxS + 30) * 1000);
hardTimeout.unref();

const seen = { disconnects: [], received: {}, joins: {}, syncs: {} };

function connect(name, token) {
  const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
  seen.received[name] = {};
  socket.on("disconnect", (reason) => seen.disconnects.push([name, reason]));
  socket.onAny((event) => {
    seen.received[name][event] = (seen.received[name][event] || 0) + 1;
  });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

const call = (socket, event, data) => socket.timeout(STEP_TIMEOUT_MS).emitWithAck(event, data);

const sockets = {};
for (const [name, token] of Object.entries(tokens)) {
  sockets[name] = await connect(name, token);
  seen.joins[name] = await call(sockets[name], "session:join", { session_id: sessionId });
}
process.stderr.write("ready\n");

await new Promise((resolve) => {
  const timer = setTimeout(resolve, maxS * 1000);
  process.stdin.on("end", () => {
    clearTimeout(timer);
    resolve();
  });
  process.stdin.resume();
});

for (const [name, socket] of Object.entries(sockets)) {
  if (!socket.connected) continue;
  try {
    const ack = await call(socket, "session:join", { session_id: sessionId });
    seen.joins[name] = ack;
    seen.syncs[name] = {};
    for (const student of Object.keys(ack.canvases || {})) {
      seen.syncs[name][student] = await call(socket, "canvas:sync", {
        session_id: sessionId,
        student_id: student,
        since: 0,
      });
    }
  } catch (error) {
    seen.disconnects.push([name, `no answer: ${error}`]);
  }
}
// Our own disconnects and the exit once the pipe took it all (process.exit right after
// a large write cut it at 64 KiB).
process.stdout.write(JSON.stringify(seen), () => {
  for (const socket of Object.values(sockets)) socket.disconnect();
  process.exit(0);
});
