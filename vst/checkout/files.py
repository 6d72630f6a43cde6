"""The workers' side of a checkout: writing files and symlinks (permissions, extended
attributes, times) under a temporary name and renaming them into place, on a checkout's
threads or in worker processes (their init and job functions live here, so the fork server
preloads this module)."""

from __future__ import annotations

import itertools
import os
import signal
import stat
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from vst.checkout.paths import (
    _RETRIES,
    _join,
    _Missing,
    _parts,
    _rename_over,
    _shown,
    _unlink_quietly,
    _Walker,
)
from vst.errors import (
    CorruptObject,
    Interrupted,
    NotFound,
    ObjectMissing,
    Refused,
    VstError,
    WrongKey,
    from_os_error,
)
from vst.objects.chunks import ChunkRef
from vst.objects.ids import PLAIN_IDS
from vst.objects.index import Located, ObjectIndex
from vst.objects.odb import ObjectDatabase, VolumeRef
from vst.objects.oid import Oid
from vst.objects.seal import PLAIN, Sealing, unseal
from vst.objects.tree import TreeEntry
from vst.objects.types import MAX_OBJECT_SIZE, ObjectType
from vst.store import Store
from vst.workdir import TEMP_PREFIX

# Threads reading, verifying (decrypting) and writing the chunks of one large file: two
# keep both cores of a small machine busy on a single 1 GiB file.
LARGE_FILE_THREADS = 2
CHUNK_BATCH_BYTES = 4 * 1024 * 1024  # of a large file's chunks, read together
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
_USER_XATTR = "xattr.user."

# A directory; whether this checkout made it (a file there is created under its own name,
# nothing old being there to replace atomically); and what to put in it.
Group = tuple[bytes, bool, list[tuple[bytes, TreeEntry]]]


# -- the workers' side -------------------------------------------------------------------------


@dataclass(slots=True)
class _Done:
    stats: list[tuple[int, int]] = field(default_factory=list)  # (ctime_ns, ino) per entry
    written: int = 0
    notes: dict[str, str] = field(default_factory=dict)  # warnings, once per kind


