"""The rolling-restart drill (``python -m loadtest rollout``): two hubs behind nginx,
configured from docs/deploy/nginx.conf, each SIGTERMed and started again while
students draw. Run small; the full-size figures are in docs/reliability.md.

nginx is needed (Debian package ``nginx``): by hand without it the drill is
skipped, under ``CI=true`` it fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loadtest import rollout
from loadtest.rollout import NginxMissing, RolloutConfig, run_rollout
from loadtest.rollout_nginx import DOCUMENTED_CONF, drill_config, nginx_binary
from tests.conftest import REDIS_URL, need_service, redis_problem

# The drill flushes its Redis database: this test worker's own (HUB_TEST_REDIS_URL's
# for the first worker), which no other test uses while this one runs. (The drill
# notices, and fails, if someone else flushes it meanwhile.)
ROLLOUT_REDIS_URL = REDIS_URL


def test_the_drill_runs_the_documented_nginx_config_with_its_own_ports() -> None:
    documented = DOCUMENTED_CONF.read_text()
    config = drill_config(documented, [9101, 9102], 9200)
    servers = [line.strip() for line in config.splitlines() if "server 127." in line]
    # Each hub with the documented server line's parameters (max_fails=0).
    first = next(line for line in documented.splitlines() if "server 127." in line)
    params = first.split(";")[0].split(":8001")[1]
    assert servers == [f"server 127.0.0.1:9101{params};", f"server 127.0.0.1:9102{params};"]
    assert "max_fails=0" in params
    assert "listen 127.0.0.1:9200;" in config
    # Everything else as documented (ip_hash, the timeouts, the upgrade headers).
    kept = [
        line
        for line in documented.splitlines()
        if "server 127." not in line and "listen" not in line
    ]
    assert [line for line in config.splitlines() if line in kept] == kept


def test_a_config_the_drill_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="upstream hubs"):
        drill_config("http { server { listen 127.0.0.1:80; } }", [9101], 9200)


def test_without_nginx_the_drill_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rollout, "nginx_binary", lambda: None)
    with pytest.raises(NginxMissing, match="Debian package 'nginx'"):
        run_rollout(RolloutConfig(redis_url=ROLLOUT_REDIS_URL), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_rolling_restart_behind_nginx_loses_nothing_acked(tmp_path: Path) -> None:
    need_service("Redis", asyncio.run(redis_problem()))
    found = nginx_binary()
    need_service(
        "nginx", None if found else "no /usr/sbin/nginx, none on PATH", hint="apt-get install nginx"
    )
    # A pause shorter than nginx's fail_timeout (10 s): with nginx's default max_fails
    # the second restart found the first hub still held out, every hub out at once,
    # and every client got 502 (docs/reliability.md, "Rolling restart drill").
    config = RolloutConfig(
        hubs=2, sessions=2, students=2, rate=5.0, warm_up=2.0, pause=2.0, after=3.0,
        timeout=90.0, redis_url=ROLLOUT_REDIS_URL,
    )  # fmt: skip
    summary = run_rollout(config, tmp_path)

    assert summary["through"] == "nginx"
    assert [r["exit_code"] for r in summary["restarts"]] == [0, 0], summary["restarts"]
    assert summary["lost_at_tutor"] == {} and summary["lost_in_database"] == {}
    assert summary["doubled"] == {} and summary["out_of_order"] == {}
    assert summary["unrecovered"] == [] and summary["failures"] == [], summary["failures"]
    assert summary["acked"] > summary["acked_before_roll"] > 0
    # Every hub had clients when it was stopped (ip_hash sends every loopback client
    # to one hub; they all move at each restart), and they came back quickly.
    assert all(r["connections_at_sigterm"] for r in summary["restarts"]), summary["restarts"]
    assert summary["students_moved"] == 4
    assert summary["recovery_max_s"] is not None and summary["recovery_max_s"] < 15.0
    assert summary["closings"].get("SHUTTING_DOWN", 0) >= 6


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_hubs_killed_one_after_another_lose_nothing_acked(tmp_path: Path) -> None:
    """The objective "recovery after a hub dies" (docs/objectives.md): SIGKILL, so no
    hub:closing and no stored hand-over; the survivor takes the canvases over once
    the dead hub's key lapses. Full-size figures: docs/reliability.md."""
    need_service("Redis", asyncio.run(redis_problem()))
    need_service("nginx", None if nginx_binary() else "no /usr/sbin/nginx, none on PATH")
    config = RolloutConfig(
        hubs=2, sessions=2, students=2, rate=5.0, warm_up=2.0, pause=2.0, after=3.0,
        timeout=90.0, redis_url=ROLLOUT_REDIS_URL, kill=True,
    )  # fmt: skip
    summary = run_rollout(config, tmp_path)

    assert [(r["signal"], r["exit_code"]) for r in summary["restarts"]] == [("SIGKILL", -9)] * 2
    assert summary["failures"] == [], summary["failures"]
    assert summary["lost_at_tutor"] == summary["lost_in_database"] == {}
    assert summary["doubled"] == summary["out_of_order"] == {}
    assert summary["students_moved"] == 4 and summary["closings"] == {}
    assert summary["recovery_max_s"] is not None and summary["recovery_max_s"] < 30.0
