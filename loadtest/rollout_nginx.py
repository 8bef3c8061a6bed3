"""nginx in front of the rolling-restart drill, configured from ``docs/deploy/nginx.conf``.

The drill runs the documented config itself: only the ``upstream hubs`` server
lines (the drill's hub ports) and the ``listen`` line (a free loopback port)
are replaced, everything else is kept, so a change there is a change the drill
tests. nginx runs in the foreground as a child process, its error log on the
drill's own file.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from loadtest.procs import ROOT, free_port

DOCUMENTED_CONF = ROOT / "docs" / "deploy" / "nginx.conf"
NGINX = "/usr/sbin/nginx"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# One upstream server line of the documented config, and its listen line.
SERVER_LINE = re.compile(r"^[ \t]*server\s+127\.0\.0\.1:\d+(?P<params>[^;]*);[ \t]*$")
LISTEN_LINE = re.compile(r"^(?P<indent>[ \t]*)listen\s+127\.0\.0\.1:\d+;[ \t]*$")
UPSTREAM_LINE = re.compile(r"^[ \t]*upstream\s+hubs\s*\{")
# An error-log line: "2026/12/07 07:10:26 [error] 123#123: *45 connect() failed ..."
LOG_PREFIX = re.compile(r"^\S+ \S+ \[(?P<level>\w+)\] \d+#\d+: (\*\d+ )?")
LOG_CLIENT = re.compile(r", client: .*$")


def nginx_binary() -> str | None:
    """The nginx to run: ``/usr/sbin/nginx`` (Debian package ``nginx``), or one on PATH."""
    if Path(NGINX).is_file():
        return NGINX
    return shutil.which("nginx")


def drill_config(documented: str, hub_ports: list[int], listen_port: int) -> str:
    """``documented`` with the server lines of its ``upstream hubs`` block replaced by
    ``hub_ports`` and its ``listen`` by ``listen_port``; refuses a config whose shape
    it does not know (no upstream block, no server lines, not one listen line). Every
    hub gets the first server line's parameters (``max_fails=...``)."""
    out: list[str] = []
    in_upstream = servers_written = False
    listens = 0
    for line in documented.splitlines():
        if UPSTREAM_LINE.match(line):
            in_upstream = True
        elif in_upstream and line.strip() == "}":
            in_upstream = False
        server = SERVER_LINE.match(line) if in_upstream else None
        if server:
            if not servers_written:  # the drill's servers where the first one was, as it is
                indent, params = line[: len(line) - len(line.lstrip())], server.group("params")
                out += [f"{indent}server 127.0.0.1:{port}{params};" for port in hub_ports]
                servers_written = True
            continue
        listen = LISTEN_LINE.match(line)
        if listen:
            listens += 1
            line = f"{listen.group('indent')}listen 127.0.0.1:{listen_port};"
        out.append(line)
    if not servers_written:
        raise ValueError("expected 'server 127.0.0.1:PORT;' lines in an 'upstream hubs' block")
    if listens != 1:
        raise ValueError(f"expected one 'listen 127.0.0.1:PORT;' line, found {listens}")
    return "\n".join(out) + "\n"


@dataclass
class Nginx:
    """An nginx master process in the foreground, serving ``url``."""

    url: str
    prefix: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)
    exit_code: int | None = None

    def log_summary(self) -> dict[str, int]:
        """The error log's lines by level and message (time, pid, connection and
        client cut off), so that repeats count as one kind."""
        counts: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = LOG_PREFIX.match(line)
            text = line[match.end() :] if match else line
            text = LOG_CLIENT.sub("", text)[:200]
            key = f"[{match.group('level')}] {text}" if match else text
            counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self) -> int | None:
        """SIGQUIT (a graceful stop), then SIGKILL after ``STOP_TIMEOUT_S``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
        try:
            self.exit_code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self._log.close()
        return self.exit_code


def start_nginx(
    binary: str, workdir: Path, hub_ports: list[int], source: Path = DOCUMENTED_CONF
) -> Nginx:
    """nginx on a free loopback port in front of ``hub_ports``, with the config of
    ``source`` (the documented one by default); waits until it answers (any status:
    the hubs may not be up yet)."""
    prefix = workdir / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)  # the config's temp paths
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(drill_config(source.read_text(), hub_ports, port))
    log_path = prefix / "error.log"
    log = log_path.open("ab")
    try:
        # -e: the error log before the config is read (nginx's default path may not be writable).
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    except BaseException:
        log.close()
        raise
    nginx = Nginx(f"http://127.0.0.1:{port}", prefix, process, log_path, log)
    try:
        _wait_answering(nginx)
    except BaseException:
        nginx.stop()
        raise
    return nginx


def _wait_answering(nginx: Nginx) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if nginx.process.poll() is not None:
            raise RuntimeError(
                f"nginx exited with {nginx.process.returncode} while starting:\n"
                f"{nginx.log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{nginx.url}/healthz", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # nginx answered (a 502 while no hub is up)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not answer on {nginx.url} within {START_TIMEOUT_S} s")
        time.sleep(0.05)
