// What a stock socket.io-client sees of a session some student tried to poison.
//
//   node tests/js/values.mjs '{"url", "session_id", "tutor_token", "student_token"}'
//
// As the student: a canvas patch whose value is a lone surrogate (JSON.stringify
// sends it as "\ud800"), and one ordinary stroke. As the tutor: a join, and the
// relay of the student's stroke. Prints one JSON object on stdout: the acks, the
// join, the relay and a second join, as this client decoded them. A disconnect (the stock
// client's answer to a packet it cannot parse) is recorded, not thrown.

import { io } from "socket.io-client";

const STEP_TIMEOUT_MS = 5_000;
const hardTimeout = setTimeout(() => {
  process.stderr.write("values.mjs: gave up after 20 s\n");
  process.exit(2);
}, 20_000);
hardTimeout.unref();

const { url, session_id: sessionId, tutor_token, student_token } = JSON.parse(process.argv[2]);
const seen = { disconnects: [] };

function connect(name, token) {
  const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
  socket.on("disconnect", (reason) => seen.disconnects.push([name, reason]));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

const call = (socket, event, data) => socket.timeout(STEP_TIMEOUT_MS).emitWithAck(event, data);

const tutor = await connect("tutor", tutor_token);
const relays = [];
tutor.on("canvas:patches", (batch) => relays.push(batch));
seen.tutor_join = await call(tutor, "session:join", { session_id: sessionId });

const student = await connect("student", student_token);
seen.student_join_ok = (await call(student, "session:join", { session_id: sessionId })).ok;
const value = { type: "text", text: "\ud800" };
seen.surrogate_ack = await call(student, "canvas:patch", {
  session_id: sessionId,
  ops: [{ op: "add", path: "/elements/lone", value }],
});
seen.stroke_ack = await call(student, "canvas:patch", {
  session_id: sessionId,
  ops: [{ op: "add", path: "/elements/ok", value: { type: "stroke", points: [[1, 2]] } }],
});
for (let waited = 0; relays.length === 0 && waited < STEP_TIMEOUT_MS; waited += 20) {
  await new Promise((r) => setTimeout(r, 20));
}
seen.relays = relays;
seen.tutor_rejoin = await call(tutor, "session:join", { session_id: sessionId });
process.stdout.write(JSON.stringify(seen)); // before our own disconnects below
tutor.disconnect();
student.disconnect();
process.exit(0);
