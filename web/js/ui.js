// Small helpers the pages share.
export const $ = (selector) => document.querySelector(selector);

/** Show a message to the user (an alert region: screen readers announce it). */
export function say(message) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.hidden = !message;
}

export function setStatus(kind, words) {
  const status = $("#status");
  // Called on every relayed patch: touch the page only when something changed.
  if (status.dataset.status === kind && status.textContent === words) return;
  status.className = `badge status ${kind}`;
  status.dataset.status = kind;
  status.textContent = words;
}

/** Replace a list's items, or show `empty` when there are none. */
export function list(ul, items, empty) {
  if (!items.length && empty) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = empty;
    items = [li];
  }
  ul.replaceChildren(...items);
}

export function clock(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
