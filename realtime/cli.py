"""Command line: ``python -m realtime serve | migrate | token``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from persistence import migrate
from persistence.db import create_engine
from realtime.base import logs
from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token
from realtime.base.logbudget import MalformedRequests

log = logging.getLogger("realtime")

# Young collections every 50,000 allocations instead of 700, and full ones rarer.
# Every patch allocates its stroke's points (a list per point); the stock thresholds
# ran a full collection of the live canvases every few seconds under load, 75 ms
# each, which made the relay's p99: 140-160 ms against 36-42 ms with these, at
# 1,000 patches/s (docs/benchmarks.md). Memory is still freed by reference counts;
# only cycles wait longer.
GC_THRESHOLDS = (50_000, 20, 100)

# Variables a former release read and this one does not (Settings ignores unknown
# ones): the value under which the hub still does what it did, and what changed. That
# value is warned about; any other would change what the hub does without a word, so
# the hub refuses it.
RETIRED: dict[str, tuple[str, str]] = {
    "HUB_CANVAS_SHARING": (
        "leased",
        "no longer read: hubs sharing Redis always share canvases 'leased'; 'sequenced' "
        "was removed, and hubs in the two modes must not share a Redis (switch every "
        "hub to leased on the former release first: CHANGELOG.md)",
    ),
}


def retired(environ: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The problems and the warnings, each starting with its variable's name, that
    retired variables in ``environ`` cause (any case, as Settings reads names)."""
    problems: list[str] = []
    warnings: list[str] = []
    for name, value in environ.items():
        if name.upper() in RETIRED:
            harmless, what = RETIRED[name.upper()]
            line = f"{name.upper()}: got {value!r}, {what}"
            (warnings if value == harmless else problems).append(line)
    return problems, warnings


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or exit with every bad ``HUB_*`` value named."""
    lines = [f"  {problem}" for problem in retired(os.environ)[0]]
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"HUB_{field.upper()}" if err["loc"] else "settings"
            lines.append(f"  {name}: {err['msg']}")
    if lines:
        raise SystemExit("\n".join([f"invalid configuration ({len(lines)} problem(s)):", *lines]))
    return settings


def serve(args: argparse.Namespace) -> None:
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = load_settings(**overrides)
    logs.configure(settings.log_level, settings.log_format)
    for warning in retired(os.environ)[1]:
        log.warning("%s; remove it", warning)
    if not settings.has_configured_keys:
        log.warning(
            "no HUB_JWT_SECRET or HUB_JWT_PUBLIC_KEY set: using the development secret "
            "(mint tokens with `python -m realtime token`); never do this in production"
        )
    from realtime.app import build_app
    from realtime.internals import UntestedLibraryError

    migrate_apart = settings.migrate_on_start and can_migrate_apart(settings.database_url)
    if migrate_apart:
        settings = settings.model_copy(update={"migrate_on_start": False})
    try:
        app = build_app(settings)
    except UntestedLibraryError as exc:
        raise SystemExit(f"hub not started: {exc}") from None
    # Bound here, not by aiohttp, so a hub started on port 0 can say the port it got.
    try:
        listener = listen(settings.host, settings.port, settings.listen_backlog)
    except OSError as exc:
        raise SystemExit(
            f"hub not started: cannot listen on {settings.host}:{settings.port}: {exc}"
        ) from None
    host, port = listener.getsockname()[:2]
    if migrate_apart:
        migrate_in_child(settings)

    async def announce(_app: web.Application) -> None:
        # Everything built so far (modules, the ORM's metadata, the app) lives as long
        # as the process: keep it out of every later full garbage collection.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        # Runs after the migrations (registered before it), just before the port opens.
        log.info(
            "hub serving on http://%s:%d (database: %s)",
            f"[{host}]" if ":" in host else host,
            port,
            settings.database_url.split("://", 1)[0],
        )

    app.on_startup.append(announce)
    web.run_app(
        app,
        sock=listener,
        print=None,
        access_log=None,
        backlog=settings.listen_backlog,
        # aiohttp closes a connection that has not sent a whole request this long
        # after it opened or after its last response: the header read timeout.
        keepalive_timeout=settings.http_header_timeout_s,
        logger=http_logger(),  # handed to each connection handler
        # After the clients were told and closed (at most CLOSE_WAIT_S), what is
        # still open is a client that stopped reading: don't wait long for it.
        shutdown_timeout=3,
        loop=new_event_loop(settings.event_loop),
    )


def http_logger() -> logging.Logger:
    """The logger of aiohttp's connection handlers: requests it cannot parse are
    logged as the client's doing (``MalformedRequests``), not as server errors."""
    logger = logging.getLogger("realtime.http")
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host``'s first address and ``port`` (0: any free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def upgrade_database(settings: Settings) -> str | None:
    """Apply the migrations; the schema's revision after them."""
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    try:
        await migrate.upgrade(engine)
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


def run_migrations(_args: argparse.Namespace) -> None:
    settings = load_settings()
    print(f"database schema is at revision {asyncio.run(upgrade_database(settings))}")


def can_migrate_apart(database_url: str) -> bool:
    """Whether another process can migrate the database the hub will use: not an
    in-memory SQLite database, which exists only in the process that opens it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or url.query.get("mode") == "memory":
            return False
    return hasattr(os, "fork")


def migrate_in_child(settings: Settings) -> None:
    """Run the migrations in a child forked for them, or exit if they fail.

    Alembic (with Mako, and Pygments where it is installed) and the migration
    scripts stay in memory once imported: 8-13 MiB of a hub's RSS for its whole
    life, of about 110 (docs/benchmarks.md). The child has them instead, and
    exits. Forked before the event loop and the database driver's threads exist.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            revision = asyncio.run(upgrade_database(settings))
            log.info("database schema is at %s", revision)
            status = 0
        except BaseException:
            log.exception("database migration failed")
        finally:
            logging.shutdown()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise SystemExit(f"hub not started: the database migration failed (exit status {code})")


def token(args: argparse.Namespace) -> None:
    settings = load_settings()
    private_key = args.private_key.read() if args.private_key else None
    print(
        mint_token(
            settings,
            sub=args.sub,
            role=Role(args.role),
            center=args.center,
            name=args.name,
            ttl_s=args.ttl,
            private_key_pem=private_key,
            algorithm=args.algorithm,
        )
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m realtime", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the hub (Socket.IO and REST on one port)")
    p.add_argument("--host", help="listen address (default: HUB_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: HUB_PORT or 8000)")
    p.set_defaults(run=serve)

    p = commands.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(run=run_migrations)

    p = commands.add_parser("token", help="mint a development token")
    p.add_argument("--sub", required=True, help="user id")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--center", required=True, help="center (tenant) id")
    p.add_argument("--name", help="display name")
    p.add_argument("--ttl", type=float, default=3600, help="lifetime in seconds (default 3600)")
    p.add_argument(
        "--private-key",
        type=argparse.FileType("r"),
        help="sign with this PEM private key instead of the HS256 secret",
    )
    p.add_argument(
        "--algorithm",
        default="HS256",
        choices=["HS256", "RS256", "ES256"],
        help="algorithm for --private-key",
    )
    p.set_defaults(run=token)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
