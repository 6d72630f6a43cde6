"""S12: hostile trees at restore (RELIABILITY.md). Invariant 6: a restore never writes
outside its target, whatever the store holds and whatever happens to the target meanwhile.

Trees are encoded by hand (bypassing Tree.from_entries and TreeEntry.problem) and stored raw,
so the checkout meets exactly what a hostile or corrupt store could hold. Every case
restores into tmp_path/"target", next to tmp_path/"outside" (a sentinel file; where escapes
would land), and must leave everything but the target as it was, and fail, if at all, with
a VstError: never another exception.

Three parts: hand-written cases (one test id each), a race against a thread that swaps a
directory for a symlink to "outside" while a checkout writes below it, and trees generated
from a vocabulary of hostile and normal names, modes and attributes. Set VST_TORTURE=1 for
the full counts of RELIABILITY.md (10,000 generated trees, over 1,000 races).
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

import vst.checkout
from vst.checkout import Checkout
from vst.errors import CorruptObject, ObjectMissing, Refused, VstError
from vst.objects.chunks import ChunkList, ChunkRef
from vst.objects.commit import Commit, Signature
from vst.objects.odb import ObjectWriter
from vst.objects.oid import Oid
from vst.objects.seal import FLAG_ZSTD, HEADER
from vst.objects.tree import S_IFDIR, S_IFLNK, S_IFREG, TreeEntry
from vst.objects.types import ObjectType
from vst.store import Store

TORTURE = os.environ.get("VST_TORTURE") == "1"
GENERATED = 10_000 if TORTURE else 2_000
# (rounds, seconds) per race variant: the worker-process one starts a pool per checkout
RACE_LIMITS = {"threads": (1_000, 120.0) if TORTURE else (200, 2.5),
               "processes": (200, 60.0) if TORTURE else (40, 1.5)}
MTIME = 1_600_000_000_000_000_000
SIG = Signature("Mallory", "mallory@example.com", 1_700_000_000, 0)
_FIXED = struct.Struct(">IBQq32sB")

FILE = S_IFREG | 0o644
DIR = S_IFDIR | 0o755
LINK = S_IFLNK | 0o777
BLOB, CHUNKS, TREE, COMMIT = (int(k) for k in ObjectType)


# -- encoding by hand ------------------------------------------------------------------------


def entry(name: bytes, mode: int, kind: int, oid: Oid | bytes, size: int = 0,
          attrs: tuple[tuple[bytes, bytes], ...] = (), mtime: int = MTIME) -> bytes:
    """One tree entry in the version 1 encoding (see vst/objects/tree.py), unchecked."""
    raw = oid.raw if isinstance(oid, Oid) else oid
    out = struct.pack(">H", len(name)) + name
    out += _FIXED.pack(mode, kind, size, mtime, raw, len(attrs))
    for key, value in attrs:
        out += bytes([len(key)]) + key + struct.pack(">I", len(value)) + value
    return out


def _entry_name(raw: bytes) -> bytes:
    (length,) = struct.unpack(">H", raw[:2])
    return raw[2:2 + length]


def snapshot(root: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    """Everything below ``root`` but ``skip``: names, types, contents, modes, mtimes."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if root / d != skip]
        for name in sorted(dirnames + filenames + ["."]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                what = None
            found[os.path.normpath(os.path.relpath(path, root))] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                st.st_nlink, what)
    return found


