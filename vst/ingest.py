"""The ingest pipeline: files in, stored objects out.

Stages, each named for what it does:

    read     small files are read whole by a worker; large files are read by the adding
             thread in big sequential reads and cut into content-defined chunks
    hash     a worker computes each object's id (BLAKE3 releases the GIL)
    dedup    the adding thread asks the index about a batch of ids in one query, so the
             cost per object is a set lookup, not a database round trip
    seal     a worker compresses (zstd releases the GIL) and frames what is new
    pack     the adding thread appends sealed records to the open pack
    write    full packs are written durably by the ObjectWriter's background thread

At most ``window`` jobs are in each of the hash and seal stages, and a dedup batch holds at
most ``BATCH_BYTES``, which bounds memory whatever the size of the input.
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
BATCH_COUNT = 512
BATCH_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Stored:
    """What a file or byte string became. Complete once ``Ingest.finish`` returns."""

    oid: Oid | None = None
    kind: ObjectType = ObjectType.BLOB
    size: int = 0
    chunks: list[tuple[Oid, int] | None] = field(default_factory=list)


Hashed = tuple[Oid, ObjectType, bytes]
Done = Callable[[Oid, int], None]


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
        # Reads of small files wait on the disk, not the CPU: more threads than cores keep
        # a cold disk busy.
        workers = workers or max(8, 4 * (os.cpu_count() or 1))
        self.window = 2 * workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vst-ingest")
        self._hashing: deque[tuple[Future[Hashed], Done]] = deque()
        self._batch: list[tuple[Hashed, Done]] = []
        self._batch_bytes = 0
        self._sealing: deque[Future[tuple[Oid, bytes]]] = deque()
        self._large: list[Stored] = []
        self._on_bytes = on_bytes

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- stages -------------------------------------------------------------------------------

    def _hash(self, kind: ObjectType, data: bytes) -> Hashed:
        return self.ids.compute(kind, data), kind, data

    def _read_and_hash(self, path: bytes, size_hint: int) -> Hashed:
        return self._hash(ObjectType.BLOB, read_whole(path, size_hint))

    def _seal(self, oid: Oid, kind: ObjectType, data: bytes) -> tuple[Oid, bytes]:
        return oid, seal(oid, kind, data, self.level)

    def _submit(self, job: Callable[[], Hashed], done: Done) -> None:
        while len(self._hashing) >= self.window:
            self._complete_hash()
        self._hashing.append((self._pool.submit(job), done))

    def _complete_hash(self) -> None:
        future, done = self._hashing.popleft()
        hashed = future.result()
        self._batch.append((hashed, done))
        self._batch_bytes += len(hashed[2])
        if len(self._batch) >= BATCH_COUNT or self._batch_bytes >= BATCH_BYTES:
            self._dedup()

    def _dedup(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        missing = self.writer.missing(h[0] for h, _ in batch) if self.writer else set()
        for (oid, kind, data), done in batch:
            if oid in missing:
                missing.discard(oid)  # a duplicate later in the batch is sealed only once
                while len(self._sealing) >= self.window:
                    self._complete_seal()
                self._sealing.append(self._pool.submit(self._seal, oid, kind, data))
            if self._on_bytes:
                self._on_bytes(len(data))
            done(oid, len(data))

    def _complete_seal(self) -> None:
        oid, record = self._sealing.popleft().result()
        assert self.writer is not None
        self.writer.add_record(oid, record)

    # -- public -------------------------------------------------------------------------------

    def add_bytes(self, kind: ObjectType, data: bytes) -> Stored:
        stored = Stored(kind=kind)
        self._submit(partial(self._hash, kind, data), partial(_set_result, stored))
        return stored

    def add_file(self, path: bytes, size_hint: int) -> Stored:
        """Store the regular file at ``path``. Small files are read by a worker; larger ones
        are chunked here. The stored size is what was read, whatever ``size_hint`` said."""
        if size_hint <= self.params.min:
            stored = Stored()
            self._submit(partial(self._read_and_hash, path, size_hint),
                         partial(_set_result, stored))
            return stored
        stored = Stored()
        try:
            with open_nofollow(path) as f:
                self._add_chunks(stored, f)
        except OSError as exc:
            raise from_os_error(exc, f"cannot read '{os.fsdecode(path)}'") from exc
        return stored

    def add_stream(self, stream: BinaryIO) -> Stored:
        """Store everything read from a binary stream (stdin for ``hash-object --stdin``)."""
        stored = Stored()
        self._add_chunks(stored, stream)
        return stored

    def _add_chunks(self, stored: Stored, stream: BinaryIO) -> None:
        for index, chunk in enumerate(self.chunker.split_stream(stream)):
            stored.chunks.append(None)
            self._submit(partial(self._hash, ObjectType.BLOB, chunk),
                         partial(_set_chunk, stored, index))
        self._large.append(stored)

    def finish(self) -> None:
        """Drain every stage, then store the chunk lists of large files."""
        while self._hashing:
            self._complete_hash()
        self._dedup()
        while self._sealing:
            self._complete_seal()
        for stored in self._large:
            self._finish_large(stored)
        self._large.clear()

    def _finish_large(self, stored: Stored) -> None:
        pairs = [c for c in stored.chunks if c is not None]
        assert len(pairs) == len(stored.chunks), "chunk jobs still in flight"
        stored.chunks = []
        stored.size = sum(size for _, size in pairs)
        if len(pairs) == 1:
            stored.oid, stored.kind = pairs[0][0], ObjectType.BLOB
            return
        if pairs:
            stored.kind, content = ObjectType.CHUNKS, ChunkList.from_pairs(pairs).encode()
        else:  # the file shrank to nothing while we read it
            stored.kind, content = ObjectType.BLOB, b""
        if self.writer is not None:
            stored.oid = self.writer.put(stored.kind, content)
        else:
            stored.oid = self.ids.compute(stored.kind, content)


def _set_result(stored: Stored, oid: Oid, size: int) -> None:
    stored.oid, stored.size = oid, size


def _set_chunk(stored: Stored, index: int, oid: Oid, size: int) -> None:
    stored.chunks[index] = (oid, size)


def open_nofollow(path: bytes) -> BinaryIO:
    """Open a regular file for reading without following a symlink swapped in for it."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb", buffering=READ_SIZE)


def read_whole(path: bytes, size_hint: int = 0) -> bytes:
    """Read a whole (small) file. The first read asks for one byte more than the expected
    size, so an unchanged file takes one read plus the one that sees EOF, and no read
    allocates far more than the file needs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, f"cannot read '{os.fsdecode(path)}'") from exc
    try:
        parts = []
        want = size_hint + 1
        while True:
            piece = os.read(fd, want)
            if not piece:
                break
            parts.append(piece)
            want = 1024 * 1024
        return parts[0] if len(parts) == 1 else b"".join(parts)
    except OSError as exc:
        raise from_os_error(exc, f"cannot read '{os.fsdecode(path)}'") from exc
    finally:
        os.close(fd)
