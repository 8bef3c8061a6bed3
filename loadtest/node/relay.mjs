// The relay mix (loadtest/scenario.py) in one Node process, on the stock socket.io-client.
//
//   node loadtest/node/relay.mjs <config.json>
//
// loadtest/node_generator.py writes the config (the hub's URL, the sessions with a
// token per member, the rate and length, the mix's constants from scenario.py) and
// steps this process as it steps a Python worker (loadtest/workers.py), one JSON
// line each way:
//
//   stdout {"step": "ready", "tutors", "students"}   everyone connected and joined
//   stdin  {"start_at": T}                            T on CLOCK_MONOTONIC, in seconds
//                                                     (Python's time.perf_counter())
//   stdout {"step": "done", "result": {...}}          RelayWorker's result, plus cpu_s
//   stdin  "stop"                                     disconnect everyone and exit 0
//
// A failure prints {"step": "error", "error": "..."} and exits 1; the whole run is
// bounded by the config's hard_timeout_s (exit 2). Students send a 20-point stroke
// canvas:patch at `rate` a second (open loop, at most max_in_flight unacked, else a
// tick is `skipped`), a presence:ping every ~5 s, exercise:progress every ~10 s, and a
// help:request now and then, cancelled a second later; each tutor annotates one of
// its students every ~2 s. The latency is value.t (the sender's monotonic clock)
// against the tutor's clock, in this same process.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

// The stock client installed for the JS tests (tests/js/package-lock.json), unless
// SOCKET_IO_CLIENT_FROM names another package.json whose node_modules holds one.
const clientFrom =
  process.env.SOCKET_IO_CLIENT_FROM ??
  new URL("../../tests/js/package.json", import.meta.url).pathname;
const require = createRequire(clientFrom);
const { io } = await import(pathToFileURL(require.resolve("socket.io-client")).href);
const CLIENT_VERSION = JSON.parse(
  readFileSync(require.resolve("socket.io-client/package.json"), "utf8"),
).version;

const LOOP_DELAY_RESOLUTION_MS = 10;

const config = JSON.parse(readFileSync(process.argv[2] ?? "", "utf8"));
const mix = config.mix;

const hardTimeout = setTimeout(() => {
  process.stderr.write(`relay.mjs: gave up after ${config.hard_timeout_s} s\n`);
  process.exit(2);
}, config.hard_timeout_s * 1000);
hardTimeout.unref();

// CLOCK_MONOTONIC in seconds: what Python's time.perf_counter() reads on Linux.
function now() {
  const [s, ns] = process.hrtime();
  return s + ns / 1e9;
}

function sleepUntil(at) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, (at - now()) * 1000)));
}

// A seeded generator per member (mulberry32 over an FNV-1a hash of the name).
function seeded(name) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  }
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Acks by outcome, as loadtest/members.py's Tally counts them.
const ok = {};
const errors = {};
function tally(event, payload) {
  if (payload && typeof payload === "object" && payload.ok === true) {
    ok[event] = (ok[event] ?? 0) + 1;
    return true;
  }
  const code = String(payload?.error?.code ?? "?");
  errors[event] ??= {};
  errors[event][code] = (errors[event][code] ?? 0) + 1;
  return false;
}

function sortedErrors() {
  const out = {};
  for (const event of Object.keys(errors).sort()) {
    out[event] = {};
    for (const code of Object.keys(errors[event]).sort()) out[event][code] = errors[event][code];
  }
  return out;
}

// ---- joining ----

function connectJoined(token, sessionId, handlers) {
  return new Promise((resolve, reject) => {
    const socket = io(config.url, {
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      timeout: mix.join_timeout_s * 1000,
      // Stock: permessage-deflate offered (the hub then compresses every frame it sends
      // this client, as it does for browsers); off, as the Python wire client has it.
      ...(config.deflate ? {} : { perMessageDeflate: false }),
    });
    for (const [event, handler] of Object.entries(handlers)) socket.on(event, handler);
    const fail = (why) => {
      clearTimeout(timer);
      socket.disconnect();
      reject(new Error(`session:join ${sessionId}: ${why}`));
    };
    const timer = setTimeout(() => fail(`no answer in ${mix.join_timeout_s} s`), mix.join_timeout_s * 1000);
    socket.once("connect_error", (err) => fail(`connect refused: ${err.message} ${JSON.stringify(err.data ?? null)}`));
    socket.once("connect", () => {
      socket.emit("session:join", { session_id: sessionId }, (ack) => {
        if (ack?.ok !== true) return fail(`expected ok, got ${JSON.stringify(ack)}`);
        clearTimeout(timer);
        resolve(socket);
      });
    });
  });
}

