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
  Except, when the caller asks (``in_place``), a file in a directory this checkout made:
  nothing old is there to replace, so it is made under its own name (O_EXCL|O_NOFOLLOW
  still), as git, restic and borg make every file; a rename is a quarter of a small file's
  kernel time. No fsync: the store holds the data, and restic does not fsync restores
  either.

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
import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from vst.checkout.files import (
    Group,
    _Done,
    _permissions,
    _process_init,
    _process_init_fetched,
    _process_job,
    _process_job_fetched,
    _set_xattrs,
    _Writer,
)
from vst.checkout.paths import (
    _is_dir,
    _join,
    _Missing,
    _rename_over,
    _shown,
    _unlink_quietly,
    _Walker,
    split_path,
)
from vst.errors import CorruptObject, NotFound, Refused, VstError, from_os_error
from vst.memory import cycle_collection_paused, release_free_memory
from vst.objects.odb import VolumeRef
from vst.objects.oid import Oid
from vst.objects.tree import TreeEntry, name_problem
from vst.objects.types import ObjectType
from vst.pools import process_pool
from vst.store import Store

# multiprocessing imported where the processes start, BrokenExecutor caught: as in vst.ingest.
if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["Checkout", "Placed", "split_path"]

MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024
JOB_BYTES = 2 * 1024 * 1024  # content one job of small files holds (a large file: a chunk)
JOB_FILES = 128
# Worker processes take 0.1 s to start, and a job sent before then waits for them: for
# fewer than about a thousand small files threads are done sooner (408 files: 0.29 s on
# threads, 0.42 s with processes started after 256). They start after PROCESS_THRESHOLD
# small files, or after EARLY_THRESHOLD when the walk has DIRS_AHEAD folders or more yet
# to enter (more files are coming): 50,000 files were restored in 1.95 s instead of 2.01,
# 2,411 files in 5 folders in 0.49 s instead of 0.52, and 408 or 816 as fast.
PROCESS_THRESHOLD = 1024
EARLY_THRESHOLD = 256
DIRS_AHEAD = 4
PROCESSES_PER_CORE = 1  # 2 per core: the same speed or slower, and 3x the kernel time


