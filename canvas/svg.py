"""SVG rendering of a student's canvas document, for reviewing work after the session.

A document is ``{"elements": {id: element}, "annotations": {id: element}, "meta": {...}}``:
the student draws elements, the tutor draws annotations. The element vocabulary (coordinates
are numbers in canvas units; every field besides ``type`` and the geometry is optional):

- ``{"type": "stroke", "points": [[x, y], ...], "color", "width"}``: a polyline (one point: a dot)
- ``{"type": "line", "x1", "y1", "x2", "y2", "color", "width"}``
- ``{"type": "rect", "x", "y", "w", "h", "color", "width", "fill"}``
- ``{"type": "ellipse", "cx", "cy", "rx", "ry", "color", "width", "fill"}``
- ``{"type": "text", "x", "y", "text", "size", "color"}``

Each section renders in ``(z, id)`` order, where ``z`` is an optional number (missing: 0).
Annotations are drawn above the elements and always in ``ANNOTATION_COLOR``.

Security contract: the whole document is untrusted user input and the SVG is served to
browsers. Anything outside the vocabulary (unknown type, missing, ill-typed or non-finite
geometry, booleans as numbers) is skipped, never raised on. Only validated numbers and colours
from an allow-list (``#rgb``, ``#rrggbb``, ``#rrggbbaa`` or a word of 1-20 ASCII letters) reach
attributes; any other colour falls back to the default. Text and ids are stripped of characters
XML cannot carry and escaped, and every attribute value goes through ``quoteattr``, so no input
can add markup, attributes, ``url()``, ``javascript:`` or ``style``. Output is bounded: widths
to (0, 100], font sizes to (0, 400], 10,000 points per stroke, 20,000 elements per section.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeAlias
from xml.sax.saxutils import escape, quoteattr

ELEMENT_COLOR = "#1f2937"
ANNOTATION_COLOR = "#d62728"

MAX_POINTS = 10_000
MAX_ELEMENTS = 20_000
MAX_WIDTH = 100.0
MAX_FONT_SIZE = 400.0
# Past this a coordinate is no drawing, just a way to emit hundred-digit attributes.
MAX_COORD = 1e9
DEFAULT_WIDTH = 2.0
DEFAULT_FONT_SIZE = 16.0
EMPTY_VIEWBOX = (0.0, 0.0, 100.0, 100.0)

_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|[A-Za-z]{1,20}")
# XML 1.0 cannot carry these even escaped; left in, they make the document ill-formed.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Box: TypeAlias = tuple[float, float, float, float]  # min x, min y, max x, max y
Attrs: TypeAlias = dict[str, str | float]


class Shape(NamedTuple):
    tag: str
    attrs: Attrs
    text: str | None
    box: Box


def _num(value: object) -> float | None:
    """A finite int or float (not bool) within MAX_COORD, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Checked before float(): NaN fails it, and huge ints would overflow float().
    if not abs(value) <= MAX_COORD:
        return None
    return float(value)