async function gated(limit, jobs) {
  const out = new Array(jobs.length);
  let next = 0;
  async function lane() {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, lane));
  return out;
}

const students = [];
const tutors = [];
const ackMs = [];

function newTutor(plan) {
  return {
    userId: plan.tutor_id, plan, socket: null, startAt: 0, bins: [],
    seen: new Map(), last: new Map(), delivered: 0, duplicated: 0, outOfOrder: 0,
    events: 0, latencyMs: [], sentS: [], annotated: new Map(), annotationsSent: 0,
    annotationsInFlight: 0,
  };
}

function tutorOnPatches(tutor, data) {
  const t = now();
  tutor.events += 1;
  const second = Math.min(Math.max(0, Math.floor(t - tutor.startAt)), tutor.bins.length - 1);
  for (const item of data.items) {
    const student = item.student_id;
    const seq = item.seq;
    let seen = tutor.seen.get(student);
    if (seen === undefined) tutor.seen.set(student, (seen = new Set()));
    if (seen.has(seq)) {
      tutor.duplicated += 1;
      continue;
    }
    seen.add(seq);
    const last = tutor.last.get(student) ?? 0;
    if (seq < last) tutor.outOfOrder += 1;
    tutor.last.set(student, Math.max(seq, last));
    if (item.author === "student") {
      tutor.delivered += 1;
      tutor.bins[second] += 1;
      const sentAt = item.ops[0].value.t;
      tutor.latencyMs.push(Math.round((t - sentAt) * 1e6) / 1e3);
      tutor.sentS.push(Math.max(0, Math.floor(sentAt - tutor.startAt)));
    }
  }
}

function newStudent(userId, sessionId) {
  return {
    userId, sessionId, socket: null, sent: 0, inFlight: 0, skipped: 0, acked: [],
    annotations: new Set(), helpId: null, cancelAt: Infinity, progress: 0,
  };
}

function studentOnPatches(student, data) {
  for (const item of data.items) {
    if (item.author === "tutor") student.annotations.add(item.seq);
  }
}

async function prepare() {
  const plans = config.sessions;
  const tutorJobs = plans.map((plan) => () => {
    const tutor = newTutor(plan);
    tutors.push(tutor);
    return connectJoined(plan.tutor_token, plan.session_id, {
      "canvas:patches": (data) => tutorOnPatches(tutor, data),
    }).then((socket) => (tutor.socket = socket));
  });
  await gated(mix.join_concurrency, tutorJobs);
  const studentJobs = plans.flatMap((plan) =>
    plan.students.map(([userId, token]) => () => {
      const student = newStudent(userId, plan.session_id);
      students.push(student);
      return connectJoined(token, plan.session_id, {
        "canvas:patches": (data) => studentOnPatches(student, data),
      }).then((socket) => (student.socket = socket));
    }),
  );
  await gated(mix.join_concurrency, studentJobs);
}

// ---- the mix ----

function emit(socket, event, data, onAck) {
  if (!socket.connected) throw new Error(`cannot send ${event}: not connected`);
  socket.emit(event, data, onAck);
}

function send(socket, event, data) {
  emit(socket, event, data, (payload) => tally(event, payload));
}

function patch(st) {
  if (st.inFlight >= mix.max_in_flight) {
    st.skipped += 1;
    return;
  }
  const n = st.sent;
  st.sent += 1;
  st.inFlight += 1;
  const sentAt = now();
  const value = { type: "stroke", points: mix.stroke, color: "#1f77b4", width: 2, t: sentAt };
  const element = config.growing ? n : n % mix.element_ids;
  const op = { op: "add", path: `/elements/e${element}`, value };
  emit(st.socket, "canvas:patch", { session_id: st.sessionId, ops: [op], client_ref: n }, (payload) => {
    st.inFlight -= 1;
    if (tally("canvas:patch", payload)) {
      st.acked.push(payload.seq);
      ackMs.push(Math.round((now() - sentAt) * 1e6) / 1e3);
    }
  });
}

