// The page's Socket.IO connection (the stock socket.io-client), its launch
// parameters, and REST calls with the same token.
import { io } from "/static/vendor/socket.io.esm.min.js";

const DEV_TOKEN = "/api/v1/dev/token";
// Ask for a fresh token at this fraction of the token's lifetime.
const REFRESH_AT = 0.8;
// Tell an LMS-launched page's user at most this long before the token ends.
const NOTICE_BEFORE_S = 600;
const RETRY_S = 10;

/**
 * `?session=<id>#token=<jwt>`: the token stays in the fragment, never sent to the hub.
 * `&signin=dev` in the fragment: the token came from the development sign-in on `/`,
 * so the page may mint the next one the same way.
 */
export function launchParameters() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  return {
    token: fragment.get("token"),
    sessionId: query.get("session"),
    devSignIn: fragment.get("signin") === "dev",
  };
}

/** The JWT's claims, read without verifying (the hub verifies); null if unreadable. */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
  } catch {
    return null;
  }
}

// Tokens a refresh replaced, each to its successor: a page that kept its launch token
// for REST calls sends the newest one.
const successors = new Map();

function newest(token) {
  while (successors.has(token)) token = successors.get(token);
  return token;
}

export async function rest(method, path, token, body) {
  token = token && newest(token);
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
  constructor({ token, sessionId, since, onJoined, onStatus, onRefused, devSignIn }) {
    Object.assign(this, { token, sessionId, since, onJoined, onStatus, onRefused });
    // Unless a page says otherwise, its launch fragment tells how it was signed in.
    this.devSignIn = devSignIn ?? launchParameters().devSignIn;
    this.joined = false;
    this.refreshTimer = null;
    this.noticeTimer = null;
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
    this.startedAt = Date.now() / 1000;
    this.planRefresh();
  }

  /**
   * Before the token ends (at 80% of its life, read from `exp` and `iat`) get a new one
   * and send `auth:refresh`. Only a development sign-in can mint one (`POST
   * /api/v1/dev/token` again); a page launched by a platform cannot, so it says when
   * the session will end instead.
   */
  planRefresh() {
    clearTimeout(this.refreshTimer);
    clearTimeout(this.noticeTimer);
    const claim = claims(this.token);
    if (!claim || typeof claim.exp !== "number") return;
    const now = Date.now() / 1000;
    const issued = typeof claim.iat === "number" ? Math.min(claim.iat, now) : this.startedAt;
    const at = issued + REFRESH_AT * (claim.exp - issued);
    if (this.devSignIn) {
      this.refreshTimer = setTimeout(() => this.refresh(), Math.max(0, at - now) * 1000);
    } else {
      const noticeAt = Math.max(at, claim.exp - NOTICE_BEFORE_S);
      this.noticeTimer = setTimeout(() => this.showExpiry(), Math.max(0, noticeAt - now) * 1000);
    }
  }

  async refresh() {
    const claim = claims(this.token);
    const now = Date.now() / 1000;
    if (!claim) return;
    if (claim.exp <= now) return this.showExpiry();
    const lifetime = claim.exp - (typeof claim.iat === "number" ? claim.iat : this.startedAt);
    let fresh = null;
    try {
      const { data } = await rest("POST", DEV_TOKEN, null, {
        sub: claim.sub, role: claim.role, center: claim.center, name: claim.name ?? null,
        ttl_s: Math.round(Math.min(86400, Math.max(60, lifetime))),
      });
      fresh = data.token;
    } catch (error) {
      if (error.status === 404) {  // not a development hub (any more): say so instead
        this.devSignIn = false;
        return this.showExpiry();
      }
    }
    if (fresh) {
      const ack = await this.call("auth:refresh", { token: fresh });
      if (ack.ok || !this.socket.connected) {
        // Offline, the fresh token still signs the reconnect in.
        this.useToken(fresh);
        return;
      }
      if (["FORBIDDEN", "UNAUTHORIZED"].includes(ack.error?.code)) {
        this.devSignIn = false;
        return this.showExpiry();
      }
    }
    this.refreshTimer = setTimeout(() => this.refresh(), RETRY_S * 1000);
    if (claim.exp - now < NOTICE_BEFORE_S) this.showExpiry();
  }

  useToken(fresh) {
    successors.set(this.token, fresh);
    this.token = fresh;
    this.socket.auth = { token: fresh };
    this.hideExpiry();
    this.planRefresh();
  }

  /** "Your session will end in N minutes": kept up to date until the token ends. */
  showExpiry() {
    clearTimeout(this.noticeTimer);
    const claim = claims(this.token);
    if (!claim) return;
    let notice = document.getElementById("session-expiry");
    if (!notice) {
      notice = document.createElement("p");
      notice.id = "session-expiry";
      notice.className = "notice";
      notice.setAttribute("role", "alert");
      const anchor = document.getElementById("notice");
      if (anchor) anchor.after(notice);
      else document.body.prepend(notice);
    }
    const left = claim.exp - Date.now() / 1000;
    const minutes = Math.max(0, Math.ceil(left / 60));
    notice.dataset.expiresAt = String(claim.exp);
    notice.textContent =
      left > 0
        ? `Your session will end in ${minutes} minute${minutes === 1 ? "" : "s"}: ` +
          "to go on after that, reopen this lesson from your platform."
        : "Your session has ended: reopen this lesson from your platform.";
    notice.hidden = false;
    if (left > 0) this.noticeTimer = setTimeout(() => this.showExpiry(), 15000);
  }

  hideExpiry() {
    const notice = document.getElementById("session-expiry");
    if (notice) notice.hidden = true;
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
