// Drawing on a board: pen (smoothed when drawn), rectangle, ellipse, line, arrow,
// text and eraser. Each finished gesture is one change: JSON Patch ops that add or
// remove whole entries of `section` ("elements" for a student, "annotations" for a
// tutor). Undo sends the ops that reverse this page's own last change.
import { escapeId } from "./patch.js";
import { BOARD_HEIGHT, BOARD_WIDTH, drawElement } from "./render.js";

const MIN_STEP = 2; // board units between kept pen points
const round = (v) => Math.round(v * 10) / 10;

function newId() {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16);
}

export class Drawing {
  /**
   * @param {object} options
   * @param {object} options.board from createBoard
   * @param {string} options.section "elements" or "annotations"
   * @param {() => object} options.documentOf the document shown now
   * @param {(ops: object[]) => void} options.commit
   */
  constructor({ board, section, documentOf, commit }) {
    Object.assign(this, { board, section, documentOf, commit });
    this.tool = "pen";
    this.color = "#1f2937";
    this.width = 4;
    this.text = "";
    this.history = []; // the reverse of each of this page's changes, newest last
    this.gesture = null;
    this.enabled = true;
    const svg = board.svg;
    svg.addEventListener("pointerdown", (e) => this.down(e));
    svg.addEventListener("pointermove", (e) => this.move(e));
    svg.addEventListener("pointerup", (e) => this.up(e));
    svg.addEventListener("pointercancel", () => this.cancel());
    svg.addEventListener("keydown", (e) => this.key(e));
  }

  point(event) {
    const matrix = this.board.svg.getScreenCTM().inverse();
    const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix);
    return [round(p.x), round(p.y)];
  }

  entries() {
    return this.documentOf()[this.section] || {};
  }

  topZ() {
    const zs = Object.values(this.entries()).map((e) => (Number.isFinite(e?.z) ? e.z : 0));
    return (zs.length ? Math.max(...zs) : 0) + 1;
  }

  path(id) {
    return `/${this.section}/${escapeId(id)}`;
  }

  /** Add entries (undone by removing them). */
  add(entries) {
    const ops = entries.map(([id, value]) => ({ op: "add", path: this.path(id), value }));
    const reverse = entries.map(([id]) => ({ op: "remove", path: this.path(id) }));
    this.history.push(reverse);
    this.commit(ops);
  }

  /** Remove entries (undone by adding them back as they were). */
  remove(ids) {
    const entries = this.entries();
    const present = ids.filter((id) => id in entries);
    if (!present.length) return;
    this.history.push(present.map((id) => ({ op: "add", path: this.path(id), value: entries[id] })));
    this.commit(present.map((id) => ({ op: "remove", path: this.path(id) })));
  }

  undo() {
    const reverse = this.history.pop();
    if (reverse) this.commit(reverse);
  }

  shape(start, end) {
    const [x1, y1] = start;
    const [x2, y2] = end;
    const base = { color: this.color, width: this.width, z: this.topZ() };
    switch (this.tool) {
      case "rect":
        return { type: "rect", x: Math.min(x1, x2), y: Math.min(y1, y2),
          w: round(Math.abs(x2 - x1)), h: round(Math.abs(y2 - y1)), ...base };
      case "ellipse":
        return { type: "ellipse", cx: round((x1 + x2) / 2), cy: round((y1 + y2) / 2),
          rx: round(Math.abs(x2 - x1) / 2), ry: round(Math.abs(y2 - y1) / 2), ...base };
      case "line":
      case "arrow":
        return { type: "line", x1, y1, x2, y2, ...(this.tool === "arrow" ? { arrow: true } : {}),
          ...base };
      default:
        return null;
    }
  }

  preview(element) {
    const node = element && drawElement("preview", element);
    this.board.preview.replaceChildren(...(node ? [node] : []));
  }

  down(event) {
    if (!this.enabled || event.button > 0) return;
    event.preventDefault();
    this.board.svg.setPointerCapture?.(event.pointerId);
    const at = this.point(event);
    if (this.tool === "text") {
      if (this.text.trim()) {
        this.add([[newId(), { type: "text", x: at[0], y: at[1], text: this.text.trim(),
          size: 32, color: this.color, z: this.topZ() }]]);
      }
      return;
    }
    this.gesture = { start: at, points: [at], erased: new Set() };
    if (this.tool === "eraser") this.erase(event);
  }

  move(event) {
    const gesture = this.gesture;
    if (!gesture) return;
    const at = this.point(event);
    if (this.tool === "pen") {
      const last = gesture.points[gesture.points.length - 1];
      if (Math.hypot(at[0] - last[0], at[1] - last[1]) < MIN_STEP) return;
      gesture.points.push(at);
      this.preview({ type: "stroke", points: gesture.points, color: this.color, width: this.width });
    } else if (this.tool === "eraser") {
      this.erase(event);
    } else {
      this.preview(this.shape(gesture.start, at));
    }
  }

  up(event) {
    const gesture = this.gesture;
    if (!gesture) return;
    this.gesture = null;
    this.preview(null);
    const at = this.point(event);
    if (this.tool === "pen") {
      const points = gesture.points.length > 1 ? gesture.points : [at, at];
      this.add([[newId(), { type: "stroke", points, color: this.color, width: this.width,
        z: this.topZ() }]]);
    } else if (this.tool === "eraser") {
      this.remove([...gesture.erased]);
    } else {
      const [x, y] = gesture.start;
      if (Math.hypot(at[0] - x, at[1] - y) < MIN_STEP) return; // a click, not a shape
      this.add([[newId(), this.shape(gesture.start, at)]]);
    }
  }

  cancel() {
    this.gesture = null;
    this.preview(null);
  }

  erase(event) {
    const hit = document.elementFromPoint(event.clientX, event.clientY);
    const id = hit?.dataset?.id;
    const mine = this.section === "elements" ? ".elements" : ".annotations";
    if (id && hit.closest(mine) && this.board.svg.contains(hit)) {
      this.gesture.erased.add(id);
      hit.classList.add("erasing");
    }
  }

  /** Keyboard drawing: Enter on the focused board places the chosen shape in the middle. */
  key(event) {
    if (event.key !== "Enter" || !this.enabled) return;
    event.preventDefault();
    const cx = BOARD_WIDTH / 2;
    const cy = BOARD_HEIGHT / 2;
    if (this.tool === "text") {
      if (this.text.trim()) {
        this.add([[newId(), { type: "text", x: cx, y: cy, text: this.text.trim(), size: 32,
          color: this.color, z: this.topZ() }]]);
      }
    } else if (this.tool !== "pen" && this.tool !== "eraser") {
      this.add([[newId(), this.shape([cx - 100, cy - 60], [cx + 100, cy + 60])]]);
    }
  }
}

/**
 * A page's tool buttons (`[data-tool]`, aria-pressed) and its keyboard: a letter picks
 * a tool, Ctrl+Z undoes, outside text fields. `active()` says whether keys apply now.
 * Answers the function that picks a tool.
 */
export function toolbar({ drawing, buttons, textLabel, keys, active = () => true }) {
  const choose = (tool) => {
    drawing.tool = tool;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
    textLabel.hidden = tool !== "text";
  };
  for (const b of buttons) b.addEventListener("click", () => choose(b.dataset.tool));
  document.addEventListener("keydown", (e) => {
    if (!active() || e.target.closest("input, textarea, select, dialog")) return;
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); drawing.undo(); return; }
    const tool = keys[e.key.toLowerCase()];
    if (!e.ctrlKey && !e.metaKey && !e.altKey && tool) choose(tool);
  });
  return choose;
}