class Hostile:
    """A target and its hostile store. Methods build objects by hand and restore them."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.root = tmp_path
        self.target = tmp_path / "target"
        self.outside = tmp_path / "outside"
        self.target.mkdir()
        self.outside.mkdir()
        (self.outside / "sentinel").write_bytes(b"do not touch")
        self.warnings: list[str] = []
        self._writer: ObjectWriter | None = None

    # objects: all in one pack until the next restore (a pack per object would be slow)
    def put(self, kind: ObjectType, data: bytes) -> Oid:
        if self._writer is None:
            self._writer = self.store.odb.writer()
        return self._writer.put(kind, data)

    def add_record(self, oid: Oid, record: bytes) -> Oid:
        if self._writer is None:
            self._writer = self.store.odb.writer()
        self._writer.add_record(oid, record)
        return oid

    def stored(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def blob(self, data: bytes) -> Oid:
        return self.put(ObjectType.BLOB, data)

    def tree(self, *entries: bytes, keep_order: bool = False) -> Oid:
        """A tree of encoded entries, sorted by name unless ``keep_order``."""
        if not keep_order:
            entries = tuple(sorted(entries, key=_entry_name))
        return self.put(ObjectType.TREE, b"\x01" + b"".join(entries))

    def file(self, name: bytes, data: bytes = b"data", mode: int = FILE,
             size: int | None = None, attrs: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
        return entry(name, mode, BLOB, self.blob(data), len(data) if size is None else size,
                     attrs)

    def link(self, name: bytes, target: bytes | str) -> bytes:
        raw = os.fsencode(target)
        return entry(name, LINK, BLOB, self.blob(raw), len(raw))

    def dir(self, name: bytes, *entries: bytes, mode: int = DIR,
            attrs: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
        return entry(name, mode, TREE, self.tree(*entries), 0, attrs)

    def commit(self, tree: Oid, *parents: Oid) -> Oid:
        return self.put(ObjectType.COMMIT, Commit(tree, parents, SIG, SIG, b"m\n").encode())

    # restoring
    def restore(self, tree: Oid, *, commit: bool = False) -> VstError | None:
        """Restore every entry of ``tree`` (or of a commit's tree) at the target's root, as
        clone does; returns the VstError it ended with, if any."""
        self.stored()
        try:
            odb = self.store.odb
            root = odb.read_commit(tree).tree if commit else tree
            # As clone and restore --to do: files in the folders it makes under their names.
            with Checkout(self.store, str(self.target), warn=self.warnings.append,
                          in_place=True) as checkout:
                for item in odb.read_tree(root).entries:
                    checkout.write(item.name, item)
                checkout.finish()
        except VstError as exc:
            return exc
        return None

    def write(self, path: bytes, item: TreeEntry) -> VstError | None:
        self.stored()
        try:
            with Checkout(self.store, str(self.target), warn=self.warnings.append) as checkout:
                checkout.write(path, item)
                checkout.finish()
        except VstError as exc:
            return exc
        return None

    def ok(self, tree: Oid, **options: bool) -> None:
        error = self.restore(tree, **options)
        assert error is None, f"unexpected {type(error).__name__}: {error}"

    def fails(self, tree: Oid, kind: type[VstError] = VstError, **options: bool) -> VstError:
        error = self.restore(tree, **options)
        assert isinstance(error, kind), f"expected {kind.__name__}, got {error!r}"
        return error

    def at(self, *parts: str) -> Path:
        return self.target.joinpath(*parts)

    def outside_entry(self, name: bytes) -> TreeEntry:
        return TreeEntry(name, FILE, ObjectType.BLOB, self.blob(b"pwned"), 5, MTIME)


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for every case, outside the directories the cases snapshot."""
    store = Store.init(str(tmp_path_factory.mktemp("hostile") / "store"))
    try:
        yield store
    finally:
        store.close()


# -- the hand-written cases --------------------------------------------------------------------

Case = Callable[[Hostile], None]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(function: Case) -> Case:
        assert name not in CASES, name
        CASES[name] = function
        return function
    return register


BAD_NAMES = {
    "empty": b"", "dot": b".", "dotdot": b"..", "vst": b".vst", "VST": b".VST", "Vst": b".Vst",
    "slash": b"a/b", "abs": b"/abs", "abs-outside": b"/../outside/sentinel", "nul": b"\0",
    "a-nul-b": b"a\0b", "dotdot-x": b"../x", "dotdot-outside": b"../outside/sentinel",
    "dotdot-slash": b"../", "slash-only": b"/", "trailing-slash": b"x/", "vst-slash": b".vst/x",
    "too-long": b"n" * 4097,
}
for _id, _name in BAD_NAMES.items():
    CASES[f"name-{_id}-file"] = (
        lambda h, name=_name: h.fails(h.tree(h.file(b"aaa"), h.file(name)), CorruptObject))
    CASES[f"name-{_id}-in-subtree"] = (
        lambda h, name=_name: h.fails(h.tree(h.dir(b"d", h.file(name))), CorruptObject))
CASES["name-dotdot-dir"] = lambda h: h.fails(
    h.tree(h.dir(b"..", h.dir(b"outside", h.file(b"sentinel", b"pwned")))), CorruptObject)
CASES["name-vst-dir"] = lambda h: h.fails(h.tree(h.dir(b".vst", h.file(b"config"))),
                                          CorruptObject)
CASES["name-dotdot-symlink"] = lambda h: h.fails(h.tree(h.link(b"..", b"/")), CorruptObject)

LEGAL_LOOKALIKES = {
    "fullwidth-dots": "\uff0e\uff0e", "one-dot-leaders": "\u2024\u2024",
    "vst-zero-width": ".vst\u200b", "vst-trailing-space": ".vst ", "vst-fullwidth": "\uff0evst",
    "vst-cyrillic": ".v\u0455t", "division-slash": "..\u2215outside",
    "fraction-slash": "a\u2044b", "backslash": "..\\outside", "dots-space": ".. ",
    "three-dots": "...", "vstx": ".vstx", "dot-vst-dot": ".vst.", "tab": "a\tb",
    "newline": "a\nb", "latin1-bytes": "\udcff\udcfe",
}
for _id, _text in LEGAL_LOOKALIKES.items():
    def _lookalike(h: Hostile, raw: bytes = os.fsencode(_text)) -> None:
        h.ok(h.tree(h.file(raw, b"legal"), h.dir(raw + b"-dir", h.file(raw, b"inner"))))
        assert (h.target / os.fsdecode(raw)).read_bytes() == b"legal"
        assert (h.target / os.fsdecode(raw + b"-dir") / os.fsdecode(raw)).read_bytes() == b"inner"
    CASES[f"lookalike-{_id}"] = _lookalike


@case("lookalike-nfc-nfd-and-case-collisions")
def _(h: Hostile) -> None:
    names = sorted(n.encode() for n in ("\u00e9", "e\u0301", "A", "a", "README", "readme"))
    h.ok(h.tree(*(h.file(n, n) for n in names)))
    assert sorted(os.fsencode(n) for n in os.listdir(h.target)) == names
    for name in names:
        assert (h.target / os.fsdecode(name)).read_bytes() == name


@case("name-over-name-max")
def _(h: Hostile) -> None:
    h.fails(h.tree(h.file(b"n" * 300)))  # legal for vst, too long for the filesystem


# modes
for _id, _mode in {"chardev": 0o020644, "blockdev": 0o060644, "fifo": 0o010644,
                   "socket": 0o140644, "unknown-type": 0o170644, "no-type": 0o000644,
                   "high-bits": 0o1100644, "zero": 0}.items():
    CASES[f"mode-{_id}"] = lambda h, mode=_mode: h.fails(
        h.tree(h.file(b"f", mode=mode)), CorruptObject)
CASES["mode-dir-on-blob"] = lambda h: h.fails(
    h.tree(entry(b"d", DIR, BLOB, h.blob(b"x"), 0)), CorruptObject)
CASES["mode-file-on-tree"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, TREE, h.tree(h.file(b"x")), 0)), CorruptObject)
CASES["mode-symlink-on-chunks"] = lambda h: h.fails(
    h.tree(entry(b"l", LINK, CHUNKS, h.blob(b"x"), 1)), CorruptObject)
