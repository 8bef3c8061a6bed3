"""The runnable examples in examples/ work as a new user runs them: against a hub
process started as `make run` starts it, on SQLite and on Postgres."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.processes import ROOT, start_hub

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_course_session_route_answers_as_the_walkthrough_expects(
    tmp_path: Path, database: Database
) -> None:
    secret = f"examples-{secrets.token_hex(16)}"
    settings = {"HUB_DATABASE_URL": database.url}
    if database.schema is not None:
        settings["HUB_DATABASE_SCHEMA"] = database.schema
    hub = start_hub(tmp_path, secret, settings=settings)
    try:
        walk = subprocess.run(
            ["bash", str(ROOT / "examples" / "course_sessions.sh")],
            cwd=ROOT,
            env={**os.environ, "HUB": hub.url, "PY": sys.executable, "HUB_JWT_SECRET": secret},
            capture_output=True,
            text=True,
            timeout=100,
        )
    finally:
        hub.stop()
    assert walk.returncode == 0, walk.stdout[-3000:] + walk.stderr[-3000:]
    assert walk.stdout.rstrip().endswith("every call answered as expected")
    # Every route of the design was called (each call prints its method first).
    calls = [line for line in walk.stdout.splitlines() if line.split(" ", 1)[0] in METHODS]
    assert len(calls) >= 38, walk.stdout
