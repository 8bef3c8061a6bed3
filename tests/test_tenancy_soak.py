"""The tenancy soak (issue 19), short: every role of three centers on real hubs, and
not one event delivered to anyone the protocol keeps it from.

The oracle's own tests feed it deliveries the protocol forbids and show each is
counted, so the soak's zero means something.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest import __main__ as cli
from loadtest.tenancy import Soak, TenancyConfig
from loadtest.tenancy_oracle import Conn, Oracle, SessionInfo
from loadtest.tenancy_run import check_redis_url, soak
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.processes import HubProcess
from tests.support import eventually

SHORT_EVENTS = 2_000
SHORT_SECONDS = 25.0
EVERY_KIND = (
    "canvas:patches", "announcement", "timer:started", "help:updated", "presence:update",
    "progress:update", "exercise:assigned", "mode:changed",
)  # fmt: skip

S0 = SessionInfo("s-0", "ctr0", "ctr0-ta", frozenset({"ctr0-st01", "ctr0-st02"}))
S1 = SessionInfo("s-1", "ctr0", "ctr0-tb", frozenset({"ctr0-st03"}))
X0 = SessionInfo("x-0", "ctr1", "ctr1-ta", frozenset({"ctr1-st01"}))


def people() -> tuple[Oracle, dict[str, Conn]]:
    conns = {
        "tutor": Conn(0, "ctr0-ta", "TUTOR", "ctr0", "ctr0-ta#0"),
        "st01": Conn(1, "ctr0-st01", "STUDENT", "ctr0", "ctr0-st01#0"),
        "st01b": Conn(2, "ctr0-st01", "STUDENT", "ctr0", "ctr0-st01#1"),
        "st02": Conn(3, "ctr0-st02", "STUDENT", "ctr0", "ctr0-st02#0"),
        "assessor": Conn(4, "ctr0-assessor", "ASSESSOR", "ctr0", "ctr0-assessor#0"),
        "root": Conn(5, "ctr0-root", "SUPER_ADMIN", "ctr0", "ctr0-root#0"),
        "admin": Conn(6, "ctr0-admin", "CENTER_ADMIN", "ctr0", "ctr0-admin#0"),
    }
    oracle = Oracle([S0, S1, X0], list(conns.values()))
    for name in ("tutor", "st01", "st01b", "st02", "admin"):
        oracle.joining(conns[name], "s-0")
    oracle.joining(conns["assessor"], "s-0")  # refused: never a member
    oracle.joining(conns["root"], "x-0")
    return oracle, conns


def patch(student: str, marker: str, author: str = "student") -> dict[str, Any]:
    return {
        "session_id": "s-0",
        "items": [
            {
                "student_id": student, "epoch": "e", "seq": 1, "author": author,
                "ops": [{"op": "add", "path": f"/elements/e-{student}-1",
                         "value": {"type": "rect", "m": marker}}],
            }
        ],
    }  # fmt: skip


def test_the_oracle_lets_through_what_the_protocol_allows() -> None:
    oracle, c = people()
    presence = {"session_id": "s-0", "student_id": "ctr0-st02", "status": "active"}
    oracle.receive(c["tutor"], "presence:update", presence)
    oracle.receive(c["admin"], "presence:update", presence)
    oracle.receive(c["tutor"], "canvas:patches", patch("ctr0-st01", "ctr0-st01#0:1"))
    oracle.receive(c["st01b"], "canvas:patches", patch("ctr0-st01", "ctr0-st01#0:1"))
    oracle.receive(c["st01"], "canvas:patches", patch("ctr0-st01", "ctr0-ta#0:2", "tutor"))
    oracle.receive(c["st02"], "announcement", {"session_id": "s-0", "text": "hi",
                                               "from": "ctr0-ta", "student_id": None})  # fmt: skip
    oracle.receive(c["st02"], "help:position", {"session_id": "s-0", "position": 2})
    oracle.receive(c["root"], "mode:changed", {"session_id": "x-0", "student_id": "ctr1-st01"})
    oracle.receive(c["st01"], "hub:closing", {"code": "SHUTTING_DOWN", "message": "bye"})
    assert oracle.summary()["violations"] == 0, oracle.summary()["violation_examples"]


@pytest.mark.parametrize(
    ("who", "event", "payload", "kind"),
    [
        ("st02", "canvas:patches", patch("ctr0-st01", "ctr0-st01#0:1"), "other_student_data"),
        ("st01", "canvas:patches", patch("ctr0-st01", "ctr0-st01#0:1"), "echo"),
        ("st01", "presence:update", {"session_id": "s-0", "student_id": "ctr0-st01"},
         "staff_only_event"),
        ("st01", "timer:alert", {"session_id": "s-0", "kind": "STUDENT_IDLE",
                                 "student_id": "ctr0-st01"}, "staff_only_event"),
        ("st01", "timer:started", {"session_id": "s-0",
                                   "timer": {"id": "t", "student_id": "ctr0-st02"}},
         "other_student_data"),
        ("tutor", "help:position", {"session_id": "s-0", "position": 1}, "student_only_event"),
        ("tutor", "mode:changed", {"session_id": "s-0", "student_id": "ctr0-st03"},
         "foreign_student"),
        ("tutor", "mode:changed", {"session_id": "s-1", "student_id": "ctr0-st03"},
         "not_member"),
        ("assessor", "announcement", {"session_id": "s-0", "text": "hi"}, "not_member"),
        ("admin", "announcement", {"session_id": "x-0", "text": "hi"}, "other_center"),
        ("admin", "announcement", {"session_id": "s-0", "text": "hi", "from": "ctr1-ta"},
         "other_center_data"),
        ("tutor", "announcement", {"session_id": "s-0", "text": "note~PRIVATE-1"}, "note_leak"),
        ("tutor", "session:secret", {"session_id": "s-0"}, "unknown_event"),
        ("tutor", "announcement", {"text": "hi"}, "no_session"),
    ],
)  # fmt: skip
def test_the_oracle_counts_each_delivery_the_protocol_forbids(
    who: str, event: str, payload: dict[str, Any], kind: str
) -> None:
    oracle, c = people()
    oracle.receive(c[who], event, payload)
    assert oracle.violations[kind] == 1, oracle.summary()["violation_examples"]


def test_the_oracle_forgets_a_session_once_its_leave_is_acked() -> None:
    oracle, c = people()
    oracle.left(c["st02"], "s-0")
    oracle.receive(c["st02"], "announcement", {"session_id": "s-0", "text": "late"})
    assert oracle.violations["not_member"] == 1


def test_the_oracle_counts_an_expected_delivery_that_never_came() -> None:
    oracle, c = people()
    # The tutor's copy arrives before the ack that makes the soak expect it.
    oracle.receive(c["tutor"], "canvas:patches", patch("ctr0-st01", "ctr0-st01#0:7"))
    oracle.expect("s-0", "canvas:patches", "ctr0-st01#0:7", [0, 2, 6])
    oracle.receive(c["st01b"], "canvas:patches", patch("ctr0-st01", "ctr0-st01#0:7"))
    summary = oracle.summary()
    assert (summary["expected_deliveries"], summary["expected_delivered"]) == (3, 2)
    assert summary["missing_by_event"] == {"canvas:patches": 1}


def test_a_delivery_promised_just_before_its_session_ended_is_counted_apart() -> None:
    oracle, _ = people()
    oracle.expect("s-0", "canvas:patches", "ctr0-st01#0:1", [0], at=100.0)
    oracle.expect("s-0", "canvas:patches", "ctr0-st01#0:2", [0], at=100.5)
    oracle.expect("s-1", "canvas:patches", "ctr0-st03#0:1", [0], at=100.5)
    oracle.session_ended("s-0", at=101.2)
    summary = oracle.summary()
    # Promised 1.2 s before the end, and in a session that goes on: plain missing.
    assert (summary["missing"], summary["missing_at_end"]) == (2, 1)


def test_a_help_queue_naming_anothers_request_is_counted_once_the_owners_are_known() -> None:
    oracle, c = people()
    oracle.help_request("h1", "s-0", "ctr0-st01")
    oracle.help_request("h2", "s-0", "ctr0-st02")
    oracle.help_request("h3", "s-1", "ctr0-st03")
    own = {"session_id": "s-0", "help_request": {"student_id": "ctr0-st01"}, "queue": ["h1"]}
    oracle.receive(c["st01"], "help:updated", own)
    oracle.receive(c["tutor"], "help:updated", {**own, "queue": ["h1", "h2"]})
    oracle.receive(c["st01"], "help:updated", {**own, "queue": ["h1", "h2"]})
    oracle.receive(c["tutor"], "help:updated", {**own, "queue": ["h1", "h3", "h9"]})
    oracle.check_queues()
    assert dict(oracle.violations) == {"other_student_data": 1, "foreign_student": 1}
    assert oracle.summary()["help_queue_ids_unknown"] == 1


def test_a_student_join_ack_naming_another_student_is_counted() -> None:
    oracle, c = people()
    oracle.ack(c["st01"], "s-0", {"ok": True, "students": [{"student_id": "ctr0-st02"}]})
    assert oracle.violations["other_student_data"] == 1


def test_the_command_line_takes_only_redis_databases_nine_and_ten() -> None:
    check_redis_url("redis://127.0.0.1:6379/9")
    with pytest.raises(ValueError, match="/9 or /10"):
        check_redis_url("redis://127.0.0.1:6379/0")
    with pytest.raises(SystemExit):
        cli.parse_args(["tenancy", "--hubs", "2", "--redis-url", "redis://127.0.0.1:6379/15"])


@pytest.mark.slow
async def test_a_real_delivery_the_oracle_was_not_told_of_is_a_violation(
    hub_process: HubProcess,
) -> None:
    """End to end through the soak's own clients: st02 joins S0 behind the oracle's
    back, so the tutor's announcement reaching it is, to the oracle, a delivery to a
    socket outside the session."""
    assert hub_process.settings.jwt_secret is not None
    secret = hub_process.settings.jwt_secret.get_secret_value()
    soak_ = Soak(TenancyConfig((hub_process.url,), secret, centers=2, events=1))
    async with aiohttp.ClientSession() as http:
        await soak_.seed(http)
        soak_.build(http)
        assert soak_.oracle is not None
        tutor, student = (
            next(a for a in soak_.actors if a.conn.tag == tag)
            for tag in ("ctr0-ta#0", "ctr0-st02#0")
        )
        s0 = soak_.by_center["ctr0"][0]
        try:
            for actor in (tutor, student):
                await actor.client.connect(actor.token)
            assert await soak_.join(tutor, s0)
            ack = await student.client.call("session:join", {"session_id": s0})
            assert ack["ok"] is True
            sent = await soak_.call(tutor, "announcement:send", {"session_id": s0, "text": "hi"})
            assert sent is not None
            await eventually(lambda: soak_.oracle and soak_.oracle.violations["not_member"])
        finally:
            for actor in (tutor, student):
                await actor.client.close()
    assert soak_.oracle.by_event[("not_member", "announcement")] == 1
    assert soak_.oracle.received["announcement"] == 2


def assert_clean(summary: dict[str, Any]) -> None:
    assert summary["violations"] == 0, summary["violation_examples"]
    assert summary["refusals_accepted"] == 0, summary["refusals_accepted_by_event"]
    assert summary["missing"] == 0, summary["missing_examples"]
    assert summary["events_sent"] >= 500, summary["sent_by_event"]
    assert summary["expected_deliveries"] > 0
    assert summary["help_queue_ids_checked"] > 0
    assert summary["lost_acks"] == {}
    assert summary["actor_failures"] == []
    assert summary["hub_log_problems"] == []
    assert summary["disconnected_at_end"] == 0
    assert summary["disconnected_while_sending"] == []
    assert all(summary["hub_alive_at_end"])
    # Every kind of session event went out and came back to someone.
    for event in EVERY_KIND:
        assert summary["received_by_event"].get(event, 0) > 0, event


@pytest.mark.slow
def test_no_event_reaches_anyone_it_should_not_on_one_hub(tmp_path: Path) -> None:
    summary = soak(tmp_path, events=SHORT_EVENTS, seconds=SHORT_SECONDS)
    assert summary["roles"] == {
        "TUTOR": 9, "CENTER_ADMIN": 3, "SUPERVISOR": 3, "ASSESSOR": 3, "PARENT": 3,
        "STUDENT": 24, "SUPER_ADMIN": 1,
    }  # fmt: skip
    assert_clean(summary)


@pytest.mark.slow
def test_no_event_reaches_anyone_it_should_not_on_two_hubs_sharing_redis(
    tmp_path: Path,
) -> None:
    need_service("Redis", asyncio.run(redis_problem()))
    summary = soak(tmp_path, hubs=2, redis_url=REDIS_URL, events=SHORT_EVENTS,
                   seconds=SHORT_SECONDS)  # fmt: skip
    assert summary["hubs"] == 2
    assert_clean(summary)