CASES["mode-file-on-commit"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, COMMIT, h.blob(b"x"), 1)), CorruptObject)
CASES["mode-unknown-object-type"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, 9, h.blob(b"x"), 1)), CorruptObject)


@case("mode-setuid-setgid-sticky")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"suid", mode=S_IFREG | 0o4755), h.file(b"sgid", mode=S_IFREG | 0o2755),
                h.file(b"sticky", mode=S_IFREG | 0o1755),
                h.dir(b"sgid-dir", h.file(b"x"), mode=S_IFDIR | 0o2775)))
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in h.target.iterdir()}
    assert modes == {"suid": 0o755, "sgid": 0o755, "sticky": 0o1755, "sgid-dir": 0o775}
    assert len(h.warnings) == 1


# symlinks in the way
@case("symlink-then-file-second-write")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"a", b"../outside")))
    assert isinstance(h.write(b"a/sentinel", h.outside_entry(b"sentinel")), Refused)
    assert isinstance(h.write(b"a/new", h.outside_entry(b"new")), Refused)
    assert os.readlink(h.at("a")) == "../outside"


@case("symlink-then-file-second-tree")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"a", b"../outside")))
    h.ok(h.tree(h.dir(b"a", h.file(b"sentinel", b"pwned"), h.file(b"new", b"pwned"))))
    assert not h.at("a").is_symlink()
    assert h.at("a", "sentinel").read_bytes() == b"pwned"  # inside the target


@case("symlink-then-file-in-one-write")
def _(h: Hostile) -> None:
    # The same name twice in one tree cannot be encoded (duplicates are refused), so the
    # symlink comes from one top-level write and the directory from the next one.
    first = h.tree(h.link(b"a", b"../outside"))
    second = h.tree(h.dir(b"a", h.file(b"new", b"pwned")))
    h.stored()
    with Checkout(h.store, str(h.target)) as checkout:
        for tree in (first, second):
            for item in h.store.odb.read_tree(tree).entries:
                checkout.write(item.name, item)
        checkout.finish()
    assert h.at("a", "new").read_bytes() == b"pwned"


@case("symlink-absolute-then-file")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"abs", h.outside)))
    assert isinstance(h.write(b"abs/new", h.outside_entry(b"new")), Refused)
    h.ok(h.tree(h.dir(b"abs", h.file(b"new", b"pwned"))))
    assert not h.at("abs").is_symlink()


@case("symlink-chain-then-file")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"a", b"b"), h.link(b"b", b"c"), h.link(b"c", b"../outside")))
    for path in (b"a/x", b"b/x", b"c/x", b"a/b/c/x"):
        assert isinstance(h.write(path, h.outside_entry(b"x")), Refused)
    h.ok(h.tree(h.dir(b"a", h.file(b"x", b"pwned"))))
    assert os.readlink(h.at("b")) == "c"


@case("symlink-to-parent-then-file")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"up", b".."), h.link(b"root", b"/")))
    for path in (b"up/outside/sentinel", b"up/x", b"root/tmp/x"):
        assert isinstance(h.write(path, h.outside_entry(b"x")), Refused)
    h.ok(h.tree(h.dir(b"up", h.dir(b"outside", h.file(b"sentinel", b"pwned")))))
    assert h.at("up", "outside", "sentinel").read_bytes() == b"pwned"


@case("symlink-deep-in-subtree-then-file")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.dir(b"d", h.dir(b"e", h.link(b"f", b"../../../outside")))))
    assert isinstance(h.write(b"d/e/f/x", h.outside_entry(b"x")), Refused)
    h.ok(h.tree(h.dir(b"d", h.dir(b"e", h.dir(b"f", h.file(b"x", b"pwned"))))))
    assert h.at("d", "e", "f", "x").read_bytes() == b"pwned"


@case("folder-replaced-by-symlink-in-a-later-commit")
def _(h: Hostile) -> None:
    first = h.commit(h.tree(h.dir(b"d", h.file(b"sentinel", b"1"), h.dir(b"sub", h.file(b"x")))))
    second = h.commit(h.tree(h.link(b"d", b"../outside")), first)
    third = h.commit(h.tree(h.dir(b"d", h.file(b"sentinel", b"pwned"),
                                  h.dir(b"sub", h.file(b"x", b"pwned")))), second)
    h.ok(first, commit=True)
    h.ok(second, commit=True)
    assert os.readlink(h.at("d")) == "../outside"
    h.ok(third, commit=True)
    assert h.at("d", "sentinel").read_bytes() == b"pwned"
    assert not h.at("d").is_symlink()


