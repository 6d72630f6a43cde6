"""The ingest pipeline: files in, stored objects out.

Stages, each named for what it does:

    read      small files are read whole by a worker; large files are read by the caller's
              thread in big sequential reads and cut into content-defined chunks
    hash      a worker computes each chunk's id (BLAKE3 releases the GIL)
    dedup     the worker skips sealing what the store already holds; the adding thread
              checks again, so a race costs a wasted compression, never a duplicate
    seal      the worker compresses (zstd releases the GIL) and frames the record
    pack      the adding thread appends records, in submission order, to the open pack
    write     full packs are written durably by the ObjectWriter's background thread

At most ``window`` jobs are in flight, which bounds memory to about window x 4 MiB.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO

from vst.errors import from_os_error
from vst.objects.chunking import Chunker, ChunkParams
from vst.objects.chunks import ChunkList
from vst.objects.ids import IdScheme
from vst.objects.odb import ObjectWriter
from vst.objects.oid import Oid
from vst.objects.seal import seal
from vst.objects.types import ObjectType

READ_SIZE = 8 * 1024 * 1024


@dataclass(slots=True)
class Stored:
    """What a file or byte string became. Filled in when its jobs have drained."""

    oid: Oid | None = None
    kind: ObjectType = ObjectType.BLOB
    size: int = 0
    chunks: list[tuple[Oid, int] | None] = field(default_factory=list)


Job = tuple[Oid, int, bytes | None]  # (id, plaintext size, record or None if already held)


class Ingest:
    """Use as a context manager; results are complete after ``finish()``.

    ``writer`` None computes ids without storing anything (``hash-object`` without ``-w``).
    """

    def __init__(self, params: ChunkParams, ids: IdScheme, writer: ObjectWriter | None,
                 compression_level: int = 3, workers: int | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.params = params
        self.ids = ids
        self.writer = writer
        self.level = compression_level
        self.chunker = Chunker(params)
        workers = workers or max(4, 2 * (os.cpu_count() or 1))
        self.window = 4 * workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vst-ingest")
        self._inflight: deque[tuple[Future[Job], Callable[[Job], None]]] = deque()
        self._large: list[Stored] = []
        self._on_bytes = on_bytes

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- stages -------------------------------------------------------------------------------

    def _hash_and_seal(self, kind: ObjectType, data: bytes | memoryview) -> Job:
        oid = self.ids.compute(kind, data)
        if self.writer is None or self.writer.contains(oid):
            return oid, len(data), None
        return oid, len(data), seal(oid, kind, data, self.level)

    def _read_and_seal(self, path: bytes) -> Job:
        return self._hash_and_seal(ObjectType.BLOB, read_whole(path))

    def _submit(self, job: Callable[[], Job], done: Callable[[Job], None]) -> None:
        while len(self._inflight) >= self.window:
            self._complete_oldest()
        self._inflight.append((self._pool.submit(job), done))

    def _complete_oldest(self) -> None:
        future, done = self._inflight.popleft()
        result = future.result()
        oid, size, record = result
        if record is not None and self.writer is not None:
            self.writer.add_record(oid, record)
        if self._on_bytes:
            self._on_bytes(size)
        done(result)

    # -- public -------------------------------------------------------------------------------

    def add_bytes(self, kind: ObjectType, data: bytes) -> Stored:
        stored = Stored(kind=kind)

        def done(job: Job) -> None:
            stored.oid, stored.size = job[0], job[1]

        self._submit(partial(self._hash_and_seal, kind, data), done)
        return stored

    def add_file(self, path: bytes, size_hint: int) -> Stored:
        """Store the regular file at ``path``. Small files are read by a worker; larger ones
        are chunked here. The stored size is what was read, whatever ``size_hint`` said."""
        if size_hint <= self.params.min:
            stored = Stored()

            def done(job: Job) -> None:
                stored.oid, stored.size = job[0], job[1]

            self._submit(partial(self._read_and_seal, path), done)
            return stored
        return self._add_large(path)

    def _add_large(self, path: bytes) -> Stored:
        stored = Stored()
        try:
            with open_nofollow(path) as f:
                self._add_chunks(stored, f)
        except OSError as exc:
            raise from_os_error(exc, f"cannot read '{os.fsdecode(path)}'") from exc
        return stored

    def _add_chunks(self, stored: Stored, stream: BinaryIO) -> None:
        for index, chunk in enumerate(self.chunker.split_stream(stream)):
            stored.chunks.append(None)
            self._submit(partial(self._hash_and_seal, ObjectType.BLOB, chunk),
                         _chunk_setter(stored, index))
        self._large.append(stored)

    def add_stream(self, stream: BinaryIO) -> Stored:
        """Store everything read from a binary stream (stdin for ``hash-object --stdin``)."""
        stored = Stored()
        self._add_chunks(stored, stream)
        return stored

    def finish(self) -> None:
        """Drain every job, then store the chunk lists of large files."""
        while self._inflight:
            self._complete_oldest()
        for stored in self._large:
            self._finish_large(stored)
        self._large.clear()

    def _finish_large(self, stored: Stored) -> None:
        pairs = [c for c in stored.chunks if c is not None]
        assert len(pairs) == len(stored.chunks), "chunk jobs still in flight"
        stored.size = sum(size for _, size in pairs)
        if len(pairs) == 1:
            stored.oid, stored.kind = pairs[0][0], ObjectType.BLOB
        elif not pairs:
            stored.oid, _, record = self._hash_and_seal(ObjectType.BLOB, b"")
            self._add(stored.oid, record)
            stored.kind = ObjectType.BLOB
        else:
            content = ChunkList.from_pairs(pairs).encode()
            stored.oid, _, record = self._hash_and_seal(ObjectType.CHUNKS, content)
            self._add(stored.oid, record)
            stored.kind = ObjectType.CHUNKS
        stored.chunks = []

    def _add(self, oid: Oid, record: bytes | None) -> None:
        if record is not None and self.writer is not None:
            self.writer.add_record(oid, record)


def _chunk_setter(stored: Stored, index: int) -> Callable[[Job], None]:
    def done(job: Job) -> None:
        stored.chunks[index] = (job[0], job[1])

    return done


def open_nofollow(path: bytes) -> BinaryIO:
    """Open a regular file for reading without following a symlink swapped in for it."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb", buffering=READ_SIZE)


def read_whole(path: bytes) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, f"cannot read '{os.fsdecode(path)}'") from exc
    try:
        parts = []
        while True:
            piece = os.read(fd, READ_SIZE)
            if not piece:
                break
            parts.append(piece)
        return b"".join(parts)
    except OSError as exc:
        raise from_os_error(exc, f"cannot read '{os.fsdecode(path)}'") from exc
    finally:
        os.close(fd)
