"""The canvas document rules, without a hub: ownership, no-op removes, atomicity, limits."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from canvas.document import Author, CanvasDocument, CanvasLimits, parse_ops, plain, replay
from realtime.base.errors import ErrorCode, HubError

LIMITS = CanvasLimits()


def apply(doc: CanvasDocument, ops: list[dict[str, Any]], author: Author = Author.STUDENT) -> Any:
    return doc.apply(parse_ops(ops, LIMITS), author, LIMITS)


def refused(doc: CanvasDocument, ops: Any, author: Author = Author.STUDENT) -> ErrorCode:
    before = plain(doc.snapshot()), doc.bytes
    with pytest.raises(HubError) as caught:
        apply(doc, ops, author)
    assert (plain(doc.snapshot()), doc.bytes) == before
    return caught.value.code


def test_ownership_of_sections() -> None:
    doc = CanvasDocument()
    apply(doc, [{"op": "add", "path": "/elements/a", "value": 1}])
    apply(doc, [{"op": "add", "path": "/meta/zoom", "value": 2}])
    apply(doc, [{"op": "add", "path": "/annotations/n", "value": 3}], Author.TUTOR)
    assert doc.plain() == {"elements": {"a": 1}, "annotations": {"n": 3}, "meta": {"zoom": 2}}
    assert refused(doc, [{"op": "add", "path": "/annotations/x", "value": 1}]) == "FORBIDDEN"
    assert refused(doc, [{"op": "add", "path": "/elements/x", "value": 1}], Author.TUTOR) == (
        "FORBIDDEN"
    )
    assert refused(doc, [{"op": "copy", "from": "/annotations/n", "path": "/elements/n"}]) == (
        "FORBIDDEN"
    )


def test_remove_of_a_missing_entry_is_dropped_and_add_replaces() -> None:
    doc = CanvasDocument()
    effective = apply(
        doc,
        [
            {"op": "add", "path": "/elements/a", "value": {"v": 1}},
            {"op": "remove", "path": "/elements/b"},
            {"op": "add", "path": "/elements/a", "value": {"v": 2}},
            {"op": "remove", "path": "/elements/a"},
            {"op": "remove", "path": "/elements/a"},
        ],
    )
    assert [op["op"] for op in effective] == ["add", "add", "remove"]
    assert doc.plain()["elements"] == {}
    assert replay(None, [effective]) == doc.plain()


def test_a_failing_op_undoes_the_whole_patch() -> None:
    doc = CanvasDocument()
    apply(doc, [{"op": "add", "path": "/elements/a", "value": {"points": [1]}}])
    code = refused(
        doc,
        [
            {"op": "add", "path": "/elements/a/points/-", "value": 2},
            {"op": "add", "path": "/elements/b", "value": 1},
            {"op": "replace", "path": "/elements/zzz/points", "value": []},
        ],
    )
    assert code == "CONFLICT"
    assert doc.plain()["elements"] == {"a": {"points": [1]}}


def test_nested_edits_do_not_leak_into_earlier_snapshots() -> None:
    doc = CanvasDocument()
    apply(doc, [{"op": "add", "path": "/elements/a", "value": {"points": [1]}}])
    before = doc.snapshot()
    apply(doc, [{"op": "add", "path": "/elements/a/points/-", "value": 2}])
    assert plain(before)["elements"]["a"] == {"points": [1]}  # not changed in place
    assert doc.plain()["elements"]["a"] == {"points": [1, 2]}


def test_limits() -> None:
    limits = CanvasLimits(
        max_ops_per_patch=2, max_patch_bytes=100, max_canvas_bytes=150, max_entries=2
    )
    with pytest.raises(HubError) as caught:
        parse_ops([{"op": "remove", "path": f"/elements/{n}"} for n in range(3)], limits)
    assert caught.value.code == "PAYLOAD_TOO_LARGE"
    with pytest.raises(HubError) as caught:
        parse_ops([{"op": "add", "path": "/elements/a", "value": "x" * 200}], limits)
    assert caught.value.code == "PAYLOAD_TOO_LARGE"
    doc = CanvasDocument()
    for key in ("a", "b"):
        doc.apply(
            parse_ops([{"op": "add", "path": f"/elements/{key}", "value": 1}], limits),
            Author.STUDENT,
            limits,
        )
    with pytest.raises(HubError):
        doc.apply(
            parse_ops([{"op": "add", "path": "/elements/c", "value": 1}], limits),
            Author.STUDENT,
            limits,
        )
    # Replacing an entry when full is fine; growing past the byte limit is not.
    doc.apply(
        parse_ops([{"op": "add", "path": "/elements/a", "value": 2}], limits),
        Author.STUDENT,
        limits,
    )
    for n in range(3):
        ops = parse_ops([{"op": "add", "path": "/meta/k" + str(n), "value": "y" * 50}], limits)
        if n < 2:
            doc.apply(ops, Author.STUDENT, limits)
        else:
            with pytest.raises(HubError):
                doc.apply(ops, Author.STUDENT, limits)
    assert doc.bytes == 124  # a, b and two 57-byte meta entries


keys = st.sampled_from(["a", "b", "c"])
# Integers as the wire's JSON gives them (orjson reads a longer one as a float).
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
values = st.one_of(ints, st.text(max_size=5), st.lists(ints, max_size=3))
student_ops = st.one_of(
    st.builds(lambda k, v: {"op": "add", "path": f"/elements/{k}", "value": v}, keys, values),
    st.builds(lambda k: {"op": "remove", "path": f"/elements/{k}"}, keys),
    st.builds(lambda k, v: {"op": "add", "path": f"/meta/{k}", "value": v}, keys, values),
)


@given(st.lists(st.lists(student_ops, min_size=1, max_size=4), max_size=20))
def test_byte_count_matches_a_fresh_count_and_replay_matches(patches: list[Any]) -> None:
    doc = CanvasDocument()
    accepted = []
    for ops in patches:
        accepted.append(apply(doc, ops))
    assert doc.bytes == CanvasDocument(doc.snapshot()).bytes
    assert replay(None, accepted) == doc.plain()


def rfc6902_with_the_rules(doc: dict[str, Any], ops: list[dict[str, Any]]) -> Any:
    """The rules on a deep copy of the whole document, one RFC 6902 op at a time (how
    ``apply`` once worked): the document after the patch, or None if it is refused."""
    working = copy.deepcopy(doc)
    for op in ops:
        section, key, *below = op["path"][1:].split("/")
        if op["op"] == "remove" and not below and key not in working[section]:
            continue
        try:
            jsonpatch.apply_patch(working, [op], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
            return None
    return working


entry_paths = st.sampled_from(["/elements/a", "/elements/b", "/elements/c", "/meta/m"])
inner_paths = st.sampled_from(["/elements/a/x", "/elements/b/x", "/elements/b/y"])
any_paths = st.one_of(entry_paths, inner_paths)
entries = st.one_of(values, st.fixed_dictionaries({"x": values}, optional={"y": values}))
every_op = st.one_of(
    st.builds(lambda p, v: {"op": "add", "path": p, "value": v}, any_paths, entries),
    st.builds(lambda p, v: {"op": "replace", "path": p, "value": v}, any_paths, entries),
    st.builds(lambda p: {"op": "remove", "path": p}, any_paths),
    st.builds(lambda p, v: {"op": "test", "path": p, "value": v}, any_paths, entries),
    st.builds(lambda f, p: {"op": "move", "from": f, "path": p}, any_paths, any_paths),
    st.builds(lambda f, p: {"op": "copy", "from": f, "path": p}, any_paths, any_paths),
)


def add(path: str, value: Any = 1) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.lists(every_op, min_size=1, max_size=4), st.booleans()),
        max_size=25,
    )
)
# An entry removed and added back in one patch is drawn last; taken back, it is where it was.
@example(
    [
        ([add("/elements/a"), add("/elements/b")], False),
        ([{"op": "remove", "path": "/elements/a"}, add("/elements/a")], True),
    ]
)
@example(
    [
        ([add("/elements/a"), add("/elements/b")], False),
        ([{"op": "move", "from": "/elements/a", "path": "/elements/c"}, add("/elements/a")], True),
    ]
)
def test_apply_matches_rfc6902_on_the_whole_document_in_order_too(
    patches: list[tuple[list[dict[str, Any]], bool]],
) -> None:
    """Working on the touched entries alone gives what the whole-document way gives,
    entry order included (it is the drawing order); a refused patch changes nothing,
    and ``revert`` restores the document exactly."""
    doc = CanvasDocument()
    for ops, take_back in patches:
        before = json.dumps(doc.plain()), doc.bytes, dict(doc.snapshot())
        expected = rfc6902_with_the_rules(doc.plain(), ops)
        if expected is None:
            refused(doc, ops)
            assert json.dumps(doc.plain()) == before[0]
            continue
        apply(doc, ops)
        assert json.dumps(doc.plain()) == json.dumps(expected)
        assert doc.bytes == CanvasDocument(doc.snapshot()).bytes
        if take_back:
            doc.revert()
            assert (json.dumps(doc.plain()), doc.bytes) == before[:2]
            assert doc.bytes == CanvasDocument(doc.snapshot()).bytes
