"""`python -m realtime serve` as deployed: what the listening socket is given."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import socketio
from pydantic import SecretStr

from loadtest.procs import free_port
from realtime.base.identity import Role, mint_token
from tests.processes import start_hub
from tests.support import Client


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


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.timeout(60)
def test_metrics_on_their_own_port_behind_a_bearer_token(tmp_path: Path) -> None:
    """HUB_METRICS_PORT takes /metrics off the public port; HUB_METRICS_TOKEN asks
    every scrape for it (the runbook's "Keeping /metrics private")."""
    metrics_port, token = free_port(), secrets.token_hex(16)
    hub = start_hub(
        tmp_path,
        f"serve-test-{secrets.token_hex(16)}",
        settings={"HUB_METRICS_PORT": str(metrics_port), "HUB_METRICS_TOKEN": token},
    )
    try:
        assert get(f"{hub.url}/metrics")[0] == 404
        private = f"http://127.0.0.1:{metrics_port}/metrics"
        status, body = get(private, token)
        assert status == 200 and "hub_connections " in body, body[:200]
        for wrong in (None, "x" + token[1:]):
            status, body = get(private, wrong)
            assert status == 401 and json.loads(body)["errorCode"] == "UNAUTHORIZED", body
        assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in hub.log_tail()
    finally:
        assert hub.stop() == 0


@pytest.mark.timeout(60)
def test_a_token_of_the_previous_key_works_during_a_rotation(tmp_path: Path) -> None:
    """Rotating the JWT key without logging anyone out (docs/runbook.md): a hub with a
    new HUB_JWT_SECRET and the old one as HUB_JWT_PREVIOUS_SECRET takes tokens of
    either, over REST and Socket.IO, and counts which key verified them."""
    old, new = (f"serve-test-{secrets.token_hex(16)}" for _ in range(2))
    hub = start_hub(tmp_path, new, settings={"HUB_JWT_PREVIOUS_SECRET": old})
    old_settings = hub.settings.model_copy(update={"jwt_secret": SecretStr(old)})
    old_token = mint_token(old_settings, sub="t1", role=Role.TUTOR, center="c1")
    new_token = hub.token("t2", Role.TUTOR)
    forged = mint_token(
        old_settings.model_copy(update={"jwt_secret": SecretStr("f" * 40)}),
        sub="t3",
        role=Role.TUTOR,
        center="c1",
    )

    async def connects(token: str) -> bool:
        client = Client()
        try:
            await client.connect(hub.url, token)
        except socketio.exceptions.ConnectionError:
            return False
        await client.sio.disconnect()
        return True

    try:
        for token, works in ((old_token, True), (new_token, True), (forged, False)):
            assert (get(f"{hub.url}/api/v1/sessions", token)[0] == 200) is works
            assert asyncio.run(connects(token)) is works
        _, metrics = get(f"{hub.url}/metrics")
        assert 'hub_tokens_verified_total{key="previous"} 2.0' in metrics
        assert 'hub_tokens_verified_total{key="current"} 2.0' in metrics
    finally:
        assert hub.stop() == 0
