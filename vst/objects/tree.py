"""The tree object: one directory.

Encoding (version 1). One byte string per logical tree: entries sorted by name bytes,
names unique, fixed-width integers, nothing optional except the attribute list.

    u8 version = 1
    per entry:
        u16 name length | name bytes
        u32 mode            st_mode: file type bits (regular, directory, symlink) + 0o7777
        u8  object type     blob or chunks for a file, tree for a directory, blob for a symlink
        u64 size            file size; length of the target for a symlink; 0 for a directory
        i64 mtime_ns
        32  object id       the content, the subtree, or the blob holding the symlink target
        u8  attribute count | per attribute, sorted by key, keys unique:
            u8 key length | key (ASCII letters, digits, '.', '_', '-') | u32 value length | value

A symlink's target is a blob, as in git: it keeps every entry (and every plumbing record)
uniform, at the cost of one small object per distinct target. Attributes leave room for
xattrs, hardlink groups and later metadata without a format change.

The decoder refuses names that could escape a restore target ('' '.' '..' '.vst' in any
case, '/' or NUL): such a tree cannot be produced by vst, so it is corrupt or hostile.
"""

from __future__ import annotations

import itertools
import re
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from vst.errors import CorruptObject
from vst.objects.oid import Oid, trusted_oid
from vst.objects.types import KINDS, ObjectType

VERSION = 1
MAX_NAME = 4096
_FIXED = struct.Struct(">IBQq32sB")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_KEY_RE = re.compile(rb"[A-Za-z0-9._-]{1,255}\Z")

S_IFREG = stat.S_IFREG
S_IFDIR = stat.S_IFDIR
S_IFLNK = stat.S_IFLNK
_ALLOWED_TYPES = {
    S_IFREG: (ObjectType.BLOB, ObjectType.CHUNKS),
    S_IFDIR: (ObjectType.TREE,),
    S_IFLNK: (ObjectType.BLOB,),
}
_VALID_TYPES = frozenset((file_type, kind) for file_type, kinds in _ALLOWED_TYPES.items()
                         for kind in kinds)
_DOTS = (b".", b"..")


def entry_mode(st_mode: int) -> int:
    """A tree entry's mode from a file's ``st_mode``: the file type and permission bits."""
    return stat.S_IFMT(st_mode) | stat.S_IMODE(st_mode)


def name_problem(name: bytes) -> str | None:
    """Why ``name`` may not appear in a tree, or None when it may."""
    if not name:
        return "empty name"
    if name in (b".", b".."):
        return f"name '{name.decode()}'"
    if b"/" in name:
        return "name contains '/'"
    if b"\0" in name:
        return "name contains NUL"
    if len(name) == 4 and name.lower() == b".vst":  # no lowercased copy of every name
        return "name '.vst' is reserved"
    if len(name) > MAX_NAME:
        return "name too long"
    return None


def _plain_name(name: bytes) -> bool:
    """``name_problem(name) is None``, for a name a tree decoder read (never empty, at most
    65,535 bytes), in a fifth of the time."""
    return b"/" not in name and b"\0" not in name and len(name) <= MAX_NAME \
        and name not in _DOTS and (len(name) != 4 or name.lower() != b".vst")


def mode_problem(mode: int, kind: ObjectType) -> str | None:
    file_type = stat.S_IFMT(mode)
    allowed = _ALLOWED_TYPES.get(file_type)
    if allowed is None or mode & ~(file_type | 0o7777):
        return f"invalid mode {mode:06o}"
    if kind not in allowed:
        return f"mode {mode:06o} cannot point at a {kind.label}"
    return None