@case("file-replaced-by-folder")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"f", b"file")))
    h.ok(h.tree(h.dir(b"f", h.file(b"g", b"in a folder"))))
    assert h.at("f", "g").read_bytes() == b"in a folder"
    h.ok(h.tree(h.file(b"f", b"file again")))
    assert h.at("f").read_bytes() == b"file again"


@case("folder-with-symlinks-inside-replaced-by-file")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.dir(b"d", h.link(b"out", b"../../outside"), h.link(b"abs", h.outside),
                      h.dir(b"deeper", h.link(b"out", b"../../../outside")))))
    h.ok(h.tree(h.file(b"d", b"now a file")))  # removing the folder follows no link
    assert h.at("d").read_bytes() == b"now a file"


@case("symlink-target-nul")
def _(h: Hostile) -> None:
    h.fails(h.tree(h.link(b"l", b"../out\0side")), CorruptObject)


@case("symlink-target-empty")
def _(h: Hostile) -> None:
    h.fails(h.tree(h.link(b"l", b"")), CorruptObject)


@case("symlink-target-too-long")
def _(h: Hostile) -> None:
    h.fails(h.tree(h.link(b"l", b"../" * 2000)))


@case("dangling-symlink-then-folder")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"a", b"../outside/not-yet")))
    assert isinstance(h.write(b"a/f", h.outside_entry(b"f")), Refused)
    h.ok(h.tree(h.dir(b"a", h.file(b"f", b"inside"))))
    assert h.at("a", "f").read_bytes() == b"inside"


@case("symlink-to-outside-restored-as-a-link-only")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"l", b"../outside/sentinel"), h.link(b"abs", h.outside / "sentinel")))
    h.ok(h.tree(h.file(b"l", b"replaced the link, not the sentinel"),
                h.file(b"abs", b"same")))
    assert not h.at("l").is_symlink()


@case("parent-that-is-a-file")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"f")))
    assert isinstance(h.write(b"f/x", h.outside_entry(b"x")), Refused)


@case("write-path-escapes")
def _(h: Hostile) -> None:
    for path in (b"../outside/sentinel", b"/abs", b"a/../../outside/x", b".vst/x", b"",
                 b"a//b", b"./x", b"x/.", b"x\0"):
        assert isinstance(h.write(path, h.outside_entry(b"x")), Refused), path


# hard links
def _assert_not_linked(h: Hostile, name: str, content: bytes) -> None:
    st = h.at(name).lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert h.at(name).read_bytes() == content


@case("hardlink-dotdot")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"f", b"x", attrs=((b"hardlink", b"../outside/sentinel"),))))
    _assert_not_linked(h, "f", b"x")


@case("hardlink-etc-passwd")
def _(h: Hostile) -> None:
    before = os.lstat("/etc/passwd")
    h.ok(h.tree(h.file(b"f", b"x", attrs=((b"hardlink", b"/etc/passwd"),))))
    _assert_not_linked(h, "f", b"x")
    assert os.lstat("/etc/passwd").st_nlink == before.st_nlink


@case("hardlink-absolute-outside")
def _(h: Hostile) -> None:
    leader = os.fsencode(h.outside / "sentinel")
    h.ok(h.tree(h.file(b"f", b"do not touch", attrs=((b"hardlink", leader),))))
    _assert_not_linked(h, "f", b"do not touch")


@case("hardlink-to-a-symlink")
def _(h: Hostile) -> None:
    # The symlink's target blob is the very content of the file: same id, still no link.
    h.ok(h.tree(h.link(b"a", b"../outside/sentinel"),
                h.file(b"b", b"../outside/sentinel", attrs=((b"hardlink", b"a"),))))
    _assert_not_linked(h, "b", b"../outside/sentinel")


@case("hardlink-to-a-symlink-in-the-way")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"a", b"x"), h.file(b"b", b"x", attrs=((b"hardlink", b"a"),))))
    os.unlink(h.at("a"))
    os.symlink(h.outside / "sentinel", h.at("a"))
    h.ok(h.tree(h.file(b"b", b"x", attrs=((b"hardlink", b"a"),))))
    assert h.at("b").read_bytes() == b"x" and not h.at("b").is_symlink()


@case("hardlink-to-a-directory")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.dir(b"d", h.file(b"x")), h.file(b"f", b"x", attrs=((b"hardlink", b"d"),))))
    _assert_not_linked(h, "f", b"x")


@case("hardlink-not-yet-written")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"a", b"same", attrs=((b"hardlink", b"z/later"),)),
                h.dir(b"z", h.file(b"later", b"same"))))
    assert h.at("a").read_bytes() == b"same" == h.at("z", "later").read_bytes()
    assert h.at("a").lstat().st_ino == h.at("z", "later").lstat().st_ino


@case("hardlink-never-written")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"a", b"x", attrs=((b"hardlink", b"nowhere"),))))
    _assert_not_linked(h, "a", b"x")


@case("hardlink-other-content")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"a", b"secret"), h.file(b"b", b"mine", attrs=((b"hardlink", b"a"),))))
    _assert_not_linked(h, "b", b"mine")
    _assert_not_linked(h, "a", b"secret")


