"""Handing the heap's free pages back to the operating system (glibc's ``malloc_trim``)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def heap_trimmer() -> Callable[[], None] | None:
    """A call that returns the free pages of the C heap to the system, or None where
    the C library has no ``malloc_trim`` (it is glibc's: not musl, macOS, Windows).

    What a burst frees stays in the process otherwise: a class joining at once
    opens and closes dozens of SQLite connections (about 150 KB each) and makes
    every request's objects, and glibc keeps the pages they leave free inside its
    heap. At 120 clients joining, 6-7 MiB of RSS came back (docs/benchmarks.md).
    Python's own small-object arenas are unaffected: they are freed when empty.
    """
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows wants a library's name
        return None
    malloc_trim = getattr(libc, "malloc_trim", None)
    if malloc_trim is None:
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int

    def trim() -> None:
        malloc_trim(0)  # 0: keep no spare room at the top of the heap

    return trim
