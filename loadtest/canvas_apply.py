"""What applying one stroke patch costs, by canvas size, for one or more checkouts.

``python -m loadtest.canvas_apply [--root DIR ...] [--patches N]`` fills a
canvas with 10, 100, 1,000 and 5,000 strokes, then applies N one-op stroke
patches (an ``add`` that replaces an existing stroke, as the relay mix sends)
and prints the CPU microseconds per patch. Each root (a checkout, default
this one) runs in a process of its own, its ``canvas.document`` imported from
there, rounds alternating between roots (best of four), so a before/after
reads as a ratio from one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES = (10, 100, 1_000, 5_000)
ROUNDS = 4
STROKE = [[10 + 3 * i, 20 + 2 * i] for i in range(20)]


def measure(size: int, patches: int) -> float:
    """CPU microseconds per patch on a canvas of ``size`` strokes (this process's code)."""
    from canvas.document import Author, CanvasDocument, CanvasLimits, parse_ops

    limits = CanvasLimits(max_entries=100_000, max_canvas_bytes=10**9)

    def ops(n: int) -> list[dict[str, Any]]:
        value = {"type": "stroke", "points": STROKE, "t": n}
        return parse_ops([{"op": "add", "path": f"/elements/e{n % size}", "value": value}], limits)

    doc = CanvasDocument()
    for n in range(size):
        doc.apply(ops(n), Author.STUDENT, limits)
    batch = [ops(n) for n in range(patches)]
    gc.collect()
    gc.freeze()
    started = time.process_time()
    for patch in batch:
        doc.apply(patch, Author.STUDENT, limits)
    return (time.process_time() - started) * 1e6 / patches


def run_root(root: Path, size: int, patches: int) -> float:
    # ``measure`` comes from this file, ``canvas.document`` from ``root``.
    code = (
        f"import runpy, sys; sys.path.insert(0, {str(root)!r}); "
        f"print(runpy.run_path({__file__!r})['measure']({size}, {patches}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300
    )
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", action="append", type=Path, help="checkout (repeatable)")
    parser.add_argument("--patches", type=int, default=5_000)
    args = parser.parse_args()
    roots = [r.resolve() for r in args.root or [Path(__file__).resolve().parent.parent]]
    results: dict[str, dict[int, float]] = {str(r): {} for r in roots}
    for size in SIZES:
        best: dict[str, list[float]] = {str(r): [] for r in roots}
        for round_ in range(ROUNDS):
            for root in roots if round_ % 2 == 0 else reversed(roots):
                best[str(root)].append(run_root(root, size, args.patches))
        for root in roots:
            results[str(root)][size] = min(best[str(root)])
        line = ", ".join(f"{root}: {results[str(root)][size]:.1f} us" for root in roots)
        if len(roots) > 1:
            first = results[str(roots[0])][size]
            line += ", " + ", ".join(
                f"x{results[str(r)][size] / first:.3f} of the first" for r in roots[1:]
            )
        print(f"{size} strokes: {line}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
