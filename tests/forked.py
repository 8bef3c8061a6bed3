"""What a hub forked from the test suite's preloaded fork server runs (``tests.processes``).

Kept to the standard library and the hub: the fork server imports this module
once, with the hub, and every forked hub starts from there.
"""

from __future__ import annotations

import os
from pathlib import Path


def serve(env: dict[str, str], log_path: Path, root: Path) -> None:
    """``python -m realtime serve --host 127.0.0.1 --port 0`` in this process, with
    exactly ``env`` as its environment and its output appended to ``log_path``."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(root)
    from realtime.cli import main

    main(["serve", "--host", "127.0.0.1", "--port", "0"])