@case("hardlink-to-itself-and-in-a-cycle")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"a", b"x", attrs=((b"hardlink", b"b"),)),
                h.file(b"b", b"x", attrs=((b"hardlink", b"a"),)),
                h.file(b"c", b"x", attrs=((b"hardlink", b"c"),))))
    for name in "abc":
        assert h.at(name).read_bytes() == b"x"


@case("hardlink-through-a-symlinked-folder")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.link(b"l", b"../outside"),
                h.file(b"f", b"do not touch", attrs=((b"hardlink", b"l/sentinel"),))))
    _assert_not_linked(h, "f", b"do not touch")


# extended attributes
@case("xattr-other-namespaces-are-not-set")
def _(h: Hostile) -> None:
    attrs = ((b"xattr.security.selinux", b"system_u:object_r:shadow_t:s0"),
             (b"xattr.system.posix_acl_access", b"\x02\x00\x00\x00"),
             (b"xattr.trusted.overlay.opaque", b"y"), (b"xattr.trusted.x", b"v"),
             (b"xattr.user", b"no-name"), (b"xattr.userx.y", b"v"))
    h.ok(h.tree(h.file(b"f", attrs=attrs), h.dir(b"d", attrs=attrs)))
    for path in (h.at("f"), h.at("d")):
        assert [x for x in os.listxattr(path) if not x.startswith("security.")] == []
        with pytest.raises(OSError):
            os.getxattr(path, "trusted.x")


@case("xattr-user-value-too-large")
def _(h: Hostile) -> None:
    h.ok(h.tree(h.file(b"f", attrs=((b"xattr.user.big", b"v" * 200_000),))))
    assert h.at("f").read_bytes() == b"data" and len(h.warnings) == 1


@case("xattr-bad-keys")
def _(h: Hostile) -> None:
    for key in (b"xattr/user", b"", b"xattr.user.\xff", b"a\0b"):
        h.fails(h.tree(h.file(b"f", attrs=((key, b"v"),))), CorruptObject)


@case("attrs-unsorted-or-duplicated")
def _(h: Hostile) -> None:
    h.fails(h.tree(h.file(b"f", attrs=((b"b", b""), (b"a", b"")))), CorruptObject)
    h.fails(h.tree(h.file(b"f", attrs=((b"a", b""), (b"a", b"")))), CorruptObject)


# size lies
CASES["size-bigger"] = lambda h: h.fails(h.tree(h.file(b"f", b"1234", size=5)), CorruptObject)
CASES["size-smaller"] = lambda h: h.fails(h.tree(h.file(b"f", b"1234", size=3)), CorruptObject)
CASES["size-huge"] = lambda h: h.fails(h.tree(h.file(b"f", b"1234", size=2**64 - 1)),
                                       CorruptObject)
CASES["size-symlink-lie"] = lambda h: h.fails(
    h.tree(entry(b"l", LINK, BLOB, h.blob(b"../outside"), 2)), CorruptObject)
CASES["size-on-a-directory"] = lambda h: h.fails(
    h.tree(entry(b"d", DIR, TREE, h.tree(), 5)), CorruptObject)


def _chunks(h: Hostile, *refs: tuple[Oid, int]) -> Oid:
    body = bytes([1]) + b"".join(oid.raw + struct.pack(">I", size) for oid, size in refs)
    return h.put(ObjectType.CHUNKS, body)


@case("size-lie-many-small-entries-one-big-blob")
def _(h: Hostile) -> None:
    # A job's memory is budgeted by the sizes the tree states: 64 files claiming one byte
    # each, all the same 20 MiB blob (zeros: a tiny record), must not be held at once.
    big = h.blob(bytes(20 * 1024 * 1024))
    h.fails(h.tree(*(entry(b"f%02d" % n, FILE, BLOB, big, 1) for n in range(64))),
            CorruptObject)


@case("size-chunks-sum-lie")
def _(h: Hostile) -> None:
    chunks = _chunks(h, (h.blob(b"a" * 10), 10), (h.blob(b"b" * 10), 10))
    for size in (19, 21, 2**40):
        h.fails(h.tree(entry(b"f", FILE, CHUNKS, chunks, size)), CorruptObject)
    assert not any(name.startswith(".vst-tmp") for name in os.listdir(h.target))


@case("size-chunk-entry-lie")
def _(h: Hostile) -> None:
    chunks = _chunks(h, (h.blob(b"a" * 10), 11), (h.blob(b"b" * 10), 9))
    h.fails(h.tree(entry(b"f", FILE, CHUNKS, chunks, 20)), CorruptObject)
    assert os.listdir(h.target) == []


@case("size-chunks-claim-terabytes")
def _(h: Hostile) -> None:
    chunks = _chunks(h, *[(h.blob(b"a"), 2**32 - 1)] * 300)
    h.fails(h.tree(entry(b"f", FILE, CHUNKS, chunks, 300 * (2**32 - 1))))
    assert os.listdir(h.target) == []


# type confusion
CASES["confusion-tree-as-blob"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, BLOB, h.tree(h.file(b"x")), 40)), CorruptObject)
CASES["confusion-blob-as-tree"] = lambda h: h.fails(
    h.tree(entry(b"d", DIR, TREE, h.blob(b"\x01"), 0)), CorruptObject)