def _bounded(value: object, default: float, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return default
    return float(min(value, limit))


def _nums(el: Mapping[str, Any], *keys: str) -> list[float] | None:
    values = [_num(el.get(key)) for key in keys]
    return None if any(v is None for v in values) else [v for v in values if v is not None]


def _fmt(value: float) -> str:
    # Adding 0.0 turns -0.0 into 0.0, so nothing prints as "-0".
    return f"{round(value, 2) + 0.0:.2f}".rstrip("0").rstrip(".")


def _color(value: object, default: str) -> str:
    return value if isinstance(value, str) and _COLOR.fullmatch(value) else default


def _ink(el: Mapping[str, Any], annotation: bool) -> str:
    return ANNOTATION_COLOR if annotation else _color(el.get("color"), ELEMENT_COLOR)


def _outline(el: Mapping[str, Any], annotation: bool) -> tuple[Attrs, float]:
    width = _bounded(el.get("width"), DEFAULT_WIDTH, MAX_WIDTH)
    fill = _color(el.get("fill"), "none")
    attrs: Attrs = {"fill": fill, "stroke": _ink(el, annotation), "stroke-width": width}
    if annotation and fill.lower() != "none":
        # Translucent: an opaque tutor fill would hide the student's work underneath.
        attrs.update({"fill": ANNOTATION_COLOR, "fill-opacity": "0.25"})
    return attrs, width / 2


def _stroke(el: Mapping[str, Any], annotation: bool) -> Shape | None:
    points = el.get("points")
    if not isinstance(points, list | tuple) or not points:
        return None
    xs: list[float] = []
    ys: list[float] = []
    for point in points[:MAX_POINTS]:
        if not isinstance(point, list | tuple) or len(point) != 2:
            return None
        x, y = _num(point[0]), _num(point[1])
        if x is None or y is None:
            return None
        xs.append(x)
        ys.append(y)
    width = _bounded(el.get("width"), DEFAULT_WIDTH, MAX_WIDTH)
    ink, pad = _ink(el, annotation), width / 2
    box = (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)
    if len(xs) == 1:
        return Shape("circle", {"cx": xs[0], "cy": ys[0], "r": pad, "fill": ink}, None, box)
    attrs: Attrs = {
        "points": " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in zip(xs, ys, strict=True)),
        "fill": "none",
        "stroke": ink,
        "stroke-width": width,
        "stroke-linecap": "round",
        "stroke-linejoin": "round",
    }
    return Shape("polyline", attrs, None, box)


def _line(el: Mapping[str, Any], annotation: bool) -> Shape | None:
    if (geometry := _nums(el, "x1", "y1", "x2", "y2")) is None:
        return None
    x1, y1, x2, y2 = geometry
    attrs, pad = _outline(el, annotation)
    del attrs["fill"]
    box = (min(x1, x2) - pad, min(y1, y2) - pad, max(x1, x2) + pad, max(y1, y2) + pad)
    return Shape("line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2, **attrs}, None, box)


def _rect(el: Mapping[str, Any], annotation: bool) -> Shape | None:
    if (geometry := _nums(el, "x", "y", "w", "h")) is None:
        return None
    x, y, w, h = geometry
    # A rectangle dragged up or left arrives with negative size; SVG rejects that.
    x, w = (x + w, -w) if w < 0 else (x, w)
    y, h = (y + h, -h) if h < 0 else (y, h)
    attrs, pad = _outline(el, annotation)
    box = (x - pad, y - pad, x + w + pad, y + h + pad)
    return Shape("rect", {"x": x, "y": y, "width": w, "height": h, **attrs}, None, box)


def _ellipse(el: Mapping[str, Any], annotation: bool) -> Shape | None:
    geometry = _nums(el, "cx", "cy", "rx", "ry")
    if geometry is None or geometry[2] < 0 or geometry[3] < 0:
        return None
    cx, cy, rx, ry = geometry
    attrs, pad = _outline(el, annotation)
    box = (cx - rx - pad, cy - ry - pad, cx + rx + pad, cy + ry + pad)
    return Shape("ellipse", {"cx": cx, "cy": cy, "rx": rx, "ry": ry, **attrs}, None, box)


def _text(el: Mapping[str, Any], annotation: bool) -> Shape | None:
    geometry, text = _nums(el, "x", "y"), el.get("text")
    if geometry is None or not isinstance(text, str) or not (text := _NOT_XML.sub("", text)):
        return None
    x, y = geometry
    size = _bounded(el.get("size"), DEFAULT_FONT_SIZE, MAX_FONT_SIZE)
    # No font metrics here: estimate the extent from average glyph proportions.
    box = (x, y - size, x + 0.6 * size * len(text), y + 0.25 * size)
    attrs: Attrs = {"x": x, "y": y, "font-size": size, "font-family": "sans-serif"}
    return Shape("text", {**attrs, "fill": _ink(el, annotation)}, text, box)


_RENDERERS: dict[str, Callable[[Mapping[str, Any], bool], Shape | None]] = {
    "stroke": _stroke,
    "line": _line,
    "rect": _rect,
    "ellipse": _ellipse,
    "text": _text,
}


def _attrs(attrs: Mapping[str, str | float]) -> str:
    return "".join(
        f" {k}={quoteattr(v if isinstance(v, str) else _fmt(v))}" for k, v in attrs.items()
    )


def _tag(tag: str, attrs: Mapping[str, str | float], text: str | None = None) -> str:
    head = f"{tag}{_attrs(attrs)}"
    return f"<{head}/>" if text is None else f"<{head}>{escape(text)}</{tag}>"


def _z(el: Mapping[str, Any]) -> float:
    z = el.get("z")
    # z == z is False only for NaN, which would make the sort order arbitrary.
    return z if isinstance(z, int | float) and not isinstance(z, bool) and z == z else 0


def _section(section: object, annotation: bool) -> tuple[list[str], list[Box]]:
    if not isinstance(section, Mapping):
        return [], []
    entries = sorted(
        ((_z(el), str(key), el) for key, el in section.items() if isinstance(el, Mapping)),
        key=lambda entry: entry[:2],
    )
    tags: list[str] = []
    boxes: list[Box] = []
    for _, ident, el in entries:
        if len(tags) >= MAX_ELEMENTS:
            break
        kind = el.get("type")
        renderer = _RENDERERS.get(kind) if isinstance(kind, str) else None
        if renderer is None or (shape := renderer(el, annotation)) is None:
            continue
        tags.append(
            _tag(shape.tag, {"data-id": _NOT_XML.sub("", ident), **shape.attrs}, shape.text)
        )
        boxes.append(shape.box)
    return tags, boxes


def render_svg(
    doc: Mapping[str, Any],
    *,
    width: float | None = None,
    height: float | None = None,
    margin: float = 10,
) -> str:
    """Render a canvas document as a standalone SVG document (see the module docstring)."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a non-negative finite number, got {margin!r}")
    source: Mapping[str, Any] = doc if isinstance(doc, Mapping) else {}
    elements, boxes = _section(source.get("elements"), annotation=False)
    annotations, annotation_boxes = _section(source.get("annotations"), annotation=True)
    boxes += annotation_boxes
    if width is not None and height is not None:
        view = (0.0, 0.0, float(width), float(height))
    elif boxes:
        min_xs, min_ys, max_xs, max_ys = zip(*boxes, strict=True)
        x0, y0 = min(min_xs) - margin, min(min_ys) - margin
        view = (x0, y0, max(max(max_xs) + margin - x0, 1.0), max(max(max_ys) + margin - y0, 1.0))
    else:
        view = EMPTY_VIEWBOX
    root: Attrs = {
        "xmlns": "http://www.w3.org/2000/svg",
        "viewBox": " ".join(map(_fmt, view)),
        "width": width or view[2],
        "height": height or view[3],
    }
    if (width is None) != (height is None):
        # Given one dimension, leave the other for the browser to derive from the viewBox.
        del root["height" if height is None else "width"]
    body = ['<g class="elements">', *elements, "</g>", '<g class="annotations">', *annotations]
    return "\n".join([f"<svg{_attrs(root)}>", *body, "</g>", "</svg>", ""])
