"""Hub configuration from ``HUB_*`` environment variables, validated at start."""

from __future__ import annotations

import ipaddress
import logging
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# Only for local development: the hub refuses to start with it when HUB_ENV=production.
DEV_JWT_SECRET = "tutor-hub-development-secret-do-not-use-in-production"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/hub.db"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Everything the hub reads from its environment.

    Each field is ``HUB_<NAME>``; for example ``HUB_PORT=8000``.
    """

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Connections waiting to be accepted. A reconnect storm opens them all at once;
    # past the queue the kernel drops the SYN and the client waits 1, 3, 7... s to
    # retry (the kernel caps this at net.core.somaxconn).
    listen_backlog: int = Field(default=4096, ge=1, le=65535)
    log_level: str = "INFO"
    # "json": one JSON object per line, with the request, socket and session a line
    # concerns as fields (docs/logging.md); "text": one line of text, the same context
    # appended in brackets.
    log_format: Literal["text", "json"] = "text"
    # Start even when python-engineio, python-socketio or redis is outside the versions
    # the hub's use of their internals was written for (realtime/internals/).
    allow_untested_libraries: bool = False
    # uvloop runs the hub's asyncio primitives (tasks, timers, sockets) in C.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    database_url: str = DEFAULT_DATABASE_URL
    # Postgres only: keep the hub's tables in this schema (it must exist).
    database_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    database_echo: bool = False
    migrate_on_start: bool = True
    redis_url: str | None = None
    # Redis Cluster instead of one Redis: some of its nodes, "host:port,host:port"
    # (the client finds the rest). Sessions' channels use sharded pub/sub.
    redis_cluster_nodes: str | None = None
    # /metrics on its own port (on HUB_METRICS_HOST) instead of the public one, and/or
    # only with "Authorization: Bearer <HUB_METRICS_TOKEN>".
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str | None = None
    metrics_token: SecretStr | None = None

    # Identity. A secret enables HS256; a PEM public key enables RS256 or ES256
    # (by the key's type). Both may be set at once.
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    # Rotation: a key the hub still accepts but no longer names as its own, while
    # tokens signed with it may be in use (docs/runbook.md, "Rotating the JWT key").
    jwt_previous_secret: SecretStr | None = None
    jwt_previous_public_key: SecretStr | None = None
    jwt_previous_public_key_file: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=600)

    # Browser origins allowed to open Socket.IO and call /api/v1 (["*"]: any).
    cors_origins: list[str] = Field(default_factory=list)
    # Socket.IO transport limits.
    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    ping_interval_s: float = Field(default=25.0, gt=0)
    ping_timeout_s: float = Field(default=20.0, gt=0)
    # Accept a websocket client's permessage-deflate offer (browsers and the stock
    # socket.io-client make one) and compress every frame sent to it. Off, as in
    # Socket.IO's own server: for small JSON frames it costs the hub more CPU than it
    # saves on a LAN (docs/benchmarks.md).
    websocket_compression: bool = False
    # A websocket whose unsent packets (behind the next one) hold more than this is
    # dropped: a client that stopped reading is not buffered without bound. More
    # than the largest ack a client may get (a join carries its session's canvases).
    max_queued_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    # A connection that has not joined a session this long after connecting is
    # closed (hub:closing JOIN_TIMEOUT); a websocket that has not even connected to
    # Socket.IO by then is dropped. 0: no deadline.
    join_deadline_s: float = Field(default=30.0, ge=0)
    # At most this many open Socket.IO requests (websockets, long polls) per client
    # address; a center behind one NAT address needs room for all its clients.
    max_connections_per_address: int = Field(default=256, ge=1)
    # Proxies (JSON list of addresses) whose X-Forwarded-For names the client.
    trusted_proxies: list[str] = Field(default_factory=list)
    # HTTP: how long a connection may take to send a request's headers (and may
    # sit idle between requests), and a request's body.
    http_header_timeout_s: float = Field(default=15.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)

    # Rate limits: each socket's client events, and each user's REST calls.
    socket_events_per_s: float = Field(default=50.0, gt=0)
    socket_event_burst: int = Field(default=100, ge=1)
    rest_requests_per_s: float = Field(default=20.0, gt=0)
    rest_request_burst: int = Field(default=40, ge=1)

    # Canvases: limits, the in-memory log kept for catch-up, snapshots, relay coalescing.
    canvas_max_ops_per_patch: int = Field(default=200, ge=1, le=10_000)
    canvas_max_patch_bytes: int = Field(default=64 * 1024, ge=256)
    canvas_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    canvas_max_entries: int = Field(default=5_000, ge=1)
    canvas_log_retention: int = Field(default=1_000, ge=1)
    canvas_log_bytes: int = Field(default=256 * 1024, ge=1024)
    canvas_snapshot_every: int = Field(default=200, ge=1)
    canvas_snapshot_interval_s: float = Field(default=30.0, gt=0)
    canvas_flush_interval_s: float = Field(default=0.0, ge=0, le=1.0)
    # Under load (the last commit ended less than this ago) the committer waits
    # this long for more patches, so one commit carries a batch; idle, it commits at once.
    canvas_commit_linger_s: float = Field(default=0.015, ge=0, le=0.1)

    # A student with no activity (drawing, progress, pings) this long is idle;
    # a session may set its own (idle_after_s). Checked every presence_sweep_s.
    idle_after_s: float = Field(default=120.0, ge=5, le=3600)
    # Alerts to staff: the session ends within this; a student idle this long.
    session_ending_warn_s: float = Field(default=300.0, ge=0)
    idle_alert_s: float = Field(default=300.0, ge=5)
    # A student whose last connection drops is offline only if not back within this.
    presence_grace_s: float = Field(default=10.0, ge=0, le=300)
    # A student whose first join comes this long after the start is LATE.
    late_after_s: float = Field(default=300.0, ge=0, le=24 * 3600)
    presence_sweep_s: float = Field(default=1.0, gt=0, le=60)

    # How long a help request may wait, by priority, before it is escalated.
    help_target_urgent_s: float = Field(default=60.0, gt=0)
    help_target_high_s: float = Field(default=180.0, gt=0)
    help_target_normal_s: float = Field(default=300.0, gt=0)
    help_target_low_s: float = Field(default=600.0, gt=0)

    # REST limits.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_page_size: int = Field(default=100, ge=1, le=1000)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"expected a logging level such as INFO or DEBUG, got {value!r}")
        return level

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        """Each an IP address, written as ``request.remote`` writes it."""
        try:
            return [str(ipaddress.ip_address(address.strip())) for address in value]
        except ValueError as exc:
            raise ValueError(f"expected IP addresses: {exc}") from None

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL, "
                f"got {value.split('://', 1)[0]}://..."
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value or None

    @field_validator("redis_cluster_nodes")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        if not value:
            return None
        for node in value.split(","):
            host, _, port = node.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port,host:port,..., got {node.strip()!r}")
        return value

    @field_validator("jwt_secret", "jwt_previous_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("expected an HS256 secret of at least 32 bytes")
        return value

    @model_validator(mode="after")
    def _identity_configured(self) -> Self:
        if self.jwt_public_key is not None and self.jwt_public_key_file is not None:
            raise ValueError("set HUB_JWT_PUBLIC_KEY or HUB_JWT_PUBLIC_KEY_FILE, not both")
        if self.jwt_previous_public_key is not None and self.jwt_previous_public_key_file:
            raise ValueError(
                "set HUB_JWT_PREVIOUS_PUBLIC_KEY or HUB_JWT_PREVIOUS_PUBLIC_KEY_FILE, not both"
            )
        if self.has_previous_keys and not self.has_configured_keys:
            raise ValueError(
                "a previous JWT key (HUB_JWT_PREVIOUS_*) needs a current one "
                "(HUB_JWT_SECRET or HUB_JWT_PUBLIC_KEY(_FILE))"
            )
        if self.env is Environment.PRODUCTION:
            if not self.has_configured_keys:
                raise ValueError(
                    "HUB_ENV=production needs HUB_JWT_SECRET or HUB_JWT_PUBLIC_KEY(_FILE); "
                    "the development secret is refused"
                )
            if self.jwt_secret is not None and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
                raise ValueError(
                    "HUB_ENV=production refuses the development secret as HUB_JWT_SECRET "
                    "(it is public in the source)"
                )
        return self

    @model_validator(mode="after")
    def _one_redis(self) -> Self:
        if self.redis_url is not None and self.redis_cluster_nodes is not None:
            raise ValueError("set HUB_REDIS_URL or HUB_REDIS_CLUSTER_NODES, not both")
        return self

    @property
    def cluster_nodes(self) -> list[tuple[str, int]]:
        """``HUB_REDIS_CLUSTER_NODES`` as (host, port) pairs."""
        nodes = []
        for node in (self.redis_cluster_nodes or "").split(","):
            if node.strip():
                host, _, port = node.strip().rpartition(":")
                nodes.append((host.strip("[]"), int(port)))
        return nodes

    @model_validator(mode="after")
    def _patch_fits_a_message(self) -> Self:
        if self.canvas_max_patch_bytes > self.max_message_bytes:
            raise ValueError(
                f"HUB_CANVAS_MAX_PATCH_BYTES ({self.canvas_max_patch_bytes}) must not exceed "
                f"HUB_MAX_MESSAGE_BYTES ({self.max_message_bytes})"
            )
        return self

    @property
    def has_configured_keys(self) -> bool:
        return any(
            v is not None for v in (self.jwt_secret, self.jwt_public_key, self.jwt_public_key_file)
        )

    @property
    def has_previous_keys(self) -> bool:
        return any(
            v is not None
            for v in (
                self.jwt_previous_secret,
                self.jwt_previous_public_key,
                self.jwt_previous_public_key_file,
            )
        )

    @property
    def development_mode(self) -> bool:
        """The hub runs on the built-in development secret (never in production): the
        pages' sign-in and ``POST /api/v1/dev/token`` exist only then."""
        return self.hs256_secret() == DEV_JWT_SECRET

    def hs256_secret(self) -> str | None:
        """The HS256 secret, falling back to the development one when no key is set."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if not self.has_configured_keys:
            return DEV_JWT_SECRET
        return None

    def public_key_pem(self) -> str | None:
        return _pem(self.jwt_public_key, self.jwt_public_key_file)

    def previous_keys(self) -> tuple[str | None, str | None]:
        """The previous HS256 secret and PEM public key, each if set."""
        secret = self.jwt_previous_secret
        return (
            secret.get_secret_value() if secret is not None else None,
            _pem(self.jwt_previous_public_key, self.jwt_previous_public_key_file),
        )


def _pem(key: SecretStr | None, path: Path | None) -> str | None:
    if key is not None:
        return key.get_secret_value()
    if path is not None:
        return path.read_text()
    return None