CASES["confusion-commit-as-tree"] = lambda h: h.fails(
    h.tree(entry(b"d", DIR, TREE, h.commit(h.tree()), 0)), CorruptObject)
CASES["confusion-commit-as-root"] = lambda h: h.fails(h.commit(h.tree()), CorruptObject)
CASES["confusion-tree-as-commit"] = lambda h: h.fails(h.tree(), CorruptObject, commit=True)
CASES["confusion-blob-as-chunks"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, CHUNKS, h.blob(b"x" * 73), 73)), CorruptObject)
CASES["confusion-chunks-as-blob"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, BLOB, _chunks(h, (h.blob(b"a"), 1), (h.blob(b"b"), 1)), 73)),
    CorruptObject)
CASES["confusion-chunks-naming-a-tree"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, CHUNKS,
                 _chunks(h, (h.blob(b"a"), 1), (h.tree(h.file(b"x")), 41)), 42)), CorruptObject)
CASES["confusion-chunks-naming-chunks"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, CHUNKS, _chunks(
        h, (h.blob(b"a"), 1), (_chunks(h, (h.blob(b"b"), 1), (h.blob(b"c"), 1)), 66)), 67)),
    CorruptObject)
CASES["confusion-one-chunk-list"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, CHUNKS, _chunks(h, (h.blob(b"a"), 1)), 1)), CorruptObject)


# cycles and missing objects
def _missing(seed: int) -> Oid:
    return Oid(hashlib.blake2b(b"missing %d" % seed, digest_size=32).digest())


CASES["missing-blob"] = lambda h: h.fails(
    h.tree(entry(b"f", FILE, BLOB, _missing(1), 4)), ObjectMissing)
CASES["missing-subtree"] = lambda h: h.fails(
    h.tree(entry(b"d", DIR, TREE, _missing(2), 0)), ObjectMissing)
CASES["missing-root"] = lambda h: h.fails(_missing(3), ObjectMissing)


@case("cycle-chunks-naming-itself-like-ids")
def _(h: Hostile) -> None:
    # A chunks object cannot name its own id (hashing); ids that look like it do not exist.
    body = bytes([1]) + b"".join(_missing(n).raw + struct.pack(">I", 5) for n in range(4))
    like_self = h.put(ObjectType.CHUNKS, body)
    h.fails(h.tree(entry(b"f", FILE, CHUNKS, like_self, 20)), ObjectMissing)
    assert not [n for n in os.listdir(h.target) if n.startswith(".vst-tmp")]


@case("cycle-shared-subtrees")
def _(h: Hostile) -> None:
    # A tree cannot contain itself, but one subtree may appear many times (a DAG).
    leaf = h.tree(*(h.file(b"f%d" % n, b"x") for n in range(8)))
    middle = h.tree(*(entry(b"m%d" % n, DIR, TREE, leaf) for n in range(8)))
    h.ok(h.tree(*(entry(b"t%d" % n, DIR, TREE, middle) for n in range(8))))
    assert h.at("t7", "m7", "f7").read_bytes() == b"x"


# zstd bombs: records crafted by hand, with the guard of vst/objects/seal.py in the way
def _record(h: Hostile, oid: Oid, plain_size: int, body: bytes) -> Oid:
    return h.add_record(oid, HEADER.pack(oid.raw, BLOB, FLAG_ZSTD, plain_size) + body)


@case("zstd-bomb-claims-a-huge-size")
def _(h: Hostile) -> None:
    body = zstandard.ZstdCompressor().compress(b"\0" * 1_000_000)
    oid = _record(h, _missing(10), 2**40, body)
    h.fails(h.tree(entry(b"f", FILE, BLOB, oid, 2**40)), CorruptObject)


@case("zstd-bomb-frame-bigger-than-header")
def _(h: Hostile) -> None:
    body = zstandard.ZstdCompressor().compress(b"\0" * 50_000_000)
    oid = _record(h, _missing(11), 100, body)
    h.fails(h.tree(entry(b"f", FILE, BLOB, oid, 100)), CorruptObject)


@case("zstd-bomb-frame-without-size")
def _(h: Hostile) -> None:
    chunker = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    body = chunker.compress(b"\0" * 50_000_000) + chunker.flush()
    oid = _record(h, _missing(12), 100, body)
    h.fails(h.tree(entry(b"f", FILE, BLOB, oid, 100)), CorruptObject)


@case("record-holding-another-id")
def _(h: Hostile) -> None:
    real = h.blob(b"real content")
    h.add_record(_missing(13), HEADER.pack(real.raw, BLOB, 0, 12) + b"real content")
    h.fails(h.tree(entry(b"f", FILE, BLOB, _missing(13), 12)), CorruptObject)


# structure
CASES["structure-duplicate-names"] = lambda h: h.fails(
    h.tree(h.file(b"a", b"1"), h.file(b"a", b"2")), CorruptObject)
CASES["structure-duplicate-file-and-dir"] = lambda h: h.fails(
    h.tree(h.link(b"a", b"../outside"), h.dir(b"a", h.file(b"sentinel", b"pwned"))),
    CorruptObject)
CASES["structure-unsorted"] = lambda h: h.fails(
    h.tree(h.file(b"b"), h.file(b"a"), keep_order=True), CorruptObject)
