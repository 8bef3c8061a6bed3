"""The hub's JSON codec (orjson; the standard library for big integers), alone and on the wire."""

from __future__ import annotations

import json

import pytest

from realtime.base import codec
from realtime.base.errors import contains_nul
from tests.conftest import HubFactory
from tests.support import eventually
from tests.test_canvas import live_session, patch, relayed

HUGE = 2**70 + 1  # beyond 64 bits, and not exactly a float


@pytest.mark.parametrize(
    "value",
    [
        {"text": "é 漢字 😀", "n": 1.5, "ok": True, "none": None},
        {"n": -(2**63), "m": 2**64 - 1, "list": [0, -1, 1e300]},
        [],
    ],
)
def test_round_trip_matches_the_standard_library(value: object) -> None:
    assert codec.loads(codec.dumps(value)) == value == json.loads(json.dumps(value))
    assert codec.encoded_size(value) == len(codec.dumps(value).encode())


def test_an_integer_orjson_cannot_encode_falls_back_to_the_standard_library() -> None:
    assert codec.dumps({"n": HUGE}) == f'{{"n":{HUGE}}}'
    assert codec.encoded_size([HUGE]) == len(str(HUGE)) + 2


def test_an_integer_beyond_64_bits_is_read_as_javascript_reads_it() -> None:
    assert codec.loads(f"[{HUGE}]") == [float(HUGE)]


def test_nul_scan_finds_nul_in_keys_and_values_and_ignores_an_escaped_lookalike() -> None:
    assert contains_nul({"a": ["x\x00"]})
    assert contains_nul({"a\x00": 1})
    assert contains_nul([HUGE, "\x00"])  # through the walk: orjson cannot encode HUGE
    assert not contains_nul({"a": "\\u0000"})  # a backslash, then "u0000": no NUL
    assert not contains_nul({"points": [[1, 2], [3, 4]], "n": HUGE})


async def test_a_patch_travels_through_ack_relay_and_database_unchanged(
    make_hub: HubFactory,
) -> None:
    """Guards the orjson codec on every path a patch takes: non-ASCII text, the
    64-bit edges and a float come back from the relay and the database as sent."""
    hub = await make_hub()
    session_id, tutor, students = await live_session(hub, ("s1",))
    value = {"type": "text", "text": "é 漢字 😀", "n": 2**63 - 1, "m": -(2**63), "f": 0.1}
    ack = await patch(
        students["s1"], session_id, [{"op": "add", "path": "/elements/big", "value": value}]
    )
    assert ack == {"ok": True, "seq": 1}
    await eventually(lambda: relayed(tutor, "s1"), what="the relay")
    assert relayed(tutor, "s1")[0]["ops"][0]["value"] == value
    # Read back from the database: the document rebuilt from the stored op log.
    status, stored = await hub.as_("tutor-1", "TUTOR").get(
        f"/api/v1/sessions/{session_id}/canvases/s1?at_seq=1"
    )
    assert status == 200, stored
    assert stored["data"]["doc"]["elements"]["big"] == value
