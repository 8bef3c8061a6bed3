"""One student's canvas and the rules for changing it.

The document is ``{"elements": {id: ...}, "annotations": {id: ...}, "meta": {...}}``.
A patch is an RFC 6902 op list applied with ``jsonpatch`` under these rules:

- every path (and ``from``) points inside one keyed entry: ``/<section>/<key>[/...]``;
  the student writes ``elements`` and ``meta``, the tutor ``annotations``;
- ``remove`` of an entry that is already gone is dropped (a no-op), and ``add``
  on an existing key replaces it, so ops on different entries commute;
- a patch applies whole or not at all: a refused patch leaves the document as
  it was, and the limits (ops and bytes per patch, bytes and entries per
  canvas) are checked before the change is kept.

``apply`` returns the *effective* ops (no-op removes dropped): replaying those
in seq order on any replica with a plain RFC 6902 implementation gives the
same document.

In memory each entry is kept encoded (the bytes of its compact JSON), which
costs little more than its encoded size, where the same entry as
Python objects (a stroke's points as lists of floats) costs about ten times
that; the encoding is needed anyway for the byte limits, and a snapshot wraps
each entry in an ``orjson.Fragment``, embedded as is on the wire. An op that
works inside an entry (a path below it, ``move``, ``copy``, ``test``) decodes
that entry first; the common ops (add, replace or remove a whole entry) never
decode anything.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import jsonpatch
import jsonpointer
import orjson
from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

from realtime.base.codec import encoded_bytes, encoded_size
from realtime.base.errors import ErrorCode, HubError, validation_error

SECTIONS = ("elements", "annotations", "meta")
MAX_KEY_LENGTH = 128
_ABSENT = object()  # an entry's previous value when the patch added it
# What the last patch changed: the byte count before it; per entry touched, its
# section, key, size after and before, and value before; the sections it replaced.
_Undo = tuple[int, list[tuple[str, str, Any]], dict[str, dict[str, Any]]]


class Author(StrEnum):
    STUDENT = "student"
    TUTOR = "tutor"


WRITABLE: dict[Author, frozenset[str]] = {
    Author.STUDENT: frozenset({"elements", "meta"}),
    Author.TUTOR: frozenset({"annotations"}),
}


@dataclass(frozen=True, slots=True)
class CanvasLimits:
    max_ops_per_patch: int = 200
    max_patch_bytes: int = 64 * 1024
    max_canvas_bytes: int = 2 * 1024 * 1024
    max_entries: int = 5_000  # elements + annotations


def empty_document() -> dict[str, Any]:
    return {section: {} for section in SECTIONS}


# The op shapes are TypedDicts: validating one yields the plain dict itself, with
# no model to dump again on the hot path. Unknown fields are refused.
Pointer = Annotated[str, StringConstraints(max_length=1024)]
_strict = with_config(ConfigDict(extra="forbid"))


@_strict
class AddOp(TypedDict):
    op: Literal["add"]
    path: Pointer
    value: Any


@_strict
class ReplaceOp(TypedDict):
    op: Literal["replace"]
    path: Pointer
    value: Any


@_strict
class TestOp(TypedDict):
    op: Literal["test"]
    path: Pointer
    value: Any


@_strict
class RemoveOp(TypedDict):
    op: Literal["remove"]
    path: Pointer


# "from" is a keyword, hence the functional form.
MoveOp = TypedDict("MoveOp", {"op": Literal["move"], "path": Pointer, "from": Pointer})
CopyOp = TypedDict("CopyOp", {"op": Literal["copy"], "path": Pointer, "from": Pointer})
_strict(MoveOp)
_strict(CopyOp)

Op = Annotated[AddOp | ReplaceOp | TestOp | RemoveOp | MoveOp | CopyOp, Field(discriminator="op")]
_OPS: TypeAdapter[Any] = TypeAdapter(list[Op])


def _parts(pointer: str) -> list[str]:
    """The unescaped parts of a JSON pointer (a plain one without parsing it twice)."""
    if pointer.startswith("/") and "~" not in pointer:
        return pointer[1:].split("/")
    try:
        parts: list[str] = jsonpointer.JsonPointer(pointer).parts
    except jsonpointer.JsonPointerException as exc:
        raise HubError(ErrorCode.VALIDATION_ERROR, f"bad JSON pointer {pointer!r}: {exc}") from None
    return parts


def _entry(pointer: str, author: Author) -> tuple[str, str, int]:
    """(section, key, depth) of a path the author may write, or a refusal."""
    parts = _parts(pointer)
    if len(parts) < 2 or parts[0] not in SECTIONS or not parts[1]:
        raise HubError(
            ErrorCode.FORBIDDEN,
            f"path {pointer!r} must point inside one entry: /elements/<id>, /meta/<key> "
            "or /annotations/<id>",
        )
    if parts[0] not in WRITABLE[author]:
        raise HubError(
            ErrorCode.FORBIDDEN,
            f"the {author.value} may not write {pointer!r}; "
            f"expected a path under {sorted('/' + s for s in WRITABLE[author])}",
        )
    if len(parts[1]) > MAX_KEY_LENGTH:
        raise HubError(ErrorCode.VALIDATION_ERROR, f"entry key longer than {MAX_KEY_LENGTH}")
    return parts[0], parts[1], len(parts)


def parse_ops(raw: Any, limits: CanvasLimits) -> list[dict[str, Any]]:
    """Validate an op list's shape and size; returns the ops as plain dicts."""
    if isinstance(raw, list) and len(raw) > limits.max_ops_per_patch:
        raise HubError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"a patch holds at most {limits.max_ops_per_patch} ops, got {len(raw)}",
        )
    try:
        ops: list[dict[str, Any]] = _OPS.validate_python(raw)
    except ValidationError as exc:
        raise validation_error(exc, "invalid JSON Patch ops") from None
    if not ops:
        raise HubError(ErrorCode.VALIDATION_ERROR, "a patch needs at least one op")
    size = encoded_size(ops)
    if size > limits.max_patch_bytes:
        raise HubError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"a patch is at most {limits.max_patch_bytes} bytes, got {size}",
        )
    return ops


