"""The fence: every use of python-engineio, python-socketio and redis-py internals.

The hub goes below these libraries' public APIs in four places, each for a
gain measured in ``docs/benchmarks.md``; nothing outside this package touches
their private parts, and ``tests/test_internals.py`` pins each attribute and
signature relied on here, so an upgrade that moves one fails one precise test.

- ``engineio_websocket``: Engine.IO's websocket transport on aiohttp, installed
  in the server's driver table (``AsyncServer._async["websocket"]``), driving
  ``AsyncSocket`` (``queue``, ``connected``, ``upgraded``, ``upgrading``,
  ``closed``, ``last_ping``, ``receive``, ``close(wait=, abort=, reason=)``,
  ``server.reason``), without the stock loop's task and timer per packet:
  x1.25 patches per hub CPU-second (fourth pass); its heartbeat timer reads
  ``last_ping`` (Engine.IO's own check comes a ping timeout late), and its
  admission check the manager's ``sid_from_eio_sid``. Also ``enqueue``: put an
  encoded packet on a socket's send queue (``AsyncServer.sockets``,
  ``AsyncSocket.queue``), which the outbox uses to encode a relay once for
  all its recipients instead of a task per recipient (first pass, x1.12 with
  the orjson codec).
- ``socketio_dispatch``: handlers run inline per socket with deferred acks,
  by overriding python-socketio's ``_handle_event_internal`` and calling its
  ``_trigger_event`` and ``not_handled``: no task per event (third pass,
  x1.13), and a socket's events take effect in order by construction.
- ``redis_connection``: the canvas scripts' pipelined connection reads the
  client's connection settings (``ConnectionPool.connection_kwargs`` and
  ``connection_class``) and the scripts' ``sha`` and ``script``: about half
  of a redis-py script call's CPU (``loadtest.redis_calls``).

``LIBRARIES`` is the range of each library this code was written for and
tested with. The hub checks the installed versions at start
(``check_versions``) and refuses to start outside it, unless
``HUB_ALLOW_UNTESTED_LIBRARIES=true`` (for whoever is checking a new release:
``make canary`` sets it and runs the suite).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

# Widen a range only after `make canary` passed on the new release.
LIBRARIES: dict[str, SpecifierSet] = {
    "python-engineio": SpecifierSet(">=4.13,<4.16"),
    "python-socketio": SpecifierSet(">=5.12,<5.19"),
    "redis": SpecifierSet(">=5.0.1,<8.3"),
}


class UntestedLibraryError(RuntimeError):
    """An installed library is outside the range the fenced code was written for."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    name: str
    installed: str | None  # None: not installed
    supported: SpecifierSet

    def __str__(self) -> str:
        found = "not installed" if self.installed is None else f"{self.installed} is installed"
        return f"{self.name} {self.supported} expected, {found}"


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(versions: dict[str, str | None] | None = None) -> list[Mismatch]:
    """The libraries whose installed version (or ``versions``) is outside ``LIBRARIES``."""
    out = []
    for name, supported in LIBRARIES.items():
        found = versions[name] if versions is not None else installed_version(name)
        try:
            fits = found is not None and Version(found) in supported
        except InvalidVersion:
            fits = False
        if not fits:
            out.append(Mismatch(name, found, supported))
    return out


def check_versions(*, allow_untested: bool = False) -> list[Mismatch]:
    """Raise ``UntestedLibraryError`` naming every library outside its range, unless
    ``allow_untested``; the mismatches either way (the caller may log them)."""
    found = mismatches()
    if found and not allow_untested:
        listed = "; ".join(str(m) for m in found)
        raise UntestedLibraryError(
            f"the hub relies on internals of libraries outside the versions it was written "
            f"for: {listed} (realtime/internals/). Install from requirements.lock, or set "
            "HUB_ALLOW_UNTESTED_LIBRARIES=true to start anyway and test that release"
        )
    return found