class Placed(NamedTuple):
    """One entry as it landed: ``ctime_ns`` and ``ino`` are its lstat once complete. A
    named tuple: a restore makes one a file, and a tuple is built in C."""

    path: bytes  # relative to the root, b"/"-separated, never empty
    entry: TreeEntry  # the tree entry as written (size = bytes actually written)
    ctime_ns: int
    ino: int


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
    for many small files. ``in_place``: in a directory this checkout makes (and in the
    root, with ``empty_root``), create each file under its own name rather than a
    temporary one renamed over it: nothing was there for a reader to keep seeing, and an
    interrupted restore into a new folder is incomplete either way. For targets being
    made (clone, restore --to), not for a working copy being updated."""

    def __init__(self, store: Store, root: str, *,
                 on_bytes: Callable[[int], None] | None = None,
                 warn: Callable[[str], None] = lambda _: None,
                 threads: int | None = None, processes: bool = True,
                 in_place: bool = False, empty_root: bool = False) -> None:
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
        # Directories this checkout made: with ``in_place``, their files are created under
        # their own names (see _Writer.create).
        # ``empty_root``: the caller made the root (or found it empty) for this checkout.
        self._made: set[bytes] | None = ({b""} if empty_root else set()) if in_place else None
        self._walker = _Walker(self._root_fd, made=self._made)
        self._cores = os.cpu_count() or 1
        self._threads = threads or 2 * self._cores
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="vst-checkout")
        self._processes: ProcessPoolExecutor | None = None
        self._use_processes = processes
        # Worker processes open the store's index and volumes themselves, except from a
        # store over SSH: there this process fetches the sealed records of each job (a few
        # threads, pipelined) and the worker opens, verifies and writes them.
        self._fetching = self.odb.index.path is None
        self._fetchers: ThreadPoolExecutor | None = None
        self._packs: dict[Oid, VolumeRef | None] = {}  # which volume serves each pack
        self._small = 0  # small files handed to workers so far
        self._dirs_ahead = 0  # folders the walk has yet to enter
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
        self._gc_paused = cycle_collection_paused()  # a record a file: see vst.memory
        self._gc_paused.__enter__()

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
        placed, self._placed = self._placed, {}
        result = sorted(placed.values())  # by path, their first field, each one different
        del placed
        # The workers' results came through buffers that left holes in the heap; what the
        # caller makes next (a stat cache entry a file) would grow it past them.
        release_free_memory()
        return result

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
            self._dirs_ahead = len(pending)
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
        self._dirs_ahead = 0

    def _queue(self, base: bytes, name: bytes, entry: TreeEntry,
               link: bool = True) -> None:
        if entry.is_file:
            leader = next((v for k, v in entry.attrs if k == "hardlink"), None) \
                if link and entry.attrs else None
            if leader is not None and leader != (path := _join(base, name)):
                # Linked in finish(), once the leader (wherever it comes in the walk) is in.
                self._links.append((path, entry, leader))
                return
            if entry.kind == ObjectType.CHUNKS:
                self._queue_large(base, name, entry)
                return
        job = self._job
        if not job.groups or job.groups[-1][0] != base:
            job.groups.append((base, self._made is not None and base in self._made, []))
        job.groups[-1][2].append((name, entry))
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
        if pool is not None and self._fetchers is not None:
            start = partial(self._fetchers.submit, self._fetch_and_write, pool,
                            self._generation, job.groups)
        elif pool is not None:
            # The worker looks its job up itself (_process_job). Looked up here, the
            # lookups took 0.4 of the main thread's 0.95 CPU-s on 50,000 files: SQLite
            # hands the GIL over at every row it returns, to the threads feeding and
            # reading the pool.
            start = partial(pool.submit, _process_job, self._generation, job.groups)
        else:
            # Looked up here, and the volumes told to start reading: by the time a thread
            # takes the job, its records are in the page cache.
            located = None if self._fetching else self.odb.locate_ahead(
                [entry.oid for _, _, items in job.groups for _, entry in items], self._packs)
            start = partial(self._pool.submit, self._writer.write_files, self._generation,
                            job.groups, located)
        self._submit(start, job.size, job)

    def _worker_processes(self) -> ProcessPoolExecutor | None:
        if self._processes is None and self._use_processes \
                and (self._small >= PROCESS_THRESHOLD or (self._small >= EARLY_THRESHOLD
                                                          and self._dirs_ahead >= DIRS_AHEAD)):
            import multiprocessing

            st = os.fstat(self._root_fd)
            context = multiprocessing.get_context("forkserver")
            # Import the worker's modules once in the fork server, not in every worker.
            opened = self.store.keyrings.opened()
            context.set_forkserver_preload(["vst.checkout.files"]
                                           + (["vst.crypto.records"] if opened else []))
            sealings = [s.portable() for s in self.store.keyrings.opened()]
            identity = (st.st_dev, st.st_ino)
            workers = PROCESSES_PER_CORE * self._cores
            try:
                if self._fetching:
                    self._processes = process_pool(workers, context, _process_init_fetched,
                                                   (sealings, self.root, identity))
                    # Enough to fetch the next jobs while the workers write the last:
                    # a thread waits for its job's worker after fetching.
                    self._fetchers = ThreadPoolExecutor(4 * workers,
                                                        thread_name_prefix="vst-fetch")
                else:
                    self._processes = process_pool(
                        workers, context, _process_init,
                        (self.store.path, self.odb.index.path, sealings, self.odb.spool_dir,
                         self.root, identity))
            except OSError:
                self._use_processes = False  # no processes here: threads will do
        return self._processes

    def _fetch_and_write(self, pool: ProcessPoolExecutor, generation: int,
                         groups: list[Group]) -> _Done:
        records = self.odb.fetch_sealed([entry.oid for _, _, items in groups
                                         for _, entry in items])
        return pool.submit(_process_job_fetched, generation, groups, records).result()

    def _queue_large(self, base: bytes, name: bytes, entry: TreeEntry) -> None:
        # Threads, even when processes take the small files: a chunk is large enough for
        # zstd, BLAKE3 and write() to run without the GIL most of the time.
        made = self._made is not None and base in self._made
        job = _Job([(base, made, [(name, entry)])], min(entry.size, JOB_BYTES), 1)
        self._submit(partial(self._pool.submit, self._writer.write_large, self._generation,
                             base, made, name, entry), job.size, job)

    def _submit(self, start: Callable[[], Future[_Done]], size: int, job: _Job) -> None:
        workers = self._threads if self._processes is None else PROCESSES_PER_CORE * self._cores
        while self._inflight and (self._held + size > MAX_BYTES_IN_FLIGHT
                                  or len(self._inflight) >= 4 * workers):
            self._complete_oldest()
        if self._error is not None:
            return
        try:
            future = start()
        except (BrokenExecutor, OSError, RuntimeError) as exc:  # the pool broke, or cannot start
            raise _worker_died(exc) from None
        self._inflight.append((future, size, job))
        self._held += size

    def _complete_oldest(self) -> None:
        future, size, job = self._inflight.popleft()
        self._held -= size
        try:
            done = future.result()
        except BrokenExecutor as exc:
            raise _worker_died(exc) from None
        except VstError as exc:
            # Raised by finish(), not by whichever write() happens to be waiting: a caller
            # that handles Refused for the path it writes must not get another path's.
            self._error = self._error or exc
            return
        if len(done.stats) != job.files:
            raise VstError(f"internal error: a worker reported {len(done.stats)} files of "
                           f"{job.files}")
        placed = self._placed
        stats = iter(done.stats)
        for base, _, group in job.groups:
            prefix = base + b"/" if base else b""
            for name, entry in group:
                path = prefix + name
                placed[path] = Placed(path, entry, *next(stats))
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
        try:
            if abort:
                self._writer.stop.set()
            for pool in (self._pool, self._fetchers, self._processes):
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=abort)
            self._inflight.clear()
            self._writer.close()
            self._walker.reset()
            os.close(self._root_fd)
        finally:
            self._gc_paused.__exit__(None, None, None)


def _worker_died(exc: BaseException) -> VstError:
    return VstError(f"a worker process died while restoring files ({exc})",
                    hint="it may have run out of memory; run again, or see 'dmesg'")
