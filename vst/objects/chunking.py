"""Content-defined chunking (FastCDC through pyfastcdc's compiled build)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from vst.errors import UnsupportedFormat

KIB = 1024
MIB = 1024 * KIB


class ChunkParams(NamedTuple):
    """Chunker parameters. They are recorded in the store config: changing them would stop
    new data from deduplicating against old data, so a store keeps its parameters forever.

    ``avg`` is pyfastcdc's ``avg_size``, the normal-chunking target *past* ``min``: the
    resulting mean chunk is about ``min + avg`` (pyfastcdc docs, "cut-point skipping").
    """

    min: int = 256 * KIB
    avg: int = 768 * KIB
    max: int = 4 * MIB

    def problem(self) -> str | None:
        if not 64 <= self.min <= 1 * MIB:
            return "chunking.min must be within 64 B and 1 MiB"
        if not 256 <= self.avg <= 4 * MIB:
            return "chunking.avg must be within 256 B and 4 MiB"
        if not max(1024, self.min + self.avg) <= self.max <= 16 * MIB:
            return "chunking.max must be at least min + avg and at most 16 MiB"
        return None


_fastcdc: Any = None


def _fastcdc_class() -> Any:
    global _fastcdc
    if _fastcdc is None:
        try:
            from pyfastcdc.cy import FastCDC
        except ImportError as exc:  # the pure-Python fallback is ~300x slower: refuse it
            raise UnsupportedFormat(
                "pyfastcdc's compiled chunker is not installed (the pure-Python fallback is "
                f"too slow to use): {exc}") from None
        _fastcdc = FastCDC
    return _fastcdc


class Chunker:
    def __init__(self, params: ChunkParams) -> None:
        self.params = params
        self._cdc = _fastcdc_class()(params.avg, min_size=params.min, max_size=params.max)

    def split_stream(self, stream: BinaryIO) -> Iterator[bytes]:
        """Yield the chunks of ``stream`` as independent ``bytes`` objects.

        pyfastcdc reuses its read buffer, so each chunk is copied out before the next is
        cut; workers may hold on to it.
        """
        for chunk in self._cdc.cut_stream(stream):
            yield bytes(chunk.data)

    def split_buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        view = memoryview(data)
        for chunk in self._cdc.cut_buf(view):
            yield view[chunk.offset:chunk.offset + chunk.length]
