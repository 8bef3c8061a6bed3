"""`python -m realtime serve` as deployed: what the listening socket is given."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.processes import start_hub


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_accept_queue_holds_a_reconnect_storm(tmp_path: Path) -> None:
    """A reconnect storm opens every connection at once. aiohttp's default accept
    queue (128) overflowed under 1,200 (the kernel dropped SYNs; clients waited
    seconds to retry, past their connect timeout): the hub listens with
    ``HUB_LISTEN_BACKLOG``."""
    hub = start_hub(
        tmp_path, f"serve-test-{secrets.token_hex(16)}", settings={"HUB_LISTEN_BACKLOG": "777"}
    )
    try:
        port = urlsplit(hub.url).port
        # For a listening socket, ss's Send-Q column is its backlog.
        listening = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listening[:3] == ["LISTEN", "0", "777"], listening
    finally:
        hub.stop()
