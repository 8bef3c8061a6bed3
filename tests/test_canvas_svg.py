"""canvas.svg: structure, ordering, skipping, bounds, injection resistance, and fuzzing."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canvas.svg import ANNOTATION_COLOR, ELEMENT_COLOR, render_svg

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def section(root: ET.Element, name: str) -> list[ET.Element]:
    (group,) = root.findall(f"{NS}g[@class='{name}']")
    return list(group)


def one(element: dict[str, Any], *, annotation: bool = False) -> ET.Element:
    key = "annotations" if annotation else "elements"
    (child,) = section(parse(render_svg({key: {"e": element}})), key)
    return child


def test_empty_document_is_a_valid_svg_with_default_viewbox() -> None:
    root = parse(render_svg({}))
    assert root.get("viewBox") == "0 0 100 100"
    assert section(root, "elements") == []
    assert section(root, "annotations") == []


@pytest.mark.parametrize(
    "doc",
    [
        {"elements": [], "annotations": "x"},
        {"elements": None, "annotations": 3, "meta": []},
        {"elements": {"a": [1, 2]}, "annotations": {"b": "text"}},
    ],
)
def test_missing_or_non_dict_sections_are_empty(doc: dict[str, Any]) -> None:
    root = parse(render_svg(doc))
    assert root.get("viewBox") == "0 0 100 100"
    assert section(root, "elements") == section(root, "annotations") == []


def test_stroke_is_a_round_polyline() -> None:
    el = one({"type": "stroke", "points": [[0, 0], [10, 5.5], [0.1 + 0.2, 1.0000000002]]})
    assert el.tag == f"{NS}polyline"
    assert el.get("points") == "0,0 10,5.5 0.3,1"
    assert el.get("fill") == "none"
    assert el.get("stroke") == ELEMENT_COLOR
    assert el.get("stroke-linecap") == el.get("stroke-linejoin") == "round"
    assert el.get("data-id") == "e"


def test_single_point_stroke_is_a_dot() -> None:
    el = one({"type": "stroke", "points": [[3, 4]], "width": 6, "color": "blue"})
    assert el.tag == f"{NS}circle"
    assert (el.get("cx"), el.get("cy"), el.get("r"), el.get("fill")) == ("3", "4", "3", "blue")


def test_line_rect_ellipse_text() -> None:
    line = one({"type": "line", "x1": 1, "y1": 2, "x2": 3.333, "y2": -4, "color": "#abc"})
    assert line.tag == f"{NS}line"
    assert [line.get(k) for k in ("x1", "y1", "x2", "y2", "stroke")] == [
        "1",
        "2",
        "3.33",
        "-4",
        "#abc",
    ]
    rect = one({"type": "rect", "x": 1, "y": 2, "w": 30, "h": 40, "fill": "#ffee0080"})
    assert rect.tag == f"{NS}rect"
    assert [rect.get(k) for k in ("x", "y", "width", "height", "fill")] == [
        "1",
        "2",
        "30",
        "40",
        "#ffee0080",
    ]
    ellipse = one({"type": "ellipse", "cx": 5, "cy": 6, "rx": 7, "ry": 8})
    assert ellipse.tag == f"{NS}ellipse"
    assert [ellipse.get(k) for k in ("cx", "cy", "rx", "ry", "fill")] == [
        "5",
        "6",
        "7",
        "8",
        "none",
    ]
    text = one({"type": "text", "x": 10, "y": 20, "text": "a < b & c", "size": 24})
    assert text.tag == f"{NS}text"
    assert text.text == "a < b & c"
    assert (text.get("font-size"), text.get("fill")) == ("24", ELEMENT_COLOR)


def test_rect_dragged_up_and_left_is_normalised() -> None:
    rect = one({"type": "rect", "x": 10, "y": 10, "w": -4, "h": -6})
    assert [rect.get(k) for k in ("x", "y", "width", "height")] == ["6", "4", "4", "6"]


def test_annotations_are_on_top_and_always_in_annotation_color() -> None:
    doc = {
        "elements": {"s": {"type": "line", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "color": "green"}},
        "annotations": {
            "a": {"type": "line", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "color": "#00ff00"},
            "b": {"type": "text", "x": 0, "y": 0, "text": "good", "color": "blue"},
            "c": {"type": "stroke", "points": [[0, 0]], "color": "blue"},
            "d": {"type": "rect", "x": 0, "y": 0, "w": 1, "h": 1, "fill": "yellow"},
        },
    }
    root = parse(render_svg(doc))
    groups = [g.get("class") for g in root]
    assert groups == ["elements", "annotations"]
    assert section(root, "elements")[0].get("stroke") == "green"
    line, text, dot, rect = section(root, "annotations")
    assert line.get("stroke") == ANNOTATION_COLOR
    assert text.get("fill") == ANNOTATION_COLOR
    assert dot.get("fill") == ANNOTATION_COLOR
    assert rect.get("stroke") == rect.get("fill") == ANNOTATION_COLOR
    assert "green" not in render_svg({"annotations": doc["elements"]})


def test_order_is_by_z_then_id() -> None:
    def dot(z: Any = None) -> dict[str, Any]:
        el: dict[str, Any] = {"type": "stroke", "points": [[0, 0]]}
        if z is not None:
            el["z"] = z
        return el

    doc = {"elements": {"b": dot(), "a": dot(), "top": dot(5), "under": dot(-1.5), "c": dot(0)}}
    doc["elements"]["nan"] = dot(math.nan)
    doc["elements"]["bool"] = dot(True)
    ids = [el.get("data-id") for el in section(parse(render_svg(doc)), "elements")]
    assert ids == ["under", "a", "b", "bool", "c", "nan", "top"]
    shuffled = {"elements": dict(reversed(list(doc["elements"].items())))}
    assert render_svg(shuffled) == render_svg(doc)


BAD_ELEMENTS: list[Any] = [
    {"type": "circle", "cx": 0, "cy": 0, "r": 1},
    {"type": "line", "x1": 0, "y1": 0, "x2": 1},
    {"type": "line", "x1": "0", "y1": 0, "x2": 1, "y2": 1},
    {"type": "line", "x1": True, "y1": 0, "x2": 1, "y2": 1},
    {"type": "line", "x1": math.nan, "y1": 0, "x2": 1, "y2": 1},
    {"type": "line", "x1": math.inf, "y1": 0, "x2": 1, "y2": 1},
    {"type": "line", "x1": 10**400, "y1": 0, "x2": 1, "y2": 1},
    {"type": "rect", "x": 0, "y": 0, "w": None, "h": 1},
    {"type": "ellipse", "cx": 0, "cy": 0, "rx": -1, "ry": 1},
    {"type": "text", "x": 0, "y": 0, "text": 5},
    {"type": "text", "x": 0, "y": 0, "text": ""},
    {"type": "stroke", "points": "0,0 1,1"},
    {"type": "stroke", "points": []},
    {"type": "stroke", "points": [[0, 0], [1]]},
    {"type": "stroke", "points": [[0, 0], [1, False]]},
    {"type": "stroke", "points": [[0, 0], {"x": 1, "y": 1}]},
    {"type": ["line"], "x1": 0, "y1": 0, "x2": 1, "y2": 1},
    {"x1": 0, "y1": 0, "x2": 1, "y2": 1},
    "line",
    None,
]


@pytest.mark.parametrize("bad", BAD_ELEMENTS)
def test_bad_elements_are_skipped(bad: Any) -> None:
    good = {"type": "line", "x1": 0, "y1": 0, "x2": 1, "y2": 1}
    for key in ("elements", "annotations"):
        root = parse(render_svg({key: {"bad": bad, "good": good}}))
        assert [el.get("data-id") for el in section(root, key)] == ["good"]


def test_widths_and_font_sizes_are_clamped() -> None:
    def width(w: Any) -> str | None:
        return one({"type": "line", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "width": w}).get(
            "stroke-width"
        )

    assert [width(w) for w in (1000, 10**400, math.inf, 0.5)] == ["100", "100", "100", "0.5"]
    assert {width(w) for w in (0, -3, math.nan, "9", True, None)} == {"2"}
    sizes = [one({"type": "text", "x": 0, "y": 0, "text": "t", "size": s}) for s in (1e6, -1)]
    assert [el.get("font-size") for el in sizes] == ["400", "16"]


def test_points_per_stroke_and_elements_per_section_are_capped() -> None:
    points = [[i, i % 7] for i in range(10_005)]
    el = one({"type": "stroke", "points": points})
    assert len(el.get("points", "").split()) == 10_000
    line = {"type": "line", "x1": 0, "y1": 0, "x2": 1, "y2": 1}
    many = {f"{i:05d}": line for i in range(20_001)}
    rendered = section(parse(render_svg({"elements": many})), "elements")
    assert len(rendered) == 20_000
    assert rendered[-1].get("data-id") == "19999"


def test_viewbox_fits_the_drawing_plus_margin() -> None:
    line = {"type": "line", "x1": 0, "y1": 0, "x2": 100, "y2": 50, "width": 2}
    root = parse(render_svg({"elements": {"l": line}}))
    assert root.get("viewBox") == "-11 -11 122 72"
    assert (root.get("width"), root.get("height")) == ("122", "72")
    note = {"type": "stroke", "points": [[200, -20], [210, -30]], "width": 4}
    root = parse(render_svg({"elements": {"l": line}, "annotations": {"n": note}}, margin=0))
    assert root.get("viewBox") == "-1 -32 213 83"


def test_explicit_size_sets_the_viewbox() -> None:
    line = {"type": "line", "x1": 0, "y1": 0, "x2": 5000, "y2": 5000}
    root = parse(render_svg({"elements": {"l": line}}, width=800, height=600))
    assert root.get("viewBox") == "0 0 800 600"
    assert (root.get("width"), root.get("height")) == ("800", "600")
    root = parse(render_svg({}, width=300))
    assert (root.get("viewBox"), root.get("width"), root.get("height")) == (
        "0 0 100 100",
        "300",
        None,
    )


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"height": math.nan}, {"margin": -1}])
def test_invalid_size_arguments_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        render_svg({}, **kwargs)


ATTACKS = [
    "</text><script>alert(1)</script>",
    'red" onload="alert(1)',
    "red' onload='alert(1)",
    "url(javascript:alert(1))",
    "javascript:alert(1)",
    "red;background:url(x)",
    "expression(alert(1))",
    "<script>alert(1)</script>",
    "]]><script>alert(1)</script><![CDATA[",
    "\x00\x08\ufffe\ud800<script>",
    "#fff\n",
    "#ff00ff<script>",
]


TAGS = ("polyline", "circle", "line", "rect", "ellipse", "text")


def assert_inert(svg: str) -> ET.Element:
    """Well-formed, only drawing tags, no script, event handler, style, link or url()."""
    assert "<script" not in svg.lower()
    root = parse(svg)
    for node in root.iter():
        assert node.tag in {f"{NS}{t}" for t in ("svg", "g", *TAGS)}
        for name, value in node.attrib.items():
            assert not name.lower().startswith("on")
            assert name not in {"style", "href", "{http://www.w3.org/1999/xlink}href"}
            if name != "data-id":
                assert "javascript:" not in value.lower() and "url(" not in value.lower()
    return root


@pytest.mark.parametrize("attack", ATTACKS)
def test_injection_attempts_stay_inert(attack: str) -> None:
    base: dict[str, dict[str, Any]] = {
        "stroke": {"type": "stroke", "points": [[0, 0], [1, 1]]},
        "dot": {"type": "stroke", "points": [[0, 0]]},
        "line": {"type": "line", "x1": 0, "y1": 0, "x2": 1, "y2": 1},
        "rect": {"type": "rect", "x": 0, "y": 0, "w": 1, "h": 1},
        "ellipse": {"type": "ellipse", "cx": 0, "cy": 0, "rx": 1, "ry": 1},
        "text": {"type": "text", "x": 0, "y": 0, "text": attack},
    }
    extras = {"color": attack, "fill": attack, "style": attack, "onload": attack, "href": attack}
    section_ = {attack + kind: {**el, **extras, attack: attack} for kind, el in base.items()}
    doc = {"elements": section_, "annotations": section_, "meta": {"title": attack}}
    root = assert_inert(render_svg(doc))
    for el in section(root, "elements"):
        assert el.get("data-id", "").endswith(tuple(base))
        paint = {el.get("stroke"), el.get("fill")} - {None, "none"}
        assert paint == {ELEMENT_COLOR}
    for el in section(root, "annotations"):
        assert {el.get("stroke"), el.get("fill")} - {None, "none"} == {ANNOTATION_COLOR}
    texts = [el.text for el in root.iter(f"{NS}text")]
    assert texts == [attack.translate({0: None, 8: None, 0xFFFE: None, 0xD800: None})] * 2


def test_xml_invalid_characters_are_dropped() -> None:
    text = one({"type": "text", "x": 0, "y": 0, "text": "a\x00b\x1bc\ufffed\td\U0001f600"})
    assert text.text == "abcd\td\U0001f600"
    nothing_left = {"type": "text", "x": 0, "y": 0, "text": "\x00\x01"}
    assert section(parse(render_svg({"elements": {"e": nothing_left}})), "elements") == []


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.sampled_from(["stroke", "line", "rect", "ellipse", "text", "z", "red", "#abc"])
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
# Mostly valid numbers, so that shapes actually render, with every kind of bad value mixed in.
number_ish = (
    st.integers(-(10**4), 10**4)
    | st.floats(-1e4, 1e4)
    | st.integers()
    | st.floats()
    | st.sampled_from([True, None, "1", 10**400])
)
points_ish = st.lists(st.tuples(number_ish, number_ish).map(list), min_size=1, max_size=6) | (
    st.lists(st.lists(number_ish, max_size=3), max_size=6)
)
GEOMETRY: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "stroke": {"points": points_ish},
    "line": dict.fromkeys(("x1", "y1", "x2", "y2"), number_ish),
    "rect": dict.fromkeys(("x", "y", "w", "h"), number_ish),
    "ellipse": dict.fromkeys(("cx", "cy", "rx", "ry"), number_ish),
    "text": {"x": number_ish, "y": number_ish, "text": st.text()},
}
element_ish = st.sampled_from(sorted(GEOMETRY)).flatmap(
    lambda kind: st.fixed_dictionaries(
        {"type": st.just(kind), **GEOMETRY[kind]},
        optional={
            "width": number_ish,
            "size": number_ish,
            "z": number_ish,
            "color": st.sampled_from(["red", "#abc", "#aabbccdd", "#ab", "r3d"]) | st.text(),
            "fill": st.sampled_from(["none", "blue"]) | st.text(),
            "junk": json_like,
        },
    )
)
shaped_section = st.dictionaries(st.text(), element_ish | json_like, max_size=8)


@settings(max_examples=300, deadline=None)
@given(doc=json_like)
def test_arbitrary_json_renders_well_formed_svg(doc: Any) -> None:
    assert_inert(render_svg(doc))


@settings(max_examples=300, deadline=None)
@given(elements=shaped_section, annotations=shaped_section | json_like, meta=json_like)
def test_element_shaped_documents_render_well_formed_svg(
    elements: dict[str, Any], annotations: Any, meta: Any
) -> None:
    doc = {"elements": elements, "annotations": annotations, "meta": meta}
    root = assert_inert(render_svg(doc))
    assert len(section(root, "elements")) <= len(elements)
    for el in section(root, "annotations"):
        assert {el.get("stroke"), el.get("fill")} - {None, "none"} == {ANNOTATION_COLOR}
