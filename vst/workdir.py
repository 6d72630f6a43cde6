"""A working copy: a folder cloned from a collection, with its state in ``.vst/``.

    .vst/workdir.toml   format, store (absolute path or URL), collection
    .vst/HEAD           the base commit: the commit the files were last in step with
    .vst/index          the stat cache (format below)
    .vst/config.toml    local configuration (the most specific layer)
    .vst/hooks/         hooks: pre-commit, commit-msg, post-commit, post-checkout, pre-drop
    .vst/lock           held (flock) by commands that change the working copy
    .vst/COMMIT_EDITMSG the message handed to the commit-msg hook
    .vst/dropping       written by a drop that has checked everything, before it deletes

The stat cache is what makes ``status`` and a no-change ``commit`` cheap, like git's index:
for every path of the base commit it keeps the tree entry (mode, kind, id, size, mtime,
attributes) and the status (ctime, inode) of the file when it was last seen to hold that
content. A file whose status still matches is not read again.

A status is only trusted when it could not hide a later change. A file written within the
same timestamp tick as our look at it keeps its mtime; so an entry whose mtime is not well
before the moment the cache was made is saved "unverified" (ctime and inode 0), and read
again next time — git's "racily clean" rule.

Cache file, version 1 (integers big-endian):

    8  magic b"VSTINDEX"
    u32 version = 1
    32 base commit id (zeros: none)
    u32 entry count
    per entry, sorted by path bytes:
        u16 path length | path (b"/"-separated, relative)
        u32 mode | u8 object type | u64 size | i64 mtime_ns | 32 object id
        i64 ctime_ns | u64 inode | u32 attribute bytes | attributes (a one-entry tree
                                                          holding them, version 1)
    32 BLAKE3 of everything before it

A cache that fails its checksum, or belongs to another base, is dropped and rebuilt from the
base commit's trees (every file is then read once more): it is only ever a cache.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from blake3 import blake3

from vst.errors import (
    AlreadyExists,
    CorruptConfig,
    Locked,
    NotAWorkingCopy,
    UnsupportedFormat,
)
from vst.fsio import DEFAULT_FS, FileSystem, flock_within, read_file
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import KINDS, ObjectType

STATE_DIR = ".vst"
# What a checkout names the files it writes before renaming them into place: a scan skips
# (and commit removes) those a killed checkout left.
TEMP_PREFIX = b".vst-tmp-"
FORMAT = 1
CACHE_MAGIC = b"VSTINDEX"
CACHE_VERSION = 1
# Files modified less than this long before a scan started are cached unverified. Two
# seconds covers the coarsest timestamps in use (FAT) and a clock read a tick late.
RACY_NS = 2_000_000_000
LOCK_TIMEOUT = 10.0

_HEADER = struct.Struct(">8sI32sI")
_ENTRY = struct.Struct(">IBQq32sqQI")
_U16 = struct.Struct(">H")


class CacheEntry(NamedTuple):
    """One path of the base commit, and the status of the file that last held it.

    A named tuple, not a dataclass: a cache of a million entries is decoded on every
    ``status``, and tuples are built and compared in C."""

    mode: int
    kind: ObjectType
    oid: Oid
    size: int
    mtime_ns: int
    ctime_ns: int = 0  # 0: unverified, read the file again
    ino: int = 0
    attrs: tuple[tuple[str, bytes], ...] = ()

    def tree_entry(self, name: bytes) -> TreeEntry:
        return TreeEntry(name, self.mode, self.kind, self.oid, self.size, self.mtime_ns,
                         self.attrs)

    def same_content(self, other: CacheEntry) -> bool:
        """Same kind, mode and content: what status calls unchanged (mtime alone is not a
        change, as in git)."""
        return self.mode == other.mode and self.oid == other.oid and self.kind == other.kind

    def matches(self, st: os.stat_result) -> bool:
        """The file still has the status it had when it was last seen with this content."""
        return (self.ctime_ns != 0 and st.st_ctime_ns == self.ctime_ns
                and st.st_ino == self.ino and st.st_mtime_ns == self.mtime_ns
                and st.st_size == self.size and st.st_mode == self.mode)


# The stat cache is written a piece of this size at a time (``encode_cache``).
CACHE_PIECE = 1024 * 1024


def encode_cache(base: Oid | None, count: int, entries: Iterable[tuple[bytes, CacheEntry]],
                 now_ns: int) -> Iterator[bytearray]:
    """A stat cache file of ``count`` entries, given in path order, in pieces of about
    CACHE_PIECE bytes, to be written as they come; those modified after ``now_ns -
    RACY_NS`` are saved unverified. The entries may be made as they are asked for (a
    clone's are): none needs to exist before or after its turn. Made in one buffer, the
    5 MB file of a 50,000-file commit grew its heap by 6 to 9 MiB (no hole in it was that
    large), more than any other step after the scan; a piece fits in one."""
    hasher = blake3()
    out = bytearray(_HEADER.pack(CACHE_MAGIC, CACHE_VERSION, base.raw if base else bytes(32),
                                 count))
    racy_after = now_ns - RACY_NS
    written = 0
    pack_length, pack_entry = _U16.pack, _ENTRY.pack
    for path, entry in entries:
        # Unpacked at once, not field by field: a clone's tail waits on this loop.
        mode, kind, oid, size, mtime_ns, ctime_ns, ino, attrs = entry
        if mtime_ns >= racy_after:
            ctime_ns, ino = 0, 0
        raw_attrs = _encode_attrs(attrs) if attrs else b""
        out += pack_length(len(path))
        out += path
        out += pack_entry(mode, kind, size, mtime_ns, oid.raw, ctime_ns, ino, len(raw_attrs))
        if raw_attrs:
            out += raw_attrs
        written += 1
        if len(out) >= CACHE_PIECE:
            hasher.update(out)
            yield out
            out = bytearray()  # a new one: the last may still be seen by its writer
    if written != count:
        raise ValueError(f"a stat cache of {count} entries was given {written}")
    hasher.update(out)
    out += hasher.digest()
    yield out


class EncodedCache(Protocol):
    """What ``WorkingCopy.save_cache`` writes: a ``StatCache``, or anything that encodes
    one (a clone's, made straight from what it wrote)."""

    def encode(self, now_ns: int) -> Iterator[bytearray]: ...


@dataclass(slots=True)
class StatCache:
    base: Oid | None
    entries: dict[bytes, CacheEntry] = field(default_factory=dict)

    def encode(self, now_ns: int) -> Iterator[bytearray]:
        """The cache file, in pieces (``encode_cache``); entries modified after ``now_ns -
        RACY_NS`` are saved unverified."""
        entries = self.entries
        return encode_cache(self.base, len(entries),
                            ((path, entries[path]) for path in sorted(entries)), now_ns)

    @classmethod
    def decode(cls, data: bytes) -> StatCache | None:
        """The cache, or None when the file is damaged or from another version."""
        data = bytes(data)  # paths are sliced out of it, and must be hashable
        if len(data) < _HEADER.size + 32 or blake3(data[:-32]).digest() != data[-32:]:
            return None
        magic, version, base, count = _HEADER.unpack_from(data)
        if magic != CACHE_MAGIC or version != CACHE_VERSION:
            return None
        end = len(data) - 32
        pos = _HEADER.size
        entries: dict[bytes, CacheEntry] = {}
        unpack_u16, unpack_entry, entry_size = _U16.unpack_from, _ENTRY.unpack_from, _ENTRY.size
        new = CacheEntry._make
        modes: dict[int, int] = {}  # one int object per mode (a few), not one per entry
        try:
            for _ in range(count):
                (length,) = unpack_u16(data, pos)
                pos += 2
                path = data[pos:pos + length]
                pos += length
                mode, kind, size, mtime_ns, raw, ctime_ns, ino, attr_len = \
                    unpack_entry(data, pos)
                pos += entry_size
                attrs = _decode_attrs(data[pos:pos + attr_len]) if attr_len else ()
                pos += attr_len
                entries[path] = new((modes.setdefault(mode, mode), KINDS[kind], Oid(raw),
                                     size, mtime_ns, ctime_ns, ino, attrs))
        except (struct.error, ValueError, KeyError):
            return None
        if pos != end:
            return None
        return cls(Oid(base) if any(base) else None, entries)


def _encode_attrs(attrs: tuple[tuple[str, bytes], ...]) -> bytes:
    if not attrs:
        return b""
    # The tree encoding of one entry carries the attributes; reuse it rather than invent a
    # second layout.
    return Tree((TreeEntry(b"x", 0o100644, ObjectType.BLOB, Oid(bytes(32)), 0, 0,
                           attrs),)).encode()


def _decode_attrs(raw: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        return Tree.decode(raw).entries[0].attrs
    except Exception as exc:  # a damaged cache is dropped, whatever the damage
        raise ValueError(str(exc)) from None


class WorkingCopy:
    """The ``.vst/`` state of one working copy rooted at ``root`` (an absolute path)."""

    def __init__(self, root: str, store_url: str, collection: str, *,
                 fs: FileSystem = DEFAULT_FS) -> None:
        self.root = root
        self.store_url = store_url
        self.collection = collection
        self.fs = fs
        self.state = os.path.join(root, STATE_DIR)
        self.lock_held = False

    # -- finding and creating -------------------------------------------------------------

    @classmethod
    def find(cls, start: str) -> WorkingCopy | None:
        """The working copy holding ``start`` (a folder), looking upwards; None if none."""
        path = os.path.abspath(start)
        while True:
            if os.path.isfile(os.path.join(path, STATE_DIR, "workdir.toml")):
                return cls.open(path)
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent

    @classmethod
    def open(cls, root: str) -> WorkingCopy:
        root = os.path.abspath(root)
        name = os.path.join(root, STATE_DIR, "workdir.toml")
        try:
            table = tomllib.loads(read_file(name).decode())
        except FileNotFoundError:
            raise NotAWorkingCopy(f"'{root}' is not a working copy") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CorruptConfig(f"{name}: {exc}") from None
        if table.get("format") != FORMAT:
            raise UnsupportedFormat(f"{name}: working copy format {table.get('format')!r} "
                                    f"(this vst reads {FORMAT})")
        store, collection = table.get("store"), table.get("collection")
        if not isinstance(store, str) or not isinstance(collection, str):
            raise CorruptConfig(f"{name}: 'store' and 'collection' must be strings")
        return cls(root, store, collection)

    @classmethod
    def create(cls, root: str, store_url: str, collection: str, base: Oid | None, *,
               cache: EncodedCache | None = None, scan_start_ns: int | None = None,
               fs: FileSystem = DEFAULT_FS) -> WorkingCopy:
        """Make ``root`` (existing) a working copy in step with ``base``, with the stat cache
        ``cache`` made at ``scan_start_ns``. The descriptor is written last, so a half-made
        ``.vst/`` is not taken for a working copy."""
        root = os.path.abspath(root)
        state = os.path.join(root, STATE_DIR)
        if os.path.lexists(state):
            raise AlreadyExists(f"'{root}' is already a working copy"
                                if os.path.isfile(os.path.join(state, "workdir.toml"))
                                else f"'{state}' already exists")
        fs.makedirs(os.path.join(state, "hooks"))
        copy = cls(root, store_url, collection, fs=fs)
        copy.set_base(base)
        copy.save_cache(cache or StatCache(base), scan_start_ns or time.time_ns())
        import tomli_w

        fs.write_file(os.path.join(state, "workdir.toml"), tomli_w.dumps(
            {"format": FORMAT, "store": store_url, "collection": collection}).encode())
        return copy

    # -- state ----------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.state, name)

    @property
    def hooks_dir(self) -> str:
        return self._path("hooks")

    @property
    def config_path(self) -> str:
        return self._path("config.toml")

    def base(self) -> Oid | None:
        try:
            text = read_file(self._path("HEAD")).decode().strip()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise CorruptConfig(f"{self._path('HEAD')}: not a commit id") from None
        if not text:
            return None
        try:
            return Oid.from_hex(text)
        except ValueError:
            raise CorruptConfig(f"{self._path('HEAD')}: not a commit id") from None

    def set_base(self, oid: Oid | None) -> None:
        self.fs.write_file(self._path("HEAD"), (oid.hex + "\n").encode() if oid else b"")

    def load_cache(self) -> StatCache | None:
        """The stat cache, or None if it is missing or damaged."""
        try:
            data = read_file(self._path("index"))
        except FileNotFoundError:
            return None
        return StatCache.decode(data)

    def save_cache(self, cache: EncodedCache, scan_start_ns: int) -> None:
        self.fs.write_pieces(self._path("index"), cache.encode(scan_start_ns))

    @contextlib.contextmanager
    def lock(self, what: str, *, wait: bool = True) -> Iterator[None]:
        """Hold the working copy's lock: one command at a time changes it. Without ``wait``,
        a held lock raises Locked at once."""
        fd = os.open(self._path("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not flock_within(fd, LOCK_TIMEOUT if wait else 0):
                raise Locked(f"cannot {what}: another vst command is working in "
                             f"'{self.root}'", hint="wait for it to finish and try again")
            self.lock_held = True
            yield
        finally:
            self.lock_held = False
            os.close(fd)

    def describe(self) -> dict[str, Any]:
        return {"root": self.root, "store": self.store_url, "collection": self.collection}


# Below this many cached paths a walk is quick anyway: not worth a fork.
WARM_THRESHOLD = 4096


@contextlib.contextmanager
def inodes_warmed(copy: WorkingCopy) -> Iterator[None]:
    """Inside the block, a child process walks the working copy and lstat()s every path,
    so that the scan finds directories and inodes in the kernel's cache instead of waiting
    on the disk for each, in turn.

    On a cold cache, a scan of 50,000 files spends most of its time waiting for inode
    blocks: 0.80 s for ``vst status``, against 0.49 s warm. Walking ahead in a thread made
    it slower (0.95 s: the two Python loops took turns with the GIL); a process of its own
    runs on the other core and brought it to 0.6 s. The child is forked before the
    command starts any thread, does nothing but read directories and statuses (no
    locks, no output, ``os._exit``), and is killed when the block ends, wherever it
    got to: it only ever makes the scan's reads cheaper. Linux only; skipped for a small
    working copy (by the size of its stat cache) and when threads already run."""
    pid = _fork_walker(copy) if sys.platform == "linux" and threading.active_count() == 1 \
        else 0
    try:
        yield
    finally:
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _fork_walker(copy: WorkingCopy) -> int:
    """The walking child's pid (0: none was started)."""
    try:
        # An entry takes over 100 bytes in the cache file.
        if os.stat(copy._path("index")).st_size < WARM_THRESHOLD * 100:
            return 0
        pid = os.fork()
    except OSError:  # no cache yet, or no process to spare: the scan only goes slower
        return 0
    if pid == 0:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
            # Nor does it hold the caller's pipes open: a script reading vst's output sees
            # its end when vst ends, even if vst is killed and this child is not.
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            _lstat_everything(os.fsencode(copy.root))
        finally:
            os._exit(0)
    return pid


def _lstat_everything(root: bytes) -> None:
    stack = [root]
    state = STATE_DIR.encode()
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False) and entry.name != state:
                        stack.append(entry.path)
        except OSError:
            continue
