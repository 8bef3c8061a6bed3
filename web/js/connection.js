// The page's Socket.IO connection (the stock socket.io-client), its launch
// parameters, and REST calls with the same token.
import { io } from "/static/vendor/socket.io.esm.min.js";

/** `?session=<id>#token=<jwt>`: the token stays in the fragment, never sent to the hub. */
export function launchParameters() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  return { token: fragment.get("token"), sessionId: query.get("session") };
}

export async function rest(method, path, token, body) {
  const response = await fetch(path, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const message = answer?.message || `${response.status} ${response.statusText}`;
    throw Object.assign(new Error(message), { status: response.status, answer });
  }
  return answer;
}

/**
 * A connection that re-joins `sessionId` every time it (re)connects.
 * `onJoined(ack)` gets each join's ack; `since()` names the seqs to resume from.
 */
export class Connection {
  constructor({ token, sessionId, since, onJoined, onStatus, onRefused }) {
    Object.assign(this, { token, sessionId, since, onJoined, onStatus, onRefused });
    this.joined = false;
    this.socket = io({
      auth: { token },
      transports: ["websocket"],
      reconnectionDelay: 250,
      reconnectionDelayMax: 2000,
    });
    this.socket.on("connect", () => this.join());
    this.socket.on("disconnect", () => {
      this.joined = false;
      this.onStatus("offline");
    });
    this.socket.on("connect_error", (error) => {
      const code = error?.data?.code;
      if (code === "UNAUTHORIZED" || code === "TOKEN_EXPIRED") {
        this.onRefused(`The hub refused the sign-in (${code}): open the link again.`);
        this.socket.disconnect();
      } else {
        this.onStatus("offline");
      }
    });
    // The browser knows the network is gone before a heartbeat misses: close now and
    // let the client's reconnection bring the socket back when it returns.
    addEventListener("offline", () => {
      if (this.socket.connected) this.socket.io.engine?.close();
    });
    addEventListener("online", () => {
      if (!this.socket.connected && this.socket.active) this.socket.connect();
    });
  }

  on(event, handler) {
    this.socket.on(event, handler);
  }

  /** Emit with an ack; never throws: a timeout or lost connection is an error ack. */
  async call(event, payload, timeoutMs = 10000) {
    if (!this.socket.connected) return { ok: false, error: { code: "DISCONNECTED" } };
    try {
      return await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      return {
        ok: false,
        error: { code: this.socket.connected ? "TIMEOUT" : "DISCONNECTED" },
      };
    }
  }

  async join() {
    this.onStatus("joining");
    const payload = { session_id: this.sessionId };
    const since = this.since();
    if (since && Object.keys(since).length) payload.since = since;
    const ack = await this.call("session:join", payload);
    if (!ack.ok) {
      const code = ack.error?.code;
      if (["DISCONNECTED", "TIMEOUT", "RATE_LIMITED", "INTERNAL"].includes(code)) return;
      this.onRefused(`Could not join the session: ${ack.error?.message || code}`);
      this.socket.disconnect();
      return;
    }
    this.joined = true;
    this.onJoined(ack);
    this.onStatus("online");
  }
}
