"""vst.memory: freed heap memory goes back to the system when asked."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

import vst.memory

_PROGRAM = """
import sys
from vst.memory import release_free_memory

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

# 40 MiB of blocks with a smaller survivor after each (what a commit's freed file buffers
# and kept records look like): freeing the blocks leaves holes the heap cannot shrink past.
blocks, survivors = [], []
for _ in range(400):
    blocks.append(b"x" * 100_000)
    survivors.append(b"y" * 20_000)
del blocks
before = rss_kib()
release_free_memory()
print(before - rss_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_blocks_between_survivors_are_given_back() -> None:
    if vst.memory._TRIM is None:
        pytest.skip("not glibc")
    freed = int(subprocess.run([sys.executable, "-c", _PROGRAM], check=True,
                               capture_output=True, text=True).stdout)
    assert freed > 20 * 1024, f"only {freed} KiB given back"


def test_release_is_harmless_anywhere() -> None:
    vst.memory.release_free_memory()
    vst.memory.release_free_memory()


def test_cycle_collection_is_paused_and_comes_back() -> None:
    assert gc.isenabled()
    with vst.memory.cycle_collection_paused():
        assert not gc.isenabled()
        with vst.memory.cycle_collection_paused():  # nested
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_cycle_collection_stays_off_if_it_was() -> None:
    gc.disable()
    try:
        with vst.memory.cycle_collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_across_threads() -> None:
    first, second = vst.memory.cycle_collection_paused(), vst.memory.cycle_collection_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the other is still on
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_an_exception_inside_still_restores_it() -> None:
    with pytest.raises(KeyError), vst.memory.cycle_collection_paused():
        raise KeyError
    assert gc.isenabled()