function progress(st) {
  st.progress = Math.min(100, st.progress + 10);
  send(st.socket, "exercise:progress", {
    session_id: st.sessionId, exercise_id: "ex-1", progress_pct: st.progress,
  });
}

function requestHelp(st) {
  if (st.helpId !== null) return;
  emit(st.socket, "help:request", { session_id: st.sessionId, message: "stuck on this one" }, (payload) => {
    if (tally("help:request", payload)) {
      st.helpId = payload.help_request.id;
      st.cancelAt = now() + mix.help_cancel_after_s;
    }
  });
}

function cancelHelp(st) {
  const data = { session_id: st.sessionId, help_id: st.helpId, status: "CANCELLED" };
  st.helpId = null;
  st.cancelAt = Infinity;
  send(st.socket, "help:update", data);
}

async function studentLoop(st, startAt, endAt) {
  const rng = seeded(`${config.seed}-${st.userId}`);
  const period = 1 / config.rate;
  let nextPatch = startAt + rng() * period;
  let nextPing = startAt + rng() * mix.ping_every_s;
  let nextProgress = startAt + rng() * mix.progress_every_s;
  let nextHelp = startAt + (0.2 + 0.8 * rng()) * mix.help_every_s;
  let at;
  while ((at = Math.min(nextPatch, nextPing, nextProgress, nextHelp, st.cancelAt)) < endAt) {
    await sleepUntil(at);
    if (at === st.cancelAt) {
      cancelHelp(st);
    } else if (at === nextPatch) {
      patch(st);
      nextPatch += period;
    } else if (at === nextPing) {
      send(st.socket, "presence:ping", { session_id: st.sessionId, state: "active" });
      nextPing += mix.ping_every_s;
    } else if (at === nextProgress) {
      progress(st);
      nextProgress += mix.progress_every_s;
    } else {
      requestHelp(st);
      nextHelp += mix.help_every_s;
    }
  }
}

function annotate(tutor, studentId) {
  const n = tutor.annotationsSent;
  tutor.annotationsSent += 1;
  tutor.annotationsInFlight += 1;
  const value = { type: "text", x: 5, y: 5, text: "check this", t: now() };
  const op = { op: "add", path: `/annotations/a${n % mix.annotation_ids}`, value };
  const data = { session_id: tutor.plan.session_id, student_id: studentId, ops: [op] };
  emit(tutor.socket, "canvas:patch", data, (payload) => {
    tutor.annotationsInFlight -= 1;
    if (tally("canvas:patch", payload)) {
      if (!tutor.annotated.has(studentId)) tutor.annotated.set(studentId, []);
      tutor.annotated.get(studentId).push(payload.seq);
    }
  });
}

async function tutorLoop(tutor, startAt, endAt) {
  const rng = seeded(`${config.seed}-${tutor.userId}`);
  let nextAt = startAt + rng() * mix.annotate_every_s;
  const ids = tutor.plan.students.map(([userId]) => userId);
  while (nextAt < endAt) {
    await sleepUntil(nextAt);
    annotate(tutor, ids[tutor.annotationsSent % ids.length]);
    nextAt += mix.annotate_every_s;
  }
}

const sum = (items, f) => items.reduce((acc, x) => acc + f(x), 0);

function counts() {
  return [
    sum(students, (s) => s.acked.length),
    sum(tutors, (t) => t.delivered),
    sum(students, (s) => s.annotations.size),
  ].join(",");
}

function settled() {
  if (students.some((s) => s.inFlight) || tutors.some((t) => t.annotationsInFlight)) return false;
  const acked = sum(students, (s) => s.acked.length);
  const annotated = sum(tutors, (t) => sum([...t.annotated.values()], (v) => v.length));
  const received = sum(students, (s) => s.annotations.size);
  return sum(tutors, (t) => t.delivered) >= acked && received >= annotated;
}

