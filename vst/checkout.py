"""Writing tree contents into a local directory: the one engine under clone, restore and pull.

It never writes outside its root (invariant 6), whatever the store holds and whatever
another process does to the directory meanwhile:

- Every path component is checked with ``name_problem`` before anything is touched: the
  caller's paths and, again, every entry of every tree read from the store.
- The root is opened once; everything below it is reached from that descriptor one
  component at a time with O_NOFOLLOW, so a symlink is never followed, whoever put it there
  and whenever. A symlink or file where the caller's path needs a parent directory is
  refused; one where a tree has a directory is removed (never followed) and replaced.
- Files and symlinks are made under a temporary name (O_EXCL|O_NOFOLLOW) in their own
  directory and renamed over the target: a reader sees the old or the new, never half.
  No fsync: the store holds the data, and restic does not fsync restores either.

Worker processes reach the root again by path and refuse to work if it is not the very
directory (device and inode) the caller opened; below it they walk on their own, the same way.

Speed: the calling thread walks trees and makes directories; workers write files, many
small files to a job (one read per run of neighbouring records in a pack), a large file (a
chunks object) a chunk at a time; the bytes held by jobs in flight are bounded. Small files
go to worker processes once there are many (PROCESS_THRESHOLD), as in ingest: threads of
one process spend most of their time handing the GIL to each other (20,000 files of 5 KiB
on 2 cores, cold cache, a busy shared disk: 3.3 s with one thread, 3.6 to 4.4 s with four,
0.9 to 2.0 s with two processes; restic 2.0 to 2.4 s). Hard links are made and directory
modes and times set last, in ``finish``, bottom-up: writing into a directory changes its
mtime. What the workers meet is raised by ``finish``; ``on_bytes`` and ``warn`` are called
on the caller's thread only.
"""

from __future__ import annotations

import errno
import itertools
import multiprocessing
import os
import signal
import stat
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial

from vst.errors import CorruptObject, Interrupted, NotFound, Refused, VstError, from_os_error
from vst.objects.ids import IdScheme
from vst.objects.index import ObjectIndex
from vst.objects.odb import ObjectDatabase, VolumeRef, pack_name
from vst.objects.oid import Oid
from vst.objects.seal import read_header, unseal
from vst.objects.tree import TreeEntry, name_problem
from vst.objects.types import ObjectType
from vst.store import Store

MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024
JOB_BYTES = 2 * 1024 * 1024  # content one job of small files holds (a large file: a chunk)
JOB_FILES = 128
PROCESS_THRESHOLD = 1024  # small files queued before worker processes start (~0.1 s)
PROCESSES_PER_CORE = 1  # 2 per core: the same speed or slower, and 3x the kernel time
MAX_CHAIN = 64  # directory descriptors a walker keeps open (a tree may nest 1,000 deep)
SPAN_GAP = 256 * 1024  # records this close in a pack are read together...
SPAN_MAX = 8 * 1024 * 1024  # ...up to this much at once
TEMP_PREFIX = b".vst-tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
_RETRIES = 8  # attempts against a directory entry that keeps changing under us
_USER_XATTR = "xattr.user."

Group = tuple[bytes, list[tuple[bytes, TreeEntry]]]  # a directory, and what to put in it


@dataclass(frozen=True, slots=True)
class Placed:
    """One entry as it landed: ``ctime_ns`` and ``ino`` are its lstat once complete."""

    path: bytes  # relative to the root, b"/"-separated, never empty
    entry: TreeEntry  # the tree entry as written (size = bytes actually written)
    ctime_ns: int
    ino: int


