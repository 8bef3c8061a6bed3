"""The rolling-restart drill's verdict and table.

**Lost**: an acked seq the tutor never received (relayed, in a catch-up, or in a
document it took whole that holds the element), or one the op log does not hold
with its element at the end (read back over REST, the replay timeline).
**Doubled**: a seq relayed to a tutor again outside the overlap the protocol
allows after a catch-up, two different elements acked with one seq, or a seq the
tutor received with another element than the one acked. **Out of order**: a
relayed seq below one relayed before on the same connection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from loadtest.rollout_clients import Student, Tutor, elements_of
from loadtest.sessions import SessionPlan, Tokens
from realtime.base.identity import Role

MAX_TIMELINE_PAGES = 50
# nginx answers 502 while it holds every hub unavailable (after a refused connect it
# sends a hub nothing for fail_timeout, 10 s): the read is tried again for this long.
REST_RETRY_S = 30.0
RESTART_COLUMNS = ["hub", "port", "connections_at_sigterm", "signal", "exit_code", "stop_s",
                   "sigterm_to_ready_s", "moved"]  # fmt: skip


async def read_stored(
    base: str, tokens: Tokens, plans: list[SessionPlan], rest_retries: Counter[int]
) -> dict[str, dict[int, set[str]]]:
    """Every student's stored patches, seq -> elements, from the replay timeline
    (each 502 or 503 answer tried again is counted in ``rest_retries``)."""
    out: dict[str, dict[int, set[str]]] = {}
    async with aiohttp.ClientSession() as http:

        async def get(url: str, params: dict[str, str], headers: dict[str, str]) -> Any:
            end = asyncio.get_running_loop().time() + REST_RETRY_S
            while True:
                async with http.get(url, params=params, headers=headers) as resp:
                    if resp.status == 200:
                        return await resp.json()
                    if resp.status not in (502, 503) or asyncio.get_running_loop().time() > end:
                        raise RuntimeError(f"GET {url}: expected 200, got {resp.status}")
                rest_retries[resp.status] += 1
                await asyncio.sleep(0.5)

        async def one(plan: SessionPlan, student: str) -> None:
            headers = {"Authorization": f"Bearer {tokens(plan.tutor_id, Role.TUTOR)}"}
            path = f"{base}/api/v1/sessions/{plan.session_id}/canvases/{student}/timeline"
            stored: dict[int, set[str]] = {}
            cursor = None
            for _ in range(MAX_TIMELINE_PAGES):
                params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
                body = await get(path, params, headers)
                page = body.get("data", body)
                for entry in page["entries"]:
                    if entry["kind"] == "patch":
                        stored[entry["seq"]] = elements_of(entry["ops"])
                if not page["has_more"]:
                    break
                cursor = page["next_cursor"]
            out[student] = stored

        await asyncio.gather(*(one(p, s) for p in plans for s in p.student_ids))
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def judge(
    hubs: int,
    restarts: list[dict[str, Any]],
    students: list[Student],
    tutors: list[Tutor],
    stored: dict[str, dict[int, set[str]]],
) -> dict[str, Any]:
    """The summary: counts, and ``failures`` (empty when nothing acked was lost,
    doubled or reordered, every hub exited 0 and every student recovered)."""
    canvas_of = {s: t.canvases[s] for t in tutors for s in t.canvases}
    lost_tutor: dict[str, list[Any]] = {}
    lost_db: dict[str, list[Any]] = {}
    doubled: dict[str, list[Any]] = {}
    reordered: dict[str, list[Any]] = {}
    for student in students:
        canvas, name = canvas_of[student.user_id], student.user_id
        missing: list[int] = []
        conflicts: list[Any] = [("acked twice", *c) for c in student.conflicts]
        for seq, element in sorted(student.acked.items()):
            got = canvas.received.get(seq)
            if got is not None and element not in got:
                conflicts.append(("tutor got another element", seq, element, sorted(got)))
            in_doc = any(d >= seq and element in els for d, els in canvas.docs)
            if got is None and not in_doc:
                missing.append(seq)
        conflicts += [("relayed again", seq) for seq in canvas.doubled]
        not_stored = [
            s for s, e in sorted(student.acked.items()) if e not in stored[name].get(s, ())
        ]
        found: list[tuple[dict[str, list[Any]], list[Any]]] = [
            (lost_tutor, missing), (lost_db, not_stored),
            (doubled, conflicts), (reordered, canvas.out_of_order),
        ]  # fmt: skip
        for table, values in found:
            if values:
                table[name] = values
    # A patch resent after its ack was lost may have been stored the first time too: an
    # element at two seqs (the protocol allows it; an add of an existing id replaces it).
    stored_twice = sum(
        count - 1
        for held in stored.values()
        for count in Counter(e for els in held.values() for e in els).values()
        if count > 1
    )
    recoveries = [r for s in students for r in s.recoveries]
    seconds = [r["seconds"] for r in recoveries]
    unrecovered = [s.user_id for s in students if s.broken_at is not None]
    refused = sum((s.refused for s in students), Counter[str]())
    summary: dict[str, Any] = {
        "hubs": hubs,
        "sessions": len(tutors),
        "students": len(students),
        "restarts": [{k: v for k, v in r.items() if k != "sigterm_at"} for r in restarts],
        "sent": sum(s.sent for s in students),
        "acked": sum(len(s.acked) for s in students),
        "refused": dict(refused),
        "dropped": sum(len(s.dropped) for s in students),
        "stored_twice": stored_twice,
        "lost_at_tutor": lost_tutor,
        "lost_in_database": lost_db,
        "doubled": doubled,
        "out_of_order": reordered,
        "relay_overlaps": sum(c.overlaps for c in canvas_of.values()),
        "relay_gaps": sum(c.gaps for c in canvas_of.values()),
        "tutor_syncs": sum(t.syncs for t in tutors),
        "relays_before_join_answer": sum(t.early_relays for t in tutors),
        "epochs_per_canvas": dict(Counter(len(c.epochs) for c in canvas_of.values())),
        "students_moved": len({r["student"] for r in recoveries}),
        "recoveries": len(recoveries),
        "recovery_causes": dict(Counter(str(r["why"]) for r in recoveries)),
        "recovery_p50_s": percentile(seconds, 0.50),
        "recovery_p99_s": percentile(seconds, 0.99),
        "recovery_max_s": round(max(seconds), 3) if seconds else None,
        "unrecovered": unrecovered,
        "longest_ack_gap_s": round(max((s.longest_gap_s for s in students), default=0.0), 3),
        "reconnections_students": _histogram(s.reconnections for s in students),
        "reconnections_tutors": _histogram(t.reconnections for t in tutors),
        "closings": dict(sum((c.closings for c in [*students, *tutors]), Counter[str]())),
        "connect_failures": dict(
            sum((c.connect_failures for c in [*students, *tutors]), Counter[str]())
        ),
    }
    for restart in summary["restarts"]:
        start = next(r["sigterm_at"] for r in restarts if r["hub"] == restart["hub"])
        end = start + restart["sigterm_to_ready_s"]
        restart["moved"] = len({r["student"] for r in recoveries if start <= r["at"] <= end})
    summary["failures"] = failures(summary)
    return summary


def _histogram(counts: Any) -> dict[int, int]:
    """How many clients reconnected 0, 1, 2, ... times."""
    return dict(sorted(Counter(counts).items()))


def failures(summary: dict[str, Any]) -> list[str]:
    out = []
    for key in ("lost_at_tutor", "lost_in_database", "doubled", "out_of_order"):
        if summary[key]:
            count = sum(len(v) for v in summary[key].values())
            out.append(f"{key}: {count} ({', '.join(sorted(summary[key]))})")
    for restart in summary["restarts"]:
        if restart["exit_code"] != restart["expected_exit_code"]:
            out.append(
                f"{restart['hub']} exited with {restart['exit_code']} on {restart['signal']}"
            )
    if summary["unrecovered"]:
        out.append(f"students that never got an ack again: {summary['unrecovered']}")
    if summary["acked"] == 0:
        out.append("nothing was acked")
    return out


def table(summary: dict[str, Any]) -> str:
    """The restarts and the verdict, as Markdown tables."""
    rows = ["| " + " | ".join(RESTART_COLUMNS) + " |", "|" + "---|" * len(RESTART_COLUMNS)]
    rows += ["| " + " | ".join(str(r.get(k)) for k in RESTART_COLUMNS) + " |"
             for r in summary["restarts"]]  # fmt: skip
    lost = sum(len(v) for v in summary["lost_at_tutor"].values())
    lost_db = sum(len(v) for v in summary["lost_in_database"].values())
    figures = [
        ("through", summary["through"]),
        ("hubs / sessions / students", f"{summary['hubs']} / {summary['sessions']} / "
                                       f"{summary['students']}"),
        ("patches sent / acked", f"{summary['sent']} / {summary['acked']}"),
        ("refused (by code)", summary["refused"] or 0),
        ("resent patches stored twice (first ack lost)", summary["stored_twice"]),
        ("lost: at the tutor / in the database", f"{lost} / {lost_db}"),
        ("doubled / out of order", f"{sum(len(v) for v in summary['doubled'].values())} / "
                                   f"{sum(len(v) for v in summary['out_of_order'].values())}"),
        ("relay overlaps / gaps / tutor syncs",
         f"{summary['relay_overlaps']} / {summary['relay_gaps']} / {summary['tutor_syncs']}"),
        ("relay events before the join's answer (held until it)",
         summary["relays_before_join_answer"]),
        ("epochs per canvas (epochs: canvases)", summary["epochs_per_canvas"]),
        ("students moved / recoveries", f"{summary['students_moved']} / "
                                        f"{summary['recoveries']}"),
        ("recovery p50 / p99 / max (s)", f"{summary['recovery_p50_s']} / "
                                         f"{summary['recovery_p99_s']} / "
                                         f"{summary['recovery_max_s']}"),
        ("longest gap between two acks (s)", summary["longest_ack_gap_s"]),
        ("reconnections per student (times: students)", summary["reconnections_students"]),
        ("reconnections per tutor (times: tutors)", summary["reconnections_tutors"]),
        ("hub:closing received (by code)", summary["closings"] or 0),
        ("failed connect attempts (by error)", summary["connect_failures"] or 0),
        ("hub connections at the end", summary.get("hub_connections_at_end")),
        ("REST reads at the end answered 502/503 first", summary.get("rest_retries")),
        ("verdict", "; ".join(["FAIL", *summary["failures"]]) if summary["failures"] else "PASS"),
    ]  # fmt: skip
    rows += ["", "| figure | value |", "|---|---|"]
    rows += [f"| {name} | {value} |" for name, value in figures]
    return "\n".join(rows)