class _Writer:
    """The workers' side: puts files and symlinks into directories that it reaches from the
    root by itself. Shared by a checkout's threads (one walker each); one per process."""

    def __init__(self, odb: ObjectDatabase, root_fd: int, root: str) -> None:
        self.odb = odb
        self.root_fd = root_fd
        self.root = root
        self.prefix = TEMP_PREFIX + os.urandom(4).hex().encode() + b"-"
        self.count = itertools.count()
        self.local = threading.local()
        self.walkers: list[_Walker] = []
        self.packs: dict[Oid, VolumeRef | None] = {}
        self.stop = threading.Event()

    def failure(self, exc: OSError, path: bytes) -> VstError:
        return from_os_error(exc, f"cannot write '{_shown(path)}' in '{self.root}'")

    def walker(self, generation: int) -> _Walker:
        # A new generation after every barrier: what the chain holds may have been replaced.
        local = self.local
        if getattr(local, "walker", None) is None:
            local.walker = _Walker(self.root_fd)
            self.walkers.append(local.walker)
        elif local.generation != generation:
            local.walker.reset()
        local.generation = generation
        return local.walker

    def write_files(self, generation: int, groups: list[Group],
                    located: list[Located] | None = None) -> _Done:
        """``located``: where the index says the files' objects are, when the caller
        looked them up already (``ObjectDatabase.locate_ahead``)."""
        done = _Done()
        walker = self.walker(generation)
        contents = iter(self.odb.read_many(
            [(e.oid, e.size) for _, _, items in groups for _, e in items], self.packs,
            located))
        for base, made, items in groups:
            try:
                dir_fd = walker.reach(_parts(base), create=False)
            except _Missing:
                raise NotFound(f"directory '{_shown(base)}' in '{self.root}' vanished while "
                               "it was restored") from None
            except OSError as exc:
                raise self.failure(exc, base) from exc
            for name, entry in items:
                path = _join(base, name)
                try:
                    data = self.content(path, entry, next(contents))
                    if entry.is_symlink:
                        st = self.put_symlink(dir_fd, name, path, entry, data)
                    else:
                        st = self.put_file(dir_fd, name, made, entry, data, done.notes)
                except OSError as exc:
                    raise self.failure(exc, path) from exc
                done.stats.append((st.st_ctime_ns, st.st_ino))
                done.written += len(data)
        return done

    def write_large(self, generation: int, base: bytes, made: bool, name: bytes,
                    entry: TreeEntry) -> _Done:
        """One file stored as a chunks object, written a chunk at a time."""
        path = _join(base, name)
        chunks = self.odb.read_chunk_list(entry.oid)
        if chunks.size != entry.size:
            raise CorruptObject(f"'{_shown(path)}': the tree says {entry.size} bytes, its "
                                f"chunks object {entry.oid} holds {chunks.size}")
        done = _Done(written=entry.size)
        try:
            dir_fd = self.walker(generation).reach(_parts(base), create=False)
            temp, fd = self.create(dir_fd, name, made)
            try:
                os.ftruncate(fd, entry.size)  # the size known up front: no growing by pieces
                self._write_chunks(fd, path, entry.oid, chunks.chunks)
                st = self.complete_file(dir_fd, fd, temp, name, entry, done.notes)
            except BaseException:
                _unlink_quietly(dir_fd, temp or name)
                raise
            finally:
                os.close(fd)
        except _Missing:
            raise NotFound(f"directory '{_shown(base)}' in '{self.root}' vanished while it "
                           "was restored") from None
        except OSError as exc:
            raise self.failure(exc, path) from exc
        done.stats.append((st.st_ctime_ns, st.st_ino))
        return done

    def _write_chunks(self, fd: int, path: bytes, chunks_oid: Oid,
                      chunks: Sequence[ChunkRef]) -> None:
        """Read, verify (and decrypt) the chunks of one file in LARGE_FILE_THREADS threads,
        a few chunks a read (one request to a store over SSH, one read of nearby records
        on a volume), each written at its offset: one large file no longer waits on one
        core. At most a few batches are held at once; every thread is done before this
        returns (the caller closes ``fd``), and the first failure stops the others."""
        failed = threading.Event()

        def put(batch: list[tuple[ChunkRef, int]]) -> None:
            if self.stop.is_set() or failed.is_set():
                raise Interrupted(f"stopped while writing '{_shown(path)}'")
            found = self.odb.read_many([(chunk.oid, chunk.size) for chunk, _ in batch],
                                       self.packs)
            for (chunk, offset), read in zip(batch, found, strict=True):
                # None: the caller's get() says what is wrong (another copy may serve it).
                kind, data = read or self.odb.get(chunk.oid)
                if kind != ObjectType.BLOB or len(data) != chunk.size:
                    raise CorruptObject(
                        f"'{_shown(path)}': chunk {chunk.oid} is a {kind.label} of "
                        f"{len(data)} bytes, chunks object {chunks_oid} says a blob of "
                        f"{chunk.size}")
                view = memoryview(data)
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written

        pending: deque[Future[None]] = deque()
        with ThreadPoolExecutor(LARGE_FILE_THREADS, thread_name_prefix="vst-chunks") as pool:
            try:
                for batch in _batches(chunks):
                    pending.append(pool.submit(put, batch))
                    if len(pending) >= 2 * LARGE_FILE_THREADS:
                        pending.popleft().result()
                while pending:
                    pending.popleft().result()
            except BaseException:
                failed.set()
                for future in pending:
                    future.cancel()
                raise

    def content(self, path: bytes, entry: TreeEntry,
                got: tuple[ObjectType, bytes] | None) -> bytes:
        """The entry's content, verified against its id, of the type and size it claims."""
        kind, data = got or self.odb.get(entry.oid)
        if kind != entry.kind:
            raise CorruptObject(f"'{_shown(path)}': object {entry.oid} is a {kind.label}, "
                                f"the tree says a {entry.kind.label}")
        if len(data) != entry.size:
            raise CorruptObject(f"'{_shown(path)}': the tree says {entry.size} bytes, "
                                f"object {entry.oid} holds {len(data)}")
        return data

    def put_file(self, dir_fd: int, name: bytes, made: bool, entry: TreeEntry, data: bytes,
                 notes: dict[str, str]) -> os.stat_result:
        temp, fd = self.create(dir_fd, name, made)
        try:
            written = os.write(fd, data)
            if written < len(data):
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view):]
            return self.complete_file(dir_fd, fd, temp, name, entry, notes)
        except BaseException:
            _unlink_quietly(dir_fd, temp or name)
            raise
        finally:
            os.close(fd)

    def create(self, dir_fd: int, name: bytes, made: bool) -> tuple[bytes | None, int]:
        """The file to write ``name``'s content to, and its temporary name (None: the file
        is ``name`` itself). In a directory this checkout made there is no old file for a
        reader to keep seeing, so the file is made under its own name (O_EXCL): no
        temporary name, no rename, a quarter of a small file's kernel time. Anything found
        there after all is replaced through a temporary name, as everywhere else."""
        if made:
            try:
                return None, os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                pass
        return self.create_temp(dir_fd)

    def complete_file(self, dir_fd: int, fd: int, temp: bytes | None, name: bytes,
                      entry: TreeEntry, notes: dict[str, str]) -> os.stat_result:
        """Mode, attributes and times on the written file, then (from a temporary name)
        into place."""
        os.fchmod(fd, _permissions(entry, notes))
        if entry.attrs:
            _set_xattrs(fd, entry, notes)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        if temp is not None:
            _rename_over(dir_fd, temp, name)
        return os.fstat(fd)  # after the rename, which changes the ctime

    def put_symlink(self, dir_fd: int, name: bytes, path: bytes, entry: TreeEntry,
                    target: bytes) -> os.stat_result:
        if not target or b"\0" in target:
            raise CorruptObject(f"'{_shown(path)}': invalid symlink target {target!r}")
        for _ in range(_RETRIES):
            temp = self.temp_name()
            try:
                os.symlink(target, temp, dir_fd=dir_fd)
                break
            except FileExistsError:
                continue
        else:
            raise Refused(f"cannot make a temporary name next to '{_shown(path)}'")
        try:
            os.utime(temp, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd,
                     follow_symlinks=False)
            _rename_over(dir_fd, temp, name)
        except BaseException:
            _unlink_quietly(dir_fd, temp)
            raise
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    def temp_name(self) -> bytes:
        return self.prefix + str(next(self.count)).encode()

    def create_temp(self, dir_fd: int) -> tuple[bytes, int]:
        for _ in range(_RETRIES):
            temp = self.temp_name()
            try:
                return temp, os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue
        raise Refused("cannot make a temporary file: every name tried is taken")

    def close(self) -> None:
        for walker in self.walkers:
            walker.reset()