CASES["structure-truncated"] = lambda h: h.fails(
    h.put(ObjectType.TREE, (b"\x01" + h.file(b"a"))[:-3]), CorruptObject)
CASES["structure-unknown-version"] = lambda h: h.fails(
    h.put(ObjectType.TREE, b"\x02" + h.file(b"a")), CorruptObject)
CASES["structure-trailing-garbage"] = lambda h: h.fails(
    h.put(ObjectType.TREE, b"\x01" + h.file(b"a") + b"\x00"), CorruptObject)
CASES["structure-empty-object"] = lambda h: h.fails(h.put(ObjectType.TREE, b""),
                                                    CorruptObject)


@case("structure-very-deep-nesting")
def _(h: Hostile) -> None:
    inner = h.dir(b"d", h.file(b"bottom", b"deep"))
    for _ in range(999):
        inner = h.dir(b"d", inner)
    h.ok(h.tree(inner))
    assert Path(h.target, *["d"] * 1000, "bottom").read_bytes() == b"deep"


@case("structure-very-deep-nesting-with-a-symlink-at-the-bottom")
def _(h: Hostile) -> None:
    inner = h.dir(b"d", h.link(b"out", b"/".join([b".."] * 1001) + b"/outside"))
    for _ in range(999):
        inner = h.dir(b"d", inner)
    h.ok(h.tree(inner))
    deep = os.fsencode(os.path.join(*["d"] * 1000))
    assert isinstance(h.write(deep + b"/out/x", h.outside_entry(b"x")), Refused)


@case("structure-many-entries")
def _(h: Hostile) -> None:
    h.ok(h.tree(*(h.file(b"f%05d" % n, b"%d" % n) for n in range(10_000))))
    assert len(os.listdir(h.target)) == 10_000


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_tree(hostile_store: Store, tmp_path: Path, name: str) -> None:
    h = Hostile(hostile_store, tmp_path)
    before = snapshot(tmp_path, h.target)
    try:
        CASES[name](h)  # any exception but the VstErrors the case expects fails the test
        assert snapshot(tmp_path, h.target) == before
        assert _temp_names(h.target) == []
    finally:
        _clear(h.target)  # 1,000 levels would break pytest's (recursive) clean-up later


def _temp_names(root: Path) -> list[str]:
    """Temporary files left below ``root`` (an explicit stack: os.walk recurses)."""
    found, pending = [], [str(root)]
    while pending:
        with os.scandir(pending.pop()) as it:
            for child in it:
                if child.name.startswith(".vst-tmp-"):
                    found.append(child.path)
                if child.is_dir(follow_symlinks=False):
                    pending.append(child.path)
    return found


def test_there_are_at_least_sixty_hand_written_cases() -> None:
    assert len(CASES) >= 60


# -- races ------------------------------------------------------------------------------------


_SWAPPER = """
import os, sys
directory, outside = sys.argv[1], sys.argv[2]
away = directory + ".away"
while True:  # until killed
    try:
        os.rename(directory, away)
    except OSError:
        continue
    for step in (lambda: os.symlink(outside, directory), lambda: os.unlink(directory),
                 lambda: os.rename(away, directory)):
        try:
            step()
        except OSError:
            pass
"""


def _swap_in_thread(directory: Path, outside: Path, stop: threading.Event) -> None:
    away = str(directory) + ".away"
    while not stop.is_set():
        try:
            os.rename(directory, away)
        except OSError:
            continue
        for step in (lambda: os.symlink(outside, directory), lambda: os.unlink(directory),
                     lambda: os.rename(away, directory)):
            try:
                step()
            except OSError:
                pass


@pytest.mark.parametrize(("racer", "workers"), [("thread", "threads"), ("process", "threads"),
                                               ("process", "processes")])
def test_race_a_directory_swapped_for_a_symlink(hostile_store: Store, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, racer: str,
                                                workers: str) -> None:
    """Another thread (or process) swaps target/d for a symlink to 'outside' and back, as
    fast as it can, while checkouts write files below d: as a whole tree, or path by path;
    the files written by the checkout's threads or by its worker processes."""
    if workers == "processes":
        monkeypatch.setattr(vst.checkout, "PROCESS_THRESHOLD", 0)
    h = Hostile(hostile_store, tmp_path)
    before = snapshot(tmp_path, h.target)
    files = [h.outside_entry(b"f%03d" % n) for n in range(40)]
    sub = h.tree(*(entry(f.name, FILE, BLOB, f.oid, f.size) for f in files))
    sub_entry = TreeEntry(b"d", DIR, ObjectType.TREE, sub, 0, MTIME)
    deeper = TreeEntry(b"e", DIR, ObjectType.TREE, sub, 0, MTIME)
    h.stored()
    (h.target / "d").mkdir()
    stop = threading.Event()
    if racer == "thread":
        swapper = threading.Thread(target=_swap_in_thread,
                                   args=(h.target / "d", h.outside, stop))
        swapper.start()
    else:
        process = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(h.target / "d"),
                                    str(h.outside)])
    rounds = errors = 0
    most, seconds = RACE_LIMITS[workers]
    started = time.monotonic()
    try:
        while rounds < most and time.monotonic() - started < seconds:
            rounds += 1
            try:
                with Checkout(hostile_store, str(h.target), in_place=rounds % 2 == 0) \
                        as checkout:
                    if rounds % 3 == 0:
                        checkout.write(b"d", sub_entry)
                    elif rounds % 3 == 1:
                        checkout.write(b"d/e", deeper)
                    else:
                        for item in files:
                            checkout.write(b"d/" + item.name, item)
                    checkout.finish()
            except VstError:
                errors += 1
    finally:
        stop.set()
        if racer == "thread":
            swapper.join()
        else:
            process.kill()
            process.wait()
    print(f"races ({racer} racer, {workers}): {rounds} rounds, {errors} ended with a VstError")
    assert rounds >= 5
    assert snapshot(tmp_path, h.target) == before, "a file escaped into 'outside'"