// Until everything acked is delivered; given up after drain_s without a new ack or
// delivery, and after max_drain_s in all (what a saturated hub delivers late is late).
async function drain() {
  const began = now();
  let quietSince = began;
  let progressMark = counts();
  while (!settled()) {
    const t = now();
    if (t - quietSince >= config.drain_s || t - began >= mix.max_drain_s) return;
    await sleepUntil(now() + mix.settle_poll_s);
    const c = counts();
    if (c !== progressMark) {
      quietSince = now();
      progressMark = c;
    }
  }
}

function result() {
  const seen = new Map(tutors.map((t) => [t.plan.session_id, t.seen]));
  const byStudent = new Map(students.map((s) => [`${s.sessionId}\n${s.userId}`, s]));
  let lost = 0;
  for (const s of students) {
    const got = seen.get(s.sessionId).get(s.userId) ?? new Set();
    lost += new Set(s.acked.filter((seq) => !got.has(seq))).size;
  }
  let annotationsLost = 0;
  for (const t of tutors) {
    for (const [student, seqs] of t.annotated) {
      const got = byStudent.get(`${t.plan.session_id}\n${student}`).annotations;
      annotationsLost += new Set(seqs.filter((seq) => !got.has(seq))).size;
    }
  }
  const bins = tutors[0].bins.map((_, i) => sum(tutors, (t) => t.bins[i]));
  return {
    students: students.length,
    tutors: tutors.length,
    sent: sum(students, (s) => s.sent),
    acked: sum(students, (s) => s.acked.length),
    skipped: sum(students, (s) => s.skipped),
    delivered: sum(tutors, (t) => t.delivered),
    lost,
    duplicated: sum(tutors, (t) => t.duplicated),
    out_of_order: sum(tutors, (t) => t.outOfOrder),
    relay_events: sum(tutors, (t) => t.events),
    annotations_sent: sum(tutors, (t) => t.annotationsSent),
    annotations_acked: sum(tutors, (t) => sum([...t.annotated.values()], (v) => v.length)),
    annotations_delivered: sum(students, (s) => s.annotations.size),
    annotations_lost: annotationsLost,
    events_ok: ok,
    errors: sortedErrors(),
    latency_ms: tutors.flatMap((t) => t.latencyMs),
    latency_sent_s: tutors.flatMap((t) => t.sentS),
    ack_ms: ackMs,
    delivered_per_s: bins,
  };
}

async function run(startAt) {
  const endAt = startAt + config.seconds;
  for (const tutor of tutors) {
    tutor.startAt = startAt;
    tutor.bins = new Array(Math.ceil(config.seconds + mix.max_drain_s) + 1).fill(0);
  }
  await Promise.all([
    ...students.map((s) => studentLoop(s, startAt, endAt)),
    ...tutors.map((t) => tutorLoop(t, startAt, endAt)),
  ]);
  await drain();
  return result();
}

// ---- stepping, one JSON line each way ----

function write(message) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(message) + "\n", resolve));
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function nextLine() {
  const { value, done } = await lines.next();
  return done ? "stop" : JSON.parse(value);
}

function closeAll() {
  for (const member of [...tutors, ...students]) member.socket?.disconnect();
}

async function main() {
  await prepare();
  await write({ step: "ready", tutors: tutors.length, students: students.length });
  const go = await nextLine();
  if (go === "stop") return;
  const delay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  const cpu = process.cpuUsage();
  delay.enable();
  const out = await run(go.start_at);
  delay.disable();
  const used = process.cpuUsage(cpu);
  out.cpu_s = (used.user + used.system) / 1e6;
  // How late this process's timers ran while it worked: if the generator itself was
  // busy, its latencies include its own queueing.
  // (The histogram holds whole intervals between the sampling timer's runs.)
  const late = (ns) => Math.max(0, Math.round(ns / 1e4 - LOOP_DELAY_RESOLUTION_MS * 100) / 100);
  out.loop_delay_ms = {
    p50: late(delay.percentile(50)),
    p99: late(delay.percentile(99)),
    max: late(delay.max),
  };
  out.client = `socket.io-client ${CLIENT_VERSION}, node ${process.versions.node}`;
  await write({ step: "done", result: out });
  await nextLine();
}

try {
  await main();
  closeAll();
  process.exit(0);
} catch (err) {
  closeAll();
  await write({ step: "error", error: err?.stack ?? String(err) });
  process.exit(1);
}
