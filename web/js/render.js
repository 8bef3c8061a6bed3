// Draws a canvas document into an <svg> in the protocol's element vocabulary
// (docs/protocol.md, "Element vocabulary"): strokes, lines (an arrow with
// `arrow: true`), rects, ellipses and text, ordered by `z`; the tutor's
// annotations on top, always in red. Anything else is skipped, as the hub's own
// SVG rendering does.
import { getStroke } from "/static/vendor/perfect-freehand.js";

export const SVG_NS = "http://www.w3.org/2000/svg";
// Every board has the same coordinates, whatever its size on screen.
export const BOARD_WIDTH = 1600;
export const BOARD_HEIGHT = 1000;
export const ANNOTATION_COLOR = "#d62728";

const finite = (value) => typeof value === "number" && Number.isFinite(value);

function node(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(key, String(value));
  }
  return element;
}

// One decimal, as toFixed(1) would print it but without its string formatting (a
// stroke's outline is redrawn on every patch that extends it: this is its hot loop).
const tenth = (v) => Math.round(v * 10) / 10;

/** The outline of a smoothed pen stroke (perfect-freehand), as SVG path data. */
export function strokePath(points, width) {
  const outline = getStroke(points, {
    size: Math.max(1, width) * 2,
    thinning: 0.4,
    smoothing: 0.6,
    streamline: 0.5,
    simulatePressure: true,
  });
  if (!outline.length) return "";
  let d = `M${tenth(outline[0][0])} ${tenth(outline[0][1])}`;
  for (let i = 1; i < outline.length; i++) d += `L${tenth(outline[i][0])} ${tenth(outline[i][1])}`;
  return `${d}Z`;
}

/** One element as an SVG node, or null if it is not in the vocabulary. */
export function drawElement(id, element, color) {
  if (!element || typeof element !== "object") return null;
  const stroke = color || element.color || "#1f2937";
  const width = finite(element.width) ? element.width : 3;
  let shape = null;
  switch (element.type) {
    case "stroke": {
      const points = Array.isArray(element.points)
        ? element.points.filter((p) => Array.isArray(p) && finite(p[0]) && finite(p[1]))
        : [];
      if (!points.length) return null;
      shape = node("path", { d: strokePath(points, width), fill: stroke });
      break;
    }
    case "line": {
      if (![element.x1, element.y1, element.x2, element.y2].every(finite)) return null;
      shape = node("line", {
        x1: element.x1, y1: element.y1, x2: element.x2, y2: element.y2,
        stroke, "stroke-width": width, "stroke-linecap": "round",
        "marker-end": element.arrow ? `url(#${color ? "arrow-red" : "arrow"})` : null,
      });
      if (element.arrow && !color && element.color) shape.style.color = element.color;
      break;
    }
    case "rect":
      if (![element.x, element.y, element.w, element.h].every(finite)) return null;
      shape = node("rect", {
        x: element.x, y: element.y, width: Math.abs(element.w), height: Math.abs(element.h),
        fill: element.fill || "none", stroke, "stroke-width": width,
      });
      break;
    case "ellipse":
      if (![element.cx, element.cy, element.rx, element.ry].every(finite)) return null;
      shape = node("ellipse", {
        cx: element.cx, cy: element.cy, rx: Math.abs(element.rx), ry: Math.abs(element.ry),
        fill: element.fill || "none", stroke, "stroke-width": width,
      });
      break;
    case "text":
      if (![element.x, element.y].every(finite) || typeof element.text !== "string") return null;
      shape = node("text", {
        x: element.x, y: element.y, fill: stroke,
        "font-size": finite(element.size) ? element.size : 32,
      });
      shape.textContent = element.text;
      break;
    default:
      return null;
  }
  shape.dataset.id = id;
  return shape;
}

function ordered(entries) {
  return Object.entries(entries || {}).sort(
    ([a, x], [b, y]) => (finite(x?.z) ? x.z : 0) - (finite(y?.z) ? y.z : 0) || (a < b ? -1 : 1),
  );
}

function markers() {
  const defs = node("defs", {});
  for (const [id, fill] of [["arrow", "currentColor"], ["arrow-red", ANNOTATION_COLOR]]) {
    const marker = node("marker", {
      id, viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 5, markerHeight: 5,
      orient: "auto-start-reverse",
    });
    marker.append(node("path", { d: "M0 0 L10 5 L0 10 z", fill }));
    defs.append(marker);
  }
  return defs;
}

/**
 * One layer drawn incrementally: an entry keeps its SVG node for as long as it is
 * the same object (entries are never changed in place, see patch.js), so a new
 * stroke costs one node, not a redraw of the board. A changed entry's new node takes
 * the old one's place and new entries on top are appended: the other nodes stay put,
 * so the browser restyles, lays out and repaints only what changed (issue 17:
 * re-inserting every node of a tile on each change cost the control center frames).
 */
function layer(group, color) {
  const drawn = new Map(); // id -> {entry, shape}
  return (entries) => {
    const shapes = [];
    const seen = new Set();
    for (const [id, entry] of ordered(entries)) {
      seen.add(id);
      let held = drawn.get(id);
      if (!held || held.entry !== entry) {
        const shape = drawElement(id, entry, color);
        if (held?.shape?.parentNode === group) {
          if (shape) held.shape.replaceWith(shape);
          else held.shape.remove();
        }
        held = { entry, shape };
        drawn.set(id, held);
      }
      if (held.shape) shapes.push(held.shape);
    }
    for (const [id, held] of drawn) {
      if (seen.has(id)) continue;
      held.shape?.remove();
      drawn.delete(id);
    }
    const now = group.children;
    const prefix = now.length <= shapes.length && [...now].every((shape, i) => shapes[i] === shape);
    if (!prefix) group.replaceChildren(...shapes);
    else if (now.length < shapes.length) group.append(...shapes.slice(now.length));
  };
}

/**
 * A board: an <svg> with the document's layers. `render(doc)` draws now;
 * `schedule(docOf)` draws once at the next animation frame however many changes
 * come before it (12 students drawing cost one redraw per board per frame).
 */
export function createBoard(svg) {
  svg.setAttribute("viewBox", `0 0 ${BOARD_WIDTH} ${BOARD_HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const elements = node("g", { class: "elements" });
  const annotations = node("g", { class: "annotations" });
  const preview = node("g", { class: "preview" });
  svg.replaceChildren(markers(), elements, annotations, preview);
  const drawElements = layer(elements);
  const drawAnnotations = layer(annotations, ANNOTATION_COLOR);
  let waiting = null;
  const board = {
    svg,
    preview,
    render(doc) {
      drawElements(doc.elements);
      drawAnnotations(doc.annotations);
      svg.dataset.count = String(elements.children.length + annotations.children.length);
    },
    schedule(docOf) {
      if (waiting) return;
      waiting = requestAnimationFrame(() => {
        waiting = null;
        board.render(docOf());
      });
    },
  };
  return board;
}