# -- generated trees -----------------------------------------------------------------------------

NAMES = [b"a", b"b", b"d", b"x", b"sentinel", b"outside", b"target", b"..", b".", b"",
         b".vst", b".VsT", b"a/b", b"../outside", b"/abs", b"\0", b"\xff",
         "\uff0e\uff0e".encode(), ".vst\u200b".encode(), b"n" * 300]
LINK_TARGETS = [b"../outside", b"../../outside", b"..", b"/", b"a", b"d/x", b"nowhere", b"",
                b"../outside/sentinel", b"../" * 40 + b"outside", b"x\0y"]
MODES = [FILE, S_IFREG | 0o755, S_IFREG | 0o4755, S_IFREG | 0o600, DIR, S_IFDIR | 0o500,
         LINK, 0o020644, 0o010644, 0o170755, S_IFREG | 0o7777]
ATTRS = [(), ((b"hardlink", b"a"),), ((b"hardlink", b"../outside/sentinel"),),
         ((b"hardlink", b"d/x"),), ((b"xattr.user.k", b"v"),), ((b"xattr.trusted.k", b"v"),),
         ((b"zz", b"?"),)]


def _generated_entry(h: Hostile, rng: random.Random, depth: int, outside: bytes) -> bytes:
    name = rng.choice(NAMES)
    mode = rng.choice(MODES)
    attrs = rng.choice(ATTRS)
    file_type = stat.S_IFMT(mode)
    if file_type == S_IFDIR and depth < 3:
        children = _generated_entries(h, rng, depth + 1, outside)
        # sometimes unsorted
        return entry(name, mode, TREE, h.tree(*children, keep_order=rng.random() < 0.05), 0,
                     attrs)
    if file_type == S_IFLNK:
        target = rng.choice([*LINK_TARGETS, outside])
        size = len(target) if rng.random() < 0.9 else len(target) + 1
        return entry(name, mode, BLOB, h.blob(target), size, attrs)
    data = rng.choice([b"", b"x", b"sentinel", b"../outside"])
    kind = rng.choice([BLOB] * 8 + [TREE, CHUNKS, COMMIT])
    size = len(data) if rng.random() < 0.9 else len(data) + rng.choice([-1, 1])
    return entry(name, mode, kind, h.blob(data), max(size, 0), attrs)


def _generated_entries(h: Hostile, rng: random.Random, depth: int, outside: bytes) -> list[bytes]:
    entries: dict[bytes, bytes] = {}
    for _ in range(rng.randint(0, 4)):
        raw = _generated_entry(h, rng, depth, outside)
        entries[_entry_name(raw)] = raw
    return list(entries.values())


def test_generated_hostile_trees(hostile_store: Store, tmp_path: Path) -> None:
    rng = random.Random(12)
    h = Hostile(hostile_store, tmp_path)
    outside = os.fsencode(h.outside)
    before = snapshot(tmp_path, h.target)
    trees = [h.tree(*_generated_entries(h, rng, 0, outside)) for _ in range(GENERATED)]
    outcomes = {"ok": 0, "refused": 0}
    for number, tree in enumerate(trees):
        if number % 4 == 0:  # a few trees restored over each other, then a fresh target
            _clear(h.target)
        error = h.restore(tree)
        outcomes["ok" if error is None else "refused"] += 1
        assert snapshot(tmp_path, h.target) == before, f"escape from tree {number}"
    print(f"generated: {GENERATED} trees, {outcomes}")
    assert outcomes["ok"] > GENERATED // 20 and outcomes["refused"] > GENERATED // 20


def _clear(target: Path) -> None:
    """Empty ``target`` without following symlinks or recursing (it may nest 1,000 deep)."""
    stack: list[tuple[int, str]] = [(os.open(target, os.O_RDONLY | os.O_DIRECTORY), "")]
    try:
        while stack:
            fd, name = stack[-1]
            subdir = None
            for child in os.listdir(fd):
                try:
                    os.unlink(child, dir_fd=fd)
                except IsADirectoryError:
                    subdir = child
                    break
            if subdir is not None:
                opened = os.open(subdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.fchmod(opened, 0o700)
                stack.append((opened, subdir))
                continue
            stack.pop()
            os.close(fd)
            if stack:
                os.rmdir(name, dir_fd=stack[-1][0])
    finally:
        for fd, _ in stack:
            os.close(fd)


def test_chunk_list_helper_matches_the_codec() -> None:
    refs = (ChunkRef(_missing(1), 5), ChunkRef(_missing(2), 7))
    body = bytes([1]) + b"".join(r.oid.raw + struct.pack(">I", r.size) for r in refs)
    assert ChunkList(refs).encode() == body