@dataclass(frozen=True, slots=True)
class TreeEntry:
    name: bytes
    mode: int
    kind: ObjectType
    oid: Oid
    size: int = 0
    mtime_ns: int = 0
    attrs: tuple[tuple[str, bytes], ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Plain values, rebuilt without the dataclass machinery: the default pickling of a
        # frozen slotted dataclass took 6 µs an entry, there and back, for each file a
        # checkout hands to a worker process.
        return _unpickled_entry, (self.name, self.mode, self.kind.value, self.oid.raw,
                                  self.size, self.mtime_ns, self.attrs)

    def problem(self) -> str | None:
        """Why this entry cannot be stored, or None."""
        return (
            name_problem(self.name)
            or mode_problem(self.mode, self.kind)
            or _range_problem(self)
            or _attrs_problem(self.attrs)
        )


def _range_problem(entry: TreeEntry) -> str | None:
    if not 0 <= entry.size < 2**64:
        return "size out of range"
    if not -(2**63) <= entry.mtime_ns < 2**63:
        return "mtime out of range"
    if entry.is_dir and entry.size != 0:
        return "a directory has size 0"
    return None


def _attrs_problem(attrs: tuple[tuple[str, bytes], ...]) -> str | None:
    keys = [key for key, _ in attrs]
    if keys != sorted(set(keys)):
        return "attributes not sorted or not unique"
    for key, value in attrs:
        if not _KEY_RE.match(key.encode("ascii", "replace")):
            return f"invalid attribute key '{key}'"
        if len(value) >= 2**32:
            return "attribute value too long"
    return None


_new_object = object.__new__
(_set_name, _set_mode, _set_kind, _set_oid, _set_size, _set_mtime_ns, _set_attrs) = (
    TreeEntry.__dict__[f.name].__set__ for f in fields(TreeEntry))


def _decoded_entry(name: bytes, mode: int, kind: ObjectType, oid: Oid, size: int,
                   mtime_ns: int) -> TreeEntry:
    """A TreeEntry without attributes, of fields the decoder has checked, built without the
    frozen dataclass's ``__init__``: its seven ``object.__setattr__`` calls were most of
    the time a tree took to decode."""
    entry = _new_object(TreeEntry)
    _set_name(entry, name)
    _set_mode(entry, mode)
    _set_kind(entry, kind)
    _set_oid(entry, oid)
    _set_size(entry, size)
    _set_mtime_ns(entry, mtime_ns)
    _set_attrs(entry, ())
    return entry


def _unpickled_entry(name: bytes, mode: int, kind: int, raw_oid: bytes, size: int,
                     mtime_ns: int, attrs: tuple[tuple[str, bytes], ...]) -> TreeEntry:
    entry = _decoded_entry(name, mode, KINDS[kind], Oid(raw_oid), size, mtime_ns)
    if attrs:
        _set_attrs(entry, attrs)
    return entry


@dataclass(frozen=True, slots=True)
class Tree:
    entries: tuple[TreeEntry, ...] = field(default=())

    @classmethod
    def from_entries(cls, entries: Iterable[TreeEntry]) -> Tree:
        """Sort entries into canonical order; refuses duplicates and invalid entries."""
        ordered = sorted(entries, key=lambda e: e.name)
        for entry in ordered:
            problem = entry.problem()
            if problem:
                raise ValueError(f"{problem}: {entry.name!r}")
        for before, after in itertools.pairwise(ordered):
            if before.name == after.name:
                raise ValueError(f"duplicate entry {before.name!r}")
        return cls(tuple(ordered))

    def get(self, name: bytes) -> TreeEntry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    def encode(self) -> bytes:
        out = bytearray([VERSION])
        for entry in self.entries:
            out += _U16.pack(len(entry.name))
            out += entry.name
            out += _FIXED.pack(entry.mode, entry.kind, entry.size, entry.mtime_ns,
                               entry.oid.raw, len(entry.attrs))
            for key, value in entry.attrs:
                raw_key = key.encode("ascii")
                out.append(len(raw_key))
                out += raw_key
                out += _U32.pack(len(value))
                out += value
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, oid: Oid | None = None) -> Tree:
        return _TreeDecoder(data, f"tree {oid}" if oid else "tree").decode()


class _TreeDecoder:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.name = name

    def fail(self, why: str) -> CorruptObject:
        return CorruptObject(f"{self.name}: {why}")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("truncated")
        piece = self.data[self.pos:self.pos + n]
        self.pos += n
        return piece

    def decode(self) -> Tree:
        data = self.data
        if not data or data[0] != VERSION:
            raise self.fail("unknown version")
        entries: list[TreeEntry] = []
        previous = b""  # every name sorts after it: none is empty
        pos, end, fixed_size = 1, len(data), _FIXED.size
        while pos < end:
            # The common entry (no attributes, nothing wrong) decoded inline; any other is
            # left to entry(), which knows every rule and says which one an entry breaks.
            entry = None
            if pos + 2 <= end:
                fixed = pos + 2 + _U16.unpack_from(data, pos)[0]
                if fixed + fixed_size <= end:
                    name = data[pos + 2:fixed]
                    mode, raw_kind, size, mtime_ns, raw_oid, attr_count = _FIXED.unpack_from(
                        data, fixed)
                    file_type = mode & 0o170000
                    if not attr_count and name > previous and mode <= 0o177777 \
                            and (file_type, KINDS.get(raw_kind)) in _VALID_TYPES \
                            and (not size or file_type != S_IFDIR) \
                            and _plain_name(name):
                        entry = _decoded_entry(name, mode, KINDS[raw_kind],
                                               trusted_oid(raw_oid), size, mtime_ns)
                        pos = fixed + fixed_size
            if entry is None:
                self.pos = pos
                entry = self.entry()
                if entry.name <= previous:
                    raise self.fail(f"entries not sorted or not unique at {entry.name!r}")
                pos = self.pos
            previous = entry.name
            entries.append(entry)
        return Tree(tuple(entries))

    def entry(self) -> TreeEntry:
        (name_len,) = _U16.unpack(self.take(2))
        name = bytes(self.take(name_len))
        mode, raw_kind, size, mtime_ns, raw_oid, attr_count = _FIXED.unpack(
            self.take(_FIXED.size))
        try:
            kind = ObjectType(raw_kind)
        except ValueError:
            raise self.fail(f"unknown object type {raw_kind} for {name!r}") from None
        attrs = []
        for _ in range(attr_count):
            key = bytes(self.take(self.take(1)[0]))
            (value_len,) = _U32.unpack(self.take(4))
            if not _KEY_RE.match(key):
                raise self.fail(f"invalid attribute key {key!r} for {name!r}")
            attrs.append((key.decode("ascii"), bytes(self.take(value_len))))
        entry = TreeEntry(name, mode, kind, Oid(raw_oid), size, mtime_ns, tuple(attrs))
        problem = entry.problem()
        if problem:
            raise self.fail(f"{problem}: {name!r}")
        return entry