def _permissions(entry: TreeEntry, notes: dict[str, str]) -> int:
    mode = stat.S_IMODE(entry.mode)
    if mode & _SETID:
        notes.setdefault("setid", "setuid/setgid bits are not restored")
        mode &= ~_SETID
    return mode


def _set_xattrs(fd: int, entry: TreeEntry, notes: dict[str, str]) -> None:
    # The user namespace only: trusted.*, security.* and system.* would let a tree grant
    # privileges or change access control.
    for key, value in entry.attrs:
        if key.startswith(_USER_XATTR):
            try:
                os.setxattr(fd, key[len("xattr."):], value)
            except OSError as exc:
                notes.setdefault("xattr", f"extended attributes not restored: {exc.strerror}")


_process_writer: _Writer | VstError | None = None


def _batches(chunks: Sequence[ChunkRef]) -> Iterator[list[tuple[ChunkRef, int]]]:
    """The chunks of a file with their offsets, a few at a time (up to CHUNK_BATCH_BYTES,
    at least one)."""
    batch: list[tuple[ChunkRef, int]] = []
    size = offset = 0
    for chunk in chunks:
        if batch and size + chunk.size > CHUNK_BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append((chunk, offset))
        size += chunk.size
        offset += chunk.size
    if batch:
        yield batch