def _encode(value: Any) -> bytes:
    """An entry's compact JSON (integers beyond 64 bits, which orjson refuses, through
    the standard library); an entry already encoded stays as it is."""
    if isinstance(value, bytes):
        return value
    return encoded_bytes(value)


def _entry_size(key: str, encoded: bytes) -> int:
    """Bytes of ``"key":value`` in compact JSON (the canvas size counts these)."""
    return len(key) + 3 + len(encoded)


def plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A snapshot with its entries decoded: for rendering, and for comparing with plain
    JSON."""
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return decoded


class CanvasDocument:
    """A canvas held in memory, with the byte size of each entry kept up to date."""

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        source = doc or {}
        self.doc: dict[str, dict[str, bytes]] = {
            section: {key: _encode(value) for key, value in (source.get(section) or {}).items()}
            for section in SECTIONS
        }
        # An entry's size is its key's and encoded value's (``_entry_size``): kept as a
        # total only, not per entry (a dict of sizes was a tenth of a canvas's memory).
        self.bytes = sum(
            _entry_size(key, value)
            for entries in self.doc.values()
            for key, value in entries.items()
        )
        self._undo: _Undo = (self.bytes, [], {})

    @property
    def entries(self) -> int:
        return len(self.doc["elements"]) + len(self.doc["annotations"])

    def snapshot(self) -> dict[str, Any]:
        """The document now, each entry an ``orjson.Fragment`` (encode the snapshot with
        orjson, or decode it with ``plain``). It stays as it was while the canvas goes
        on: entries are immutable bytes."""
        return {
            section: {key: orjson.Fragment(value) for key, value in entries.items()}
            for section, entries in self.doc.items()
        }

    def plain(self) -> dict[str, Any]:
        """The document now as plain JSON values."""
        return {
            section: {key: orjson.loads(value) for key, value in entries.items()}
            for section, entries in self.doc.items()
        }

    def apply(
        self, ops: list[dict[str, Any]], author: Author, limits: CanvasLimits
    ) -> list[dict[str, Any]]:
        """Apply validated ops (see ``parse_ops``) whole or not at all; the effective ops.

        The cost grows with the patch, not the canvas: every path (and ``from``) lies
        inside one entry, so the ops run on a working copy of just the entries they
        touch, and the result is written into the document's sections in place."""
        targets = [
            (_entry(op["path"], author), _entry(op["from"], author) if "from" in op else None)
            for op in ops
        ]
        touched = {t[:2]: None for pair in targets for t in pair if t is not None}
        # The working copy holds the touched entries as they are (encoded), and
        # decodes those an op must read: one it works inside, moves, copies or tests.
        working: dict[str, dict[str, Any]] = {}
        for section, key in touched:
            entries = working.setdefault(section, {})
            if key in self.doc[section]:
                entries[key] = self.doc[section][key]
        for op, pair in zip(ops, targets, strict=True):
            whole = op["op"] in ("add", "replace", "remove") and pair[0][2] == 2
            for t in pair:
                if t is None or (whole and t is pair[0]):
                    continue
                value = working[t[0]].get(t[1])
                if isinstance(value, bytes):
                    working[t[0]][t[1]] = orjson.loads(value)
        effective: list[dict[str, Any]] = []
        moved_out: set[tuple[str, str]] = set()  # entries removed (maybe added back)
        for op, (target, source) in zip(ops, targets, strict=True):
            section, key, depth = target
            entries = working[section]
            kind = op["op"]
            if depth == 2 and kind == "remove" and key not in entries:
                continue  # already gone: a no-op, so concurrent removes commute
            if depth == 2 and (kind == "add" or (kind == "replace" and key in entries)):
                entries[key] = op["value"]  # what jsonpatch does, without its per-op setup
            elif depth == 2 and kind == "remove":
                del entries[key]
                moved_out.add((section, key))
            else:
                _apply_with_jsonpatch(working, op)
                if kind == "move" and source is not None and source[2] == 2:
                    moved_out.add(source[:2])
            effective.append(op)
        total, count = self.bytes, self.entries
        changes = []  # (section, key, value before)
        for section, key in touched:
            present = key in working[section]
            size = 0
            if present:
                encoded = working[section][key] = _encode(working[section][key])
                size = _entry_size(key, encoded)
            previous = self.doc[section].get(key, _ABSENT)
            before = _entry_size(key, previous) if isinstance(previous, bytes) else 0
            total += size - before
            if section != "meta":
                count += present - (previous is not _ABSENT)
            changes.append((section, key, previous))
        if total > limits.max_canvas_bytes:
            raise HubError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"a canvas holds at most {limits.max_canvas_bytes} bytes; this patch "
                f"would make it {total}",
            )
        if count > limits.max_entries and count > self.entries:
            raise HubError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"a canvas holds at most {limits.max_entries} elements and annotations",
            )
        replaced = self._write(working, moved_out)
        self._undo = (self.bytes, changes, replaced)
        self.bytes = total
        return effective

    def _write(
        self, working: dict[str, dict[str, Any]], moved_out: set[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        """Write the touched entries into the sections; the sections it replaced.

        An entry that stays keeps its place in its section, and a new one goes last:
        the order a plain RFC 6902 replay gives. A section that loses an entry (even
        one added back, which goes last) is replaced by a changed copy, so that the
        old one stays whole for ``revert``; the others are changed in place."""
        replaced = {}
        for section, after in working.items():
            entries = self.doc[section]
            if any(s == section and k in entries for s, k in moved_out):
                replaced[section] = entries
                entries = self.doc[section] = {
                    k: v for k, v in entries.items() if (section, k) not in moved_out
                }
            entries.update(after)
        return replaced

    def revert(self) -> None:
        """Undo the last ``apply`` (the document must not have changed since)."""
        self.bytes, changes, replaced = self._undo
        self.doc.update(replaced)
        for section, key, previous in changes:
            if section not in replaced and previous is _ABSENT:
                self.doc[section].pop(key, None)
            elif section not in replaced:
                self.doc[section][key] = previous
        self._undo = (self.bytes, [], {})


def _apply_with_jsonpatch(doc: dict[str, Any], op: dict[str, Any]) -> None:
    try:
        jsonpatch.apply_patch(doc, [op], in_place=True)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise HubError(ErrorCode.CONFLICT, f"test op failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise HubError(
            ErrorCode.CONFLICT, f"op {op['op']} {op['path']!r} cannot apply: {exc}"
        ) from None


def replay(doc: dict[str, Any] | None, patches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The document after applying effective ops in order (plain RFC 6902, no rules)."""
    result = copy.deepcopy(plain(doc)) if doc else empty_document()
    for ops in patches:
        jsonpatch.apply_patch(result, ops, in_place=True)
    return result
