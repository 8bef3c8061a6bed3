// The control center's help queue, in the hub's serving order (docs/protocol.md,
// "Control center"): IN_PROGRESS first (earliest first answer first), then OPEN by
// priority, an escalated request one priority higher, then age. The hub's `queue`
// (join ack, `help:updated`) is the order; the page sorts by the same rule only
// when a HELP_WAITING alert escalates a request between two updates.
import { clock, list } from "./ui.js";

const RANK = { LOW: 0, NORMAL: 1, HIGH: 2, URGENT: 3 };
const ACTIVE = new Set(["OPEN", "IN_PROGRESS"]);

export function servingOrder(requests) {
  const time = (iso) => Date.parse(iso);
  const serving = requests
    .filter((r) => r.status === "IN_PROGRESS")
    .sort((a, b) => time(a.first_response_at || a.created_at) - time(b.first_response_at || b.created_at)
      || (a.id < b.id ? -1 : 1));
  const rank = (r) => RANK[r.priority] + (r.escalated ? 1 : 0);
  const waiting = requests
    .filter((r) => r.status === "OPEN")
    .sort((a, b) => rank(b) - rank(a) || time(a.created_at) - time(b.created_at) || (a.id < b.id ? -1 : 1));
  return [...serving, ...waiting];
}

export class HelpQueue {
  /**
   * @param {object} options
   * @param {HTMLOListElement} options.ol where the queue is shown
   * @param {(id: string) => string} options.nameOf a student's name
   * @param {(request: object, status: string, response: string) => Promise<boolean>} options.act
   *   acknowledge/resolve, with the reply typed for the student ("" for none); true when done
   * @param {() => void} options.onChange the queue changed (tiles' badges)
   */
  constructor({ ol, nameOf, act, onChange }) {
    Object.assign(this, { ol, nameOf, act, onChange });
    this.requests = new Map();
    this.order = [];
    this.drafts = new Map(); // help id -> the reply being typed (kept across redraws)
  }

  /** The join ack's `help`: every active request, in serving order. */
  reset(requests) {
    this.requests = new Map(requests.map((r) => [r.id, r]));
    this.order = requests.map((r) => r.id);
    this.show();
  }

  /** A staff `help:updated`: the request as it is now and the whole queue's order. */
  update({ help_request: request, queue }) {
    if (ACTIVE.has(request.status)) this.requests.set(request.id, request);
    else this.requests.delete(request.id);
    if (Array.isArray(queue)) this.order = queue.filter((id) => this.requests.has(id));
    else this.order = servingOrder([...this.requests.values()]).map((r) => r.id);
    this.show();
  }

  /** A HELP_WAITING alert: the request it names (`help_id`) now ranks higher. */
  escalate(helpId) {
    const waiting = this.requests.get(helpId);
    if (!waiting || waiting.status !== "OPEN" || waiting.escalated) return;
    this.requests.set(helpId, { ...waiting, escalated: true });
    this.order = servingOrder([...this.requests.values()]).map((r) => r.id);
    this.show();
  }

  /** Requests in order, with each one's 1-based place. */
  ordered() {
    const known = this.order.filter((id) => this.requests.has(id));
    const rest = [...this.requests.keys()].filter((id) => !known.includes(id));
    return [...known, ...rest].map((id) => this.requests.get(id));
  }

  show() {
    const active = document.activeElement;
    const typing = active?.classList?.contains("reply") ? active.closest("[data-help]").dataset.help : null;
    for (const id of this.drafts.keys()) if (!this.requests.has(id)) this.drafts.delete(id);
    const items = this.ordered().map((r, i) => this.item(r, i + 1));
    list(this.ol, items, "Nobody is waiting.");
    const reply = typing && this.ol.querySelector(`[data-help="${CSS.escape(typing)}"] .reply`);
    if (reply) {
      reply.focus();
      reply.setSelectionRange(reply.value.length, reply.value.length);
    }
    this.ol.dataset.order = this.ordered().map((r) => r.id).join(" ");
    this.onChange();
  }

  /** Waiting times move on every second. */
  tick() {
    for (const li of this.ol.querySelectorAll("[data-created]")) {
      li.querySelector(".waited").textContent = clock(Date.now() - Number(li.dataset.created));
    }
  }

  item(r, place) {
    const li = document.createElement("li");
    li.className = `help-item priority-${r.priority}${r.escalated ? " escalated" : ""}`;
    li.dataset.help = r.id;
    li.dataset.status = r.status;
    li.dataset.created = String(Date.parse(r.created_at));
    const name = this.nameOf(r.student_id);
    const head = document.createElement("div");
    head.className = "help-head";
    const who = document.createElement("strong");
    who.textContent = `${place}. ${name}`;
    const tags = document.createElement("span");
    tags.className = "tags";
    tags.textContent = [
      r.priority.toLowerCase(),
      r.escalated ? "escalated" : null,
      r.status === "IN_PROGRESS" ? "helping" : null,
    ].filter(Boolean).join(" · ");
    const waited = document.createElement("span");
    waited.className = "waited";
    waited.title = "Waiting for";
    waited.textContent = clock(Date.now() - Date.parse(r.created_at));
    head.append(who, tags, waited);
    const message = document.createElement("p");
    message.className = "message";
    message.textContent = r.message;
    const parts = [head, message];
    if (r.response) {
      const said = document.createElement("p");
      said.className = "response";
      said.textContent = `You: ${r.response}`;
      parts.push(said);
    }
    const buttons = document.createElement("div");
    buttons.className = "help-actions";
    // The reply goes with the next move (the student sees it under their request).
    const reply = document.createElement("input");
    reply.type = "text";
    reply.className = "reply";
    reply.maxLength = 2000;
    reply.placeholder = "Reply (optional)";
    reply.setAttribute("aria-label", `Reply to ${name}`);
    reply.value = this.drafts.get(r.id) || "";
    reply.addEventListener("input", () => this.drafts.set(r.id, reply.value));
    const move = (status) => async () => {
      const text = reply.value.trim();
      this.drafts.delete(r.id); // sent: the redraw the answer brings starts empty
      if (!(await this.act(r, status, text)) && text) {
        this.drafts.set(r.id, text);
        const shown = this.ol.querySelector(`[data-help="${CSS.escape(r.id)}"] .reply`);
        if (shown) shown.value = text;
      }
    };
    if (r.status === "OPEN") {
      buttons.append(this.button("Acknowledge", `Acknowledge ${name}'s request`, move("IN_PROGRESS")));
    }
    buttons.append(this.button("Resolve", `Resolve ${name}'s request`, move("RESOLVED")));
    li.append(...parts, reply, buttons);
    return li;
  }

  button(text, label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.className = text.toLowerCase();
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }
}