def _process_init(store: str, index: str,
                  sealings: list[tuple[bytes, bytes | None, bytes | None]], spool: str,
                  root: str, identity: tuple[int, int]) -> None:
    """Runs once in each worker process: its own store handle and root descriptor, and
    the keys of the keyrings the parent opened."""
    global _process_writer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    opened = {portable[0]: Sealing.rebuilt(portable) for portable in sealings}

    def sealing(keyring: bytes) -> Sealing:
        if keyring not in opened:
            raise WrongKey(f"objects of keyring {keyring.hex()} are encrypted, and its key "
                           "was not opened")
        return opened[keyring]

    try:
        odb = ObjectDatabase(Store.open(store).volumes(), ObjectIndex(index, read_only=True),
                             PLAIN_IDS, spool_dir=spool, sealings=sealing)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(root_fd)
        if (st.st_dev, st.st_ino) != identity:
            raise Refused(f"'{root}' was replaced by another directory during the restore")
        _process_writer = _Writer(odb, root_fd, root)
    except VstError as exc:
        _process_writer = exc
    except OSError as exc:
        _process_writer = from_os_error(exc, f"cannot open directory '{root}'")


def _process_init_fetched(sealings: list[tuple[bytes, bytes | None, bytes | None]],
                          root: str, identity: tuple[int, int]) -> None:
    """``_process_init`` for a restore from a store over SSH: no store to open, the parent
    sends each job's sealed records along (``_process_job_fetched``)."""
    global _process_writer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(root_fd)
        if (st.st_dev, st.st_ino) != identity:
            raise Refused(f"'{root}' was replaced by another directory during the restore")
        opened = {portable[0]: Sealing.rebuilt(portable) for portable in sealings}
        _process_writer = _Writer(_Fetched(opened), root_fd, root)  # type: ignore[arg-type]
    except VstError as exc:
        _process_writer = exc
    except OSError as exc:
        _process_writer = from_os_error(exc, f"cannot open directory '{root}'")


def _process_job_fetched(generation: int, groups: list[Group],
                         records: dict[Oid, tuple[bytes, bytes | None]]) -> _Done:
    if not isinstance(_process_writer, _Writer):
        raise _process_writer or VstError("worker process not initialised")
    fetched = _process_writer.odb
    assert isinstance(fetched, _Fetched)
    fetched.records = records
    try:
        return _process_writer.write_files(generation, groups)
    finally:
        fetched.records = {}


class _Fetched:
    """What a worker process restoring from a store over SSH reads from: the sealed
    records of its current job, fetched by the parent, opened and verified here as the
    object database would."""

    def __init__(self, opened: dict[bytes, Sealing]) -> None:
        self.opened = opened
        self.records: dict[Oid, tuple[bytes, bytes | None]] = {}

    def read_many(self, wanted: list[tuple[Oid, int]], _packs: object,
                  _located: object = None) -> list[tuple[ObjectType, bytes] | None]:
        found: list[tuple[ObjectType, bytes] | None] = []
        for oid, size in wanted:
            try:
                read = self._open(oid, size)
            except VstError:
                read = None  # get() says what is wrong
            found.append(read if read is not None and len(read[1]) == size else None)
        return found

    def get(self, oid: Oid) -> tuple[ObjectType, bytes]:
        return self._open(oid, MAX_OBJECT_SIZE)

    def _open(self, oid: Oid, size: int) -> tuple[ObjectType, bytes]:
        if oid not in self.records:
            raise ObjectMissing(f"object {oid} not found")
        record, keyring = self.records[oid]
        if keyring is not None and keyring not in self.opened:
            raise WrongKey(f"objects of keyring {keyring.hex()} are encrypted, and its key "
                           "was not opened")
        sealing = self.opened[keyring] if keyring is not None else PLAIN
        return unseal(record, oid, sealing, "the records fetched", max_size=size)


def _process_job(generation: int, groups: list[Group]) -> _Done:
    if not isinstance(_process_writer, _Writer):
        raise _process_writer or VstError("worker process not initialised")
    writer = _process_writer
    # Every record of the job looked up, and each run of nearby ones asked of the volumes,
    # before the first is read: the disk reads the rest while the first files are written.
    located = writer.odb.locate_ahead([e.oid for _, _, items in groups for _, e in items],
                                      writer.packs)
    return writer.write_files(generation, groups, located)
