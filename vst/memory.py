"""Handing freed memory back to the system, and sparing bulk work the cycle collector.

glibc's malloc keeps the pages of freed blocks inside its heap until something asks for
them back. A commit of many small files frees a file's bytes as soon as they are sealed,
while it keeps each file's small record for the end: the heap ends up with holes between
long-lived records, and their pages stay in the process's resident set. On the 50,000-file
benchmark its main heap held 26 MiB free of 39 at the end of the scan; ``malloc_trim``
gives those pages back (12 MiB of RSS). That is on purpose while the pipeline runs:
``vst.cli.app.tune_allocator`` keeps freed buffers in the heap, so that each chunk does
not fault its pages in again; ``release_free_memory`` is for when it has drained.
Elsewhere (another C library, another system) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import threading
from collections.abc import Callable, Iterator


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # this process's C library: glibc or not
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the pages of freed heap memory back to the system (glibc only)."""
    if _TRIM is not None:
        _TRIM(0)


_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextlib.contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block.

    A restore or a commit makes a few records a file, none of them in a cycle, and keeps
    them to the end: the collector traced them all again every few thousand allocations,
    0.13 s in all of a restore of 50,000 files, each time holding the GIL of the process
    that feeds the worker processes, which then waited (the restore took 2.72-2.76 s with
    it, 2.51-2.54 s without). The collector's first pass after the outermost block ends
    traces what it made once (about as long, but when nothing waits on it); ``gc.freeze``
    there would spare even that (0.03 to 0.06 s), but it would keep any cyclic garbage of
    the process for good, which a library call must not do. Blocks may nest, and overlap
    across threads."""
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