def _shown(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _join(base: bytes, name: bytes) -> bytes:
    return base + b"/" + name if base else name


def _parts(path: bytes) -> list[bytes]:
    return path.split(b"/") if path else []


def split_path(path: bytes) -> list[bytes]:
    """The components of a relative ``b"/"``-separated path; Refused if any is unsafe."""
    if path.startswith(b"/"):
        raise Refused(f"refusing absolute path '{_shown(path)}'")
    parts = path.split(b"/")
    for part in parts:
        problem = name_problem(part)
        if problem:
            raise Refused(f"refusing path '{_shown(path)}': {problem}")
    return parts


class _Missing(Exception):
    """A directory on the way does not exist (and was not to be made)."""


# -- reaching directories, removing what is in the way -------------------------------------


class _Walker:
    """Reaches directories below the root one component at a time, never following a
    symlink. The chain of the last directory reached (and its ancestors) stays open, so a
    tree walked in order opens each directory once; only the deepest MAX_CHAIN stay open."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.names: list[bytes] = []
        self.fds: list[int | None] = []

    def reach(self, parts: list[bytes], *, create: bool, replace_last: bool = False) -> int:
        """A descriptor for directory ``parts`` (borrowed: valid until the next call).
        ``replace_last``: a file or symlink there is removed to make way for a directory."""
        keep = 0
        limit = min(len(parts), len(self.names))
        while keep < limit and self.names[keep] == parts[keep]:
            keep += 1
        self._truncate(keep)
        start = keep
        while start and self.fds[start - 1] is None:
            start -= 1
        fd = self.fds[start - 1] if start else self.root_fd
        assert fd is not None
        for i in range(start, len(parts)):
            fd = self._open(fd, parts, i, create, replace_last and i == len(parts) - 1)
            if i < keep:
                self.fds[i] = fd
            else:
                self.names.append(parts[i])
                self.fds.append(fd)
        for i in range(len(self.fds) - MAX_CHAIN):
            old = self.fds[i]
            if old is not None:
                os.close(old)
                self.fds[i] = None
        return fd

    def _open(self, parent: int, parts: list[bytes], i: int, create: bool,
              replace: bool) -> int:
        name = parts[i]
        for _ in range(_RETRIES):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise _Missing from None
                try:
                    os.mkdir(name, 0o777, dir_fd=parent)  # the umask applies, as for mkdir -p
                except FileExistsError:
                    pass
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                if not replace:
                    raise _refuse(parent, parts, i) from None
                _remove_entry(parent, name)
                continue
            if replace:
                _make_writable(fd)
            return fd
        raise Refused(f"'{_shown(b'/'.join(parts[:i + 1]))}' keeps changing; giving up")

    def _truncate(self, keep: int) -> None:
        for fd in self.fds[keep:]:
            if fd is not None:
                os.close(fd)
        del self.names[keep:], self.fds[keep:]

    def forget(self, parts: list[bytes]) -> None:
        """Drop ``parts`` and below from the chain: it is about to be removed."""
        if self.names[:len(parts)] == parts:
            self._truncate(len(parts) - 1)

    def reset(self) -> None:
        self._truncate(0)


def _refuse(parent: int, parts: list[bytes], i: int) -> Refused:
    try:
        link = stat.S_ISLNK(os.stat(parts[i], dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        link = False
    return Refused(f"refusing to write below '{_shown(b'/'.join(parts[:i + 1]))}': it is "
                   f"{'a symbolic link' if link else 'not a directory'}",
                   hint="move it out of the way first")


def _make_writable(fd: int) -> None:
    """A restored read-only directory is restored into again: its final mode is set in
    finish(), so it may be opened up meanwhile (root needs no such thing)."""
    euid = os.geteuid()
    if euid:
        st = os.fstat(fd)
        if st.st_uid == euid and st.st_mode & 0o700 != 0o700:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)


def _remove_entry(parent: int, name: bytes | str) -> None:
    """Remove whatever is at ``name``: a directory recursively, never following a symlink."""
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):
        _remove_tree(parent, name)


def _remove_tree(parent: int, name: bytes | str) -> None:
    # An explicit stack of open directories, not recursion: a tree may nest very deep.
    try:
        top = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        os.unlink(name, dir_fd=parent)  # it became a file or symlink meanwhile
        return
    # (parent, name, descriptor, subdirectories left to remove, times listed)
    stack: list[tuple[int, bytes | str, int, list[str], list[int]]] = [
        (parent, name, top, [], [0])]
    try:
        while stack:
            up, dir_name, fd, subdirs, listed = stack[-1]
            if not subdirs:
                if listed[0] == _RETRIES:
                    raise Refused("a directory to remove keeps filling up; giving up")
                listed[0] += 1
                subdirs.extend(_remove_files(fd))
                if not subdirs:
                    stack.pop()
                    os.close(fd)
                    try:
                        os.rmdir(dir_name, dir_fd=up)
                    except FileNotFoundError:
                        pass
                    continue
            sub = subdirs.pop()
            try:
                stack.append((fd, sub, os.open(sub, _DIR_FLAGS, dir_fd=fd), [], [0]))
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                os.unlink(sub, dir_fd=fd)
    finally:
        for _, _, fd, _, _ in reversed(stack):
            os.close(fd)


def _remove_files(fd: int) -> list[str]:
    """Unlink everything in directory ``fd`` but its subdirectories; returns those."""
    subdirs = []
    with os.scandir(fd) as it:
        for child in it:
            if child.is_dir(follow_symlinks=False):
                subdirs.append(child.name)
                continue
            try:
                os.unlink(child.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                subdirs.append(child.name)
    return subdirs


def _rename_over(dir_fd: int, temp: bytes, name: bytes) -> None:
    """Rename ``temp`` over ``name``; a directory in the way is removed first."""
    for _ in range(_RETRIES):
        try:
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) \
                    or not _is_dir(dir_fd, name):
                raise
            _remove_tree(dir_fd, name)
    raise Refused(f"'{_shown(name)}' keeps changing; giving up")


def _is_dir(dir_fd: int, name: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_quietly(dir_fd: int, name: bytes) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


# -- the workers' side -------------------------------------------------------------------------


def read_many(odb: ObjectDatabase, wanted: list[tuple[Oid, int]],
              packs: dict[Oid, VolumeRef | None]) -> list[tuple[ObjectType, bytes] | None]:
    """Objects (id, expected size) read and verified as ``odb.get`` does, but with one read
    per run of nearby records in a pack instead of an open and a read per object (half the
    cost of a small file's read). None where the caller should ask ``odb.get``, which tries
    the other copies and reports what is wrong; so is an object of another size than
    expected, before it is decompressed: what a job holds stays what its sizes say (a
    record may claim up to 256 MiB). ``packs`` caches which volume holds each pack."""
    oids = [oid for oid, _ in wanted]
    found: list[tuple[ObjectType, bytes] | None] = [None] * len(oids)
    located = []
    for number, oid in enumerate(oids):
        location = odb.index.lookup(oid)
        if location is not None:
            located.append((location.pack.raw, location.offset, location.length, number))
    located.sort()
    start = 0
    while start < len(located):
        pack_raw, first, length, _ = located[start]
        end, stop = first + length, start + 1
        while stop < len(located) and located[stop][0] == pack_raw \
                and located[stop][1] <= end + SPAN_GAP \
                and located[stop][1] + located[stop][2] - first <= SPAN_MAX:
            end = max(end, located[stop][1] + located[stop][2])
            stop += 1
        pack = Oid(pack_raw)
        if pack not in packs:
            held_by = odb.index.pack_volumes(pack)
            packs[pack] = next((v for v in odb.volumes if v.volume_id in held_by), None)
        volume = packs[pack]
        if volume is not None:
            try:
                data = memoryview(volume.backend.load(pack_name(pack), first, end - first))
                for _, offset, size, number in located[start:stop]:
                    record = data[offset - first:offset - first + size]
                    if read_header(record, "").plain_size == wanted[number][1]:
                        found[number] = unseal(record, oids[number], odb.ids, "")
            except VstError:
                pass
        start = stop
    return found


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

    def write_files(self, generation: int, groups: list[Group]) -> _Done:
        done = _Done()
        walker = self.walker(generation)
        contents = iter(read_many(
            self.odb, [(e.oid, e.size) for _, items in groups for _, e in items], self.packs))
        for base, items in groups:
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
                        st = self.put_file(dir_fd, name, entry, data, done.notes)
                except OSError as exc:
                    raise self.failure(exc, path) from exc
                done.stats.append((st.st_ctime_ns, st.st_ino))
                done.written += len(data)
        return done

    def write_large(self, generation: int, base: bytes, name: bytes, entry: TreeEntry
                    ) -> _Done:
        """One file stored as a chunks object, written a chunk at a time."""
        path = _join(base, name)
        chunks = self.odb.read_chunk_list(entry.oid)
        if chunks.size != entry.size:
            raise CorruptObject(f"'{_shown(path)}': the tree says {entry.size} bytes, its "
                                f"chunks object {entry.oid} holds {chunks.size}")
        done = _Done(written=entry.size)
        try:
            dir_fd = self.walker(generation).reach(_parts(base), create=False)
            temp, fd = self.create_temp(dir_fd)
            try:
                os.ftruncate(fd, entry.size)  # the size known up front: no growing by pieces
                for chunk in chunks.chunks:
                    if self.stop.is_set():
                        raise Interrupted(f"stopped while writing '{_shown(path)}'")
                    kind, data = self.odb.get(chunk.oid)
                    if kind != ObjectType.BLOB or len(data) != chunk.size:
                        raise CorruptObject(
                            f"'{_shown(path)}': chunk {chunk.oid} is a {kind.label} of "
                            f"{len(data)} bytes, chunks object {entry.oid} says a blob of "
                            f"{chunk.size}")
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                st = self.complete_file(dir_fd, fd, temp, name, entry, done.notes)
            except BaseException:
                _unlink_quietly(dir_fd, temp)
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

    def put_file(self, dir_fd: int, name: bytes, entry: TreeEntry, data: bytes,
                 notes: dict[str, str]) -> os.stat_result:
        temp, fd = self.create_temp(dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            return self.complete_file(dir_fd, fd, temp, name, entry, notes)
        except BaseException:
            _unlink_quietly(dir_fd, temp)
            raise
        finally:
            os.close(fd)

    def complete_file(self, dir_fd: int, fd: int, temp: bytes, name: bytes,
                      entry: TreeEntry, notes: dict[str, str]) -> os.stat_result:
        """Mode, attributes and times on the written temporary file, then into place."""
        os.fchmod(fd, _permissions(entry, notes))
        if entry.attrs:
            _set_xattrs(fd, entry, notes)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
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


def _process_init(store: str, index: str, id_key: bytes | None, spool: str, root: str,
                  identity: tuple[int, int]) -> None:
    """Runs once in each worker process: its own store handle and root descriptor."""
    global _process_writer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    try:
        odb = ObjectDatabase(Store.open(store).volumes(), ObjectIndex(index, read_only=True),
                             IdScheme(id_key), spool_dir=spool)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(root_fd)
        if (st.st_dev, st.st_ino) != identity:
            raise Refused(f"'{root}' was replaced by another directory during the restore")
        _process_writer = _Writer(odb, root_fd, root)
    except VstError as exc:
        _process_writer = exc
    except OSError as exc:
        _process_writer = from_os_error(exc, f"cannot open directory '{root}'")


def _process_job(generation: int, groups: list[Group]) -> _Done:
    if not isinstance(_process_writer, _Writer):
        raise _process_writer or VstError("worker process not initialised")
    return _process_writer.write_files(generation, groups)


# -- the caller's side -------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    groups: list[Group] = field(default_factory=list)
    size: int = 0
    files: int = 0


class Checkout:
    """Writes tree entries below ``root``. Use as a context manager and call ``finish``;
    leaving without it (an error) stops the workers and removes the temporary files it
    made (files already renamed into place stay). ``processes``: allow worker processes
    for many small files."""

    def __init__(self, store: Store, root: str, *,
                 on_bytes: Callable[[int], None] | None = None,
                 warn: Callable[[str], None] = lambda _: None,
                 threads: int | None = None, processes: bool = True) -> None:
        self.store = store
        self.odb = store.odb
        self.root = os.path.abspath(root)  # worker processes open it again, maybe elsewhere
        self.on_bytes = on_bytes
        self.warn = warn
        try:
            # The root itself may be reached through a symlink: the caller named it.
            self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise from_os_error(exc, f"cannot open directory '{root}'") from exc
        self._writer = _Writer(self.odb, self._root_fd, self.root)
        self._walker = _Walker(self._root_fd)
        self._cores = os.cpu_count() or 1
        self._threads = threads or 2 * self._cores
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="vst-checkout")
        self._processes: ProcessPoolExecutor | None = None
        self._use_processes = processes
        self._small = 0  # small files handed to workers so far
        self._generation = 0
        self._inflight: deque[tuple[Future[_Done], int, _Job]] = deque()
        self._held = 0
        self._job = _Job()
        self._placed: dict[bytes, Placed] = {}
        self._links: list[tuple[bytes, TreeEntry, bytes]] = []
        self._dirs: dict[bytes, TreeEntry] = {}  # modes and times to set in finish()
        self._top: set[bytes] = set()  # paths passed to write()
        self._above: set[bytes] = set()  # and their parents
        self._warned: set[str] = set()
        self._error: VstError | None = None  # the first a worker met: raised by finish()
        self._closed = False

    def __enter__(self) -> Checkout:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self._close(abort=True)

    # -- the operations ------------------------------------------------------------------------

    def write(self, path: bytes, entry: TreeEntry) -> None:
        """Put ``entry`` at ``path``: a file, a symlink, or a directory and its whole
        subtree (overlaid: what is there and the tree does not name is left alone). Whatever
        is at ``path`` is replaced; missing parents are made; a parent that is a symlink or
        not a directory is refused (Refused, here). The work may still be running when this
        returns: what the workers meet (a missing or corrupt object...) is raised by finish()."""
        self._check_open()
        parts = split_path(path)
        named = TreeEntry(parts[-1], entry.mode, entry.kind, entry.oid, entry.size,
                          entry.mtime_ns, entry.attrs)
        problem = named.problem()
        if problem:
            raise CorruptObject(f"'{_shown(path)}': {problem}")
        try:
            self._write(path, parts, entry)
        except OSError as exc:
            raise self._writer.failure(exc, path) from exc

    def remove(self, path: bytes) -> bool:
        """Remove the file or symlink at ``path`` (never following it), or the directory if
        it is empty; False when there was nothing to remove or the directory was not empty."""
        self._check_open()
        parts = split_path(path)
        try:
            return self._remove(path, parts)
        except OSError as exc:
            raise from_os_error(exc, f"cannot remove '{_shown(path)}' in '{self.root}'") \
                from exc

    def finish(self) -> list[Placed]:
        """Wait for every write, make hard links, set directory modes and times (bottom-up),
        and return every entry placed, sorted by path."""
        self._check_open()
        try:
            for step in (self._flush, self._drain, self._make_links, self._flush, self._drain):
                step()
                if self._error is not None:
                    raise self._error
            self._set_directories()
        except OSError as exc:
            self._close(abort=True)
            raise from_os_error(exc, f"cannot finish the restore in '{self.root}'") from exc
        except BaseException:
            self._close(abort=True)
            raise
        self._close(abort=False)
        return sorted(self._placed.values(), key=lambda p: p.path)

    # -- writing -------------------------------------------------------------------------------

    def _write(self, path: bytes, parts: list[bytes], entry: TreeEntry) -> None:
        if self._error is not None:
            return  # a worker failed: finish() raises that, and nothing more is worth doing
        if self._touches_earlier(parts):
            self._barrier()
            self._forget(path)
        self._top.add(path)
        self._above.update(b"/".join(parts[:i]) for i in range(1, len(parts)))
        self._walker.reach(parts[:-1], create=True)  # made here: workers only reach
        if entry.is_dir:
            self._walk(path, entry)
        else:
            self._queue(b"/".join(parts[:-1]), parts[-1], entry)

    def _touches_earlier(self, parts: list[bytes]) -> bool:
        """Does ``parts`` overlap an earlier write (the same path, above or below it)?"""
        path = b"/".join(parts)
        if path in self._top or path in self._above:
            return True
        return any(b"/".join(parts[:i]) in self._top for i in range(1, len(parts)))

    def _barrier(self) -> None:
        # Work queued for an earlier write at, above or below a path lands before the path
        # is replaced or removed; the walkers' chains may hold what is replaced.
        self._flush()
        self._drain()
        self._walker.reset()
        self._generation += 1

    def _forget(self, path: bytes) -> None:
        """Drop what earlier writes recorded at or below ``path``: it is replaced or gone."""
        below = path + b"/"
        for table in (self._placed, self._dirs):
            for key in [k for k in table if k == path or k.startswith(below)]:
                del table[key]
        self._links = [link for link in self._links
                       if link[0] != path and not link[0].startswith(below)]

    def _walk(self, path: bytes, entry: TreeEntry) -> None:
        """Make directory ``path`` and queue its subtree: depth-first, on an explicit stack
        (a tree may nest deeper than Python's recursion limit)."""
        pending = [(path, entry)]
        while pending and self._error is None:
            dir_path, dir_entry = pending.pop()
            self._walker.reach(dir_path.split(b"/"), create=True, replace_last=True)
            self._dirs[dir_path] = dir_entry
            subdirs = []
            for child in self.odb.read_tree(dir_entry.oid).entries:
                # The decoder refused these already: checked again, as the last line.
                problem = name_problem(child.name)
                if problem:
                    raise Refused(f"refusing tree {dir_entry.oid} at '{_shown(dir_path)}': "
                                  f"{problem}")
                if child.is_dir:
                    subdirs.append((dir_path + b"/" + child.name, child))
                else:
                    self._queue(dir_path, child.name, child)
            pending.extend(reversed(subdirs))

    def _queue(self, base: bytes, name: bytes, entry: TreeEntry,
               link: bool = True) -> None:
        path = _join(base, name)
        if entry.is_file:
            leader = next((v for k, v in entry.attrs if k == "hardlink"), None) if link else None
            if leader is not None and leader != path:
                # Linked in finish(), once the leader (wherever it comes in the walk) is in.
                self._links.append((path, entry, leader))
                return
            if entry.kind == ObjectType.CHUNKS:
                self._queue_large(base, name, entry)
                return
        job = self._job
        if not job.groups or job.groups[-1][0] != base:
            job.groups.append((base, []))
        job.groups[-1][1].append((name, entry))
        job.size += entry.size
        job.files += 1
        if job.size >= JOB_BYTES or job.files >= JOB_FILES:
            self._flush()

    def _flush(self) -> None:
        job = self._job
        self._job = _Job()
        if not job.groups or self._error is not None:
            return
        self._small += job.files
        pool = self._worker_processes()
        if pool is not None:
            start = partial(pool.submit, _process_job, self._generation, job.groups)
        else:
            start = partial(self._pool.submit, self._writer.write_files, self._generation,
                            job.groups)
        self._submit(start, job.size, job)

    def _worker_processes(self) -> ProcessPoolExecutor | None:
        if self._processes is None and self._use_processes \
                and self._small >= PROCESS_THRESHOLD:
            st = os.fstat(self._root_fd)
            context = multiprocessing.get_context("forkserver")
            # Import the worker's modules once in the fork server, not in every worker.
            context.set_forkserver_preload(["vst.checkout"])
            try:
                self._processes = ProcessPoolExecutor(
                    PROCESSES_PER_CORE * self._cores, mp_context=context,
                    initializer=_process_init,
                    initargs=(self.store.path, self.odb.index.path, self.odb.ids.key,
                              self.odb.spool_dir, self.root, (st.st_dev, st.st_ino)))
            except OSError:
                self._use_processes = False  # no processes here: threads will do
        return self._processes

    def _queue_large(self, base: bytes, name: bytes, entry: TreeEntry) -> None:
        # Threads, even when processes take the small files: a chunk is large enough for
        # zstd, BLAKE3 and write() to run without the GIL most of the time.
        job = _Job([(base, [(name, entry)])], min(entry.size, JOB_BYTES), 1)
        self._submit(partial(self._pool.submit, self._writer.write_large, self._generation,
                             base, name, entry), job.size, job)

    def _submit(self, start: Callable[[], Future[_Done]], size: int, job: _Job) -> None:
        workers = self._threads if self._processes is None else PROCESSES_PER_CORE * self._cores
        while self._inflight and (self._held + size > MAX_BYTES_IN_FLIGHT
                                  or len(self._inflight) >= 4 * workers):
            self._complete_oldest()
        if self._error is not None:
            return
        try:
            future = start()
        except (BrokenProcessPool, RuntimeError) as exc:  # a worker process died earlier
            raise _worker_died(exc) from None
        self._inflight.append((future, size, job))
        self._held += size

    def _complete_oldest(self) -> None:
        future, size, job = self._inflight.popleft()
        self._held -= size
        try:
            done = future.result()
        except BrokenProcessPool as exc:
            raise _worker_died(exc) from None
        except VstError as exc:
            # Raised by finish(), not by whichever write() happens to be waiting: a caller
            # that handles Refused for the path it writes must not get another path's.
            self._error = self._error or exc
            return
        items = [(_join(b, n), e) for b, group in job.groups for n, e in group]
        for (path, entry), (ctime_ns, ino) in zip(items, done.stats, strict=True):
            self._placed[path] = Placed(path, entry, ctime_ns, ino)
        self._note(done.notes)
        if done.written and self.on_bytes:
            self.on_bytes(done.written)

    def _drain(self) -> None:
        while self._inflight:
            self._complete_oldest()

    def _note(self, notes: dict[str, str]) -> None:
        for kind, message in notes.items():
            if kind not in self._warned:
                self._warned.add(kind)
                self.warn(message)

    # -- finishing -------------------------------------------------------------------------------

    def _make_links(self) -> None:
        linked = []
        for path, entry, leader in self._links:
            if self._link(path, entry, leader):
                linked += [path, leader]
        for path in linked:  # a new link changes the ctime of every name of the inode
            parts = path.split(b"/")
            st = os.stat(parts[-1], dir_fd=self._walker.reach(parts[:-1], create=False),
                         follow_symlinks=False)
            self._placed[path] = Placed(path, self._placed[path].entry, st.st_ctime_ns,
                                        st.st_ino)

    def _link(self, path: bytes, entry: TreeEntry, leader_path: bytes) -> bool:
        """Make ``path`` a hard link to the file this checkout wrote at ``leader_path``,
        if that is still there as written; otherwise write its content after all."""
        parts, leader_parts = path.split(b"/"), leader_path.split(b"/")
        leader = self._placed.get(leader_path)
        source = None
        try:
            if leader is not None and leader.entry.is_file and leader.entry.oid == entry.oid \
                    and leader.entry.kind == entry.kind:
                source = os.dup(self._walker.reach(leader_parts[:-1], create=False))
                st = os.stat(leader_parts[-1], dir_fd=source, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_ino == leader.ino:
                    dir_fd = self._walker.reach(parts[:-1], create=True)
                    temp = self._writer.temp_name()
                    try:
                        os.link(leader_parts[-1], temp, src_dir_fd=source, dst_dir_fd=dir_fd,
                                follow_symlinks=False)
                    except OSError:  # too many links, a filesystem without them...
                        return self._link_failed(parts, entry)
                    try:
                        _rename_over(dir_fd, temp, parts[-1])
                    except BaseException:
                        _unlink_quietly(dir_fd, temp)
                        raise
                    self._placed[path] = Placed(path, entry, 0, st.st_ino)
                    return True
        except (_Missing, FileNotFoundError, Refused):
            pass  # the leader is not there as written: the content is written instead
        finally:
            if source is not None:
                os.close(source)
        return self._link_failed(parts, entry)

    def _link_failed(self, parts: list[bytes], entry: TreeEntry) -> bool:
        """No link after all: the content is written like any other file's."""
        self._walker.reach(parts[:-1], create=True)
        self._queue(b"/".join(parts[:-1]), parts[-1], entry, link=False)
        return False

    def _set_directories(self) -> None:
        # Children before parents: in reverse byte order a path comes before its prefixes.
        for path in sorted(self._dirs, reverse=True):
            entry = self._dirs[path]
            try:
                fd = self._walker.reach(path.split(b"/"), create=False)
            except _Missing:
                raise NotFound(f"directory '{_shown(path)}' in '{self.root}' vanished while "
                               "it was restored") from None
            notes: dict[str, str] = {}
            os.fchmod(fd, _permissions(entry, notes))
            if entry.attrs:
                _set_xattrs(fd, entry, notes)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            st = os.fstat(fd)
            self._placed[path] = Placed(path, entry, st.st_ctime_ns, st.st_ino)
            self._note(notes)

    # -- removing and closing ------------------------------------------------------------------

    def _remove(self, path: bytes, parts: list[bytes]) -> bool:
        earlier = self._touches_earlier(parts)
        if earlier:
            self._barrier()
        self._walker.forget(parts)
        try:
            parent = self._walker.reach(parts[:-1], create=False)
        except _Missing:
            return False
        name = parts[-1]
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            return False
        except (IsADirectoryError, PermissionError):
            if not _is_dir(parent, name):
                raise
            try:
                os.rmdir(name, dir_fd=parent)
            except FileNotFoundError:
                return False
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return False
                raise
        if earlier:
            self._forget(path)
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise VstError("internal error: checkout used after finish() or an error")

    def _close(self, abort: bool) -> None:
        """Stop the workers and let go of every descriptor. On abort, what has not started
        is dropped and a large file being written stops at its next chunk (each worker
        removes the temporary file of what it did not finish)."""
        self._closed = True
        if abort:
            self._writer.stop.set()
        for pool in (self._pool, self._processes):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=abort)
        self._inflight.clear()
        self._writer.close()
        self._walker.reset()
        os.close(self._root_fd)


def _worker_died(exc: BaseException) -> VstError:
    return VstError(f"a worker process died while restoring files ({exc})",
                    hint="it may have run out of memory; run again, or see 'dmesg'")
