"""Plumbing: rev-parse, ls-tree/mktree (and their record format), write-tree, hash-object,
commit-tree and dates, push-blob, fsck and index rebuild. Functions are called directly;
a few checks go through the real command line."""

from __future__ import annotations

import errno
import io
import os
import random
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import vst_run as vst

from vst.errors import (
    NotFound,
    ObjectMissing,
    UsageError,
    VstError,
)
from vst.objects.commit import Signature
from vst.objects.ids import PLAIN_IDS
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.cat_file import file_content
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.fsck import fsck
from vst.plumbing.hash_object import hash_object
from vst.plumbing.ident import parse_date, signature
from vst.plumbing.index_rebuild import index_rebuild
from vst.plumbing.ls_tree import format_record, ls_tree, parse_record
from vst.plumbing.mktree import mktree, parse_records
from vst.plumbing.push_blob import push_blob
from vst.plumbing.quoting import quote, unquote
from vst.plumbing.reachable import reachable
from vst.plumbing.rev_parse import rev_parse
from vst.plumbing.write_tree import write_tree
from vst.store import Store

SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)
VST = str(Path(sys.executable).with_name("vst"))

# Names a filesystem allows and a line-oriented format must survive, with their C-quoted
# form in ls-tree's text output.
ODD_NAMES: dict[bytes, str] = {
    b"plain.txt": "plain.txt",
    b"with space": "with space",
    b"trailing space ": "trailing space ",
    b"tab\there": '"tab\\there"',
    b"new\nline": '"new\\nline"',
    b"cr\rhere": '"cr\\rhere"',
    b"\xff\xfebin": '"\\377\\376bin"',
    b'q"uote': '"q\\"uote"',
    b'"leading-quote': '"\\"leading-quote"',
    b"back\\slash": '"back\\\\slash"',
    "é".encode(): '"\\303\\251"',
    b"\x01ctrl\x7f": '"\\001ctrl\\177"',
    b"-dash": "-dash",
}


def _write(path: bytes | str | Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _commit(store: Store, tree: Oid, parents: Sequence[Oid] = (), message: bytes = b"m") -> Oid:
    return commit_tree(store, tree, list(parents), message, author=SIG, committer=SIG)


def _pack_path(store: Store, oid: Oid) -> Path:
    pack = store.odb.index.lookup(oid).pack.hex
    return Path(store.path, "volumes", "default", "packs", pack[:2], pack)


# -- rev-parse --------------------------------------------------------------------------------


@dataclass
class History:
    c1: Oid
    c2: Oid
    side: Oid
    merge: Oid
    tree1: Oid
    tree2: Oid


@pytest.fixture
def history(store: Store, tmp_path: Path, make_tree: Callable[..., Path]) -> History:
    """c1 <- c2 <- merge -> side, with collection 'c' moved c1, c2, merge."""
    tree1 = write_tree(store, str(make_tree(tmp_path / "v1", {
        "file": b"version 1", "sub": {"x": b"x", "deeper": {"y": b"y"}}})))
    tree2 = write_tree(store, str(make_tree(tmp_path / "v2", {
        "file": b"version 2", "sub": {"x": b"x", "deeper": {"y": b"y"}}})))
    side_tree = write_tree(store, str(make_tree(tmp_path / "side", {"other": b"side"})))
    c1 = _commit(store, tree1, [], b"one")
    c2 = _commit(store, tree2, [c1], b"two")
    side = _commit(store, side_tree, [], b"side")
    merge = _commit(store, tree2, [c2, side], b"merge")
    store.create_collection("c")
    store.update_ref("c", c1, None, committer=SIG, message="one")
    store.update_ref("c", c2, c1, committer=SIG, message="two")
    store.update_ref("c", merge, c2, committer=SIG, message="merge")
    return History(c1, c2, side, merge, tree1, tree2)


def test_rev_parse_ids_and_prefixes(store: Store, history: History) -> None:
    merge = history.merge
    assert rev_parse(store, merge.hex) == merge
    for length in (7, 12, 40, 63):
        assert rev_parse(store, merge.hex[:length]) == merge
    others = [oid for oid, _ in store.odb.index.all_objects()
              if oid != merge and oid.hex.startswith(merge.hex[:4])]
    if others:
        with pytest.raises(UsageError, match="ambiguous"):
            rev_parse(store, merge.hex[:4])
    else:
        assert rev_parse(store, merge.hex[:4]) == merge


@pytest.mark.parametrize(("rev", "expected"), [
    ("c", "merge"), ("c~0", "merge"), ("c^0", "merge"), ("c~", "c2"), ("c~1", "c2"),
    ("c^", "c2"), ("c^1", "c2"), ("c~2", "c1"), ("c^^", "c1"), ("c~1~1", "c1"),
    ("c^2", "side"), ("c^2~0", "side"), ("c@{0}", "merge"), ("c@{1}", "c2"),
    ("c@{2}", "c1"), ("c@{1}~1", "c1"), ("c:", "tree2"), ("c~2:", "tree1"),
])
def test_rev_parse_revisions(store: Store, history: History, rev: str, expected: str) -> None:
    assert rev_parse(store, rev) == getattr(history, expected)


def test_rev_parse_paths(store: Store, history: History) -> None:
    blob2 = rev_parse(store, "c:file")
    assert store.odb.get_typed(blob2, ObjectType.BLOB) == b"version 2"
    assert store.odb.get_typed(rev_parse(store, "c~2:file"), ObjectType.BLOB) == b"version 1"
    assert store.odb.get_typed(rev_parse(store, "c:sub/deeper/y"), ObjectType.BLOB) == b"y"
    assert rev_parse(store, "c:sub/deeper/") == rev_parse(store, "c:sub/deeper")
    assert rev_parse(store, f"{history.tree1.hex}:file") == rev_parse(store, "c~2:file")
    assert rev_parse(store, f"{history.merge.hex[:10]}^2:other") == \
        PLAIN_IDS.compute(ObjectType.BLOB, b"side")


@pytest.mark.parametrize(("rev", "error", "text"), [
    ("nope", NotFound, "unknown revision"),
    ("nope@{0}", NotFound, "no collection"),
    ("nope:file", NotFound, "unknown revision"),
    ("abc", NotFound, "unknown revision"),  # too short to be a prefix
    ("ABCDEF", NotFound, "unknown revision"),  # ids are lower-case
    ("0000", NotFound, "no object"),
    ("c~3", NotFound, "no parent"),
    ("c~10", NotFound, "no parent"),
    ("c^3", NotFound, "no parent 3"),
    ("c^2^", NotFound, "no parent"),
    ("c@{3}", NotFound, "only 3 entries"),
    ("c@{99}", NotFound, "only 3 entries"),
    ("c:missing", NotFound, "does not exist"),
    ("c:sub/missing/y", NotFound, "does not exist"),
    ("c:file/x", UsageError, "not a tree"),
    ("c:file~1", NotFound, "does not exist"),
    ("c:sub~1", NotFound, "does not exist"),
    ("", UsageError, "empty revision"),
    (":file", UsageError, "bad revision"),
    ("~1", UsageError, "bad revision"),
])
def test_rev_parse_errors(store: Store, history: History, rev: str, error: type[Exception],
                          text: str) -> None:
    with pytest.raises(error, match=text) as info:
        rev_parse(store, rev)
    assert "\n" not in str(info.value)


def test_rev_parse_of_an_empty_collection(store: Store) -> None:
    store.create_collection("empty")
    with pytest.raises(NotFound, match="no commits"):
        rev_parse(store, "empty")
    with pytest.raises(NotFound, match="only 0 entries"):
        rev_parse(store, "empty@{0}")


def _colliding_blobs() -> tuple[str, bytes, bytes]:
    """Two blob contents whose ids share their first 4 hex digits (birthday search)."""
    seen: dict[str, bytes] = {}
    for i in range(100_000):
        data = b"blob %d" % i
        prefix = PLAIN_IDS.compute(ObjectType.BLOB, data).hex[:4]
        if prefix in seen:
            return prefix, seen[prefix], data
        seen[prefix] = data
    raise AssertionError("no collision found")


def test_rev_parse_ambiguous_prefix(store: Store) -> None:
    prefix, first, second = _colliding_blobs()
    with store.odb.writer() as writer:
        a = writer.put(ObjectType.BLOB, first)
        b = writer.put(ObjectType.BLOB, second)
    with pytest.raises(UsageError, match="ambiguous") as info:
        rev_parse(store, prefix)
    assert info.value.hint
    differ = next(i for i in range(64) if a.hex[i] != b.hex[i])
    assert rev_parse(store, a.hex[:differ + 1]) == a
    assert rev_parse(store, b.hex[:differ + 1]) == b
    # A collection whose name reads like that prefix wins over the ids, as a branch does.
    store.create_collection(prefix)
    commit = _commit(store, mktree(store, []))
    store.update_ref(prefix, commit, None, committer=SIG, message="x")
    assert rev_parse(store, prefix) == commit


# -- ls-tree, quoting and mktree --------------------------------------------------------------


def _odd_tree(store: Store, root: Path) -> Oid:
    root.mkdir()
    base = os.fsencode(root)
    for name in ODD_NAMES:
        _write(base + b"/" + name, b"content of " + name)
    os.mkdir(base + b"/dir \n\xff")
    _write(base + b"/dir \n\xff/in\tside", b"inside")
    return write_tree(store, str(root))


def test_ls_tree_quotes_odd_names(store: Store, tmp_path: Path) -> None:
    tree = _odd_tree(store, tmp_path / "odd")
    listed = {item.path: item for item in ls_tree(store, tree.hex)}
    assert set(listed) == {*ODD_NAMES, b"dir \n\xff"}
    for name, shown in ODD_NAMES.items():
        record = format_record(listed[name])
        assert record.endswith(b"\t" + shown.encode() + b"\n"), record
        assert record.count(b"\n") == 1 and record.count(b"\t") == 1
        head = record.split(b"\t")[0].decode()
        mode, kind, oid, size, mtime = head.split(" ")
        assert (mode, kind, size) == ("100644", "blob", str(len(b"content of " + name)))
        assert oid == PLAIN_IDS.compute(ObjectType.BLOB, b"content of " + name).hex
        assert int(mtime) == listed[name].entry.mtime_ns
        # -z: raw path, NUL-terminated.
        assert format_record(listed[name], nul=True).endswith(b"\t" + name + b"\0")
    inside = [item for item in ls_tree(store, tree.hex, recursive=True)
              if item.path.startswith(b"dir ")]
    assert [item.path for item in inside] == [b"dir \n\xff/in\tside"]
    assert format_record(inside[0]).endswith(b'\t"dir \\n\\377/in\\tside"\n')


def test_quote_round_trips_every_byte() -> None:
    rng = random.Random(5)
    names = [bytes([b]) for b in range(1, 256) if b != 0x2F]
    names += [bytes(rng.choice([b for b in range(1, 256) if b != 0x2F])
                    for _ in range(rng.randint(1, 20))) for _ in range(500)]
    for name in names:
        shown = quote(name)
        assert shown.isprintable() and "\n" not in shown and "\t" not in shown
        assert unquote(shown) == name


def test_ls_tree_recursion_and_filters(store: Store, history: History) -> None:
    def paths(**kwargs: object) -> list[bytes]:
        return [item.path for item in ls_tree(store, "c", **kwargs)]  # type: ignore[arg-type]

    assert paths() == [b"file", b"sub"]
    assert paths(recursive=True) == [b"file", b"sub/deeper/y", b"sub/x"]
    assert paths(recursive=True, show_trees=True) == [
        b"file", b"sub", b"sub/deeper", b"sub/deeper/y", b"sub/x"]
    assert paths(paths=[b"sub"]) == [b"sub"]  # as git: the entry itself
    assert paths(recursive=True, paths=[b"sub"]) == [b"sub/deeper/y", b"sub/x"]
    assert paths(paths=[b"sub/x"]) == [b"sub/x"]
    assert paths(paths=[b"sub/deeper/y", b"file"]) == [b"file", b"sub/deeper/y"]
    assert paths(paths=[b"nothing"]) == []
    assert paths(paths=[b"su"]) == []  # a prefix of a name is not a match
    assert paths(show_trees=True, paths=[b"sub/x"]) == [b"sub", b"sub/x"]
    assert paths(paths=[b"sub/"]) == [b"sub/deeper", b"sub/x"]  # as git: its contents
    assert paths(recursive=True, paths=[b"sub/"]) == [b"sub/deeper/y", b"sub/x"]
    sizes = {i.path: i.entry.size for i in ls_tree(store, "c~2", recursive=True)}
    assert sizes[b"file"] == len(b"version 1")


def test_ls_tree_of_a_blob_or_unknown(store: Store, history: History) -> None:
    with pytest.raises(UsageError, match="not a tree"):
        list(ls_tree(store, "c:file"))
    with pytest.raises(NotFound):
        list(ls_tree(store, "nope"))


def test_ls_tree_of_a_very_deep_tree(store: Store) -> None:
    """Deeper than Python's recursion limit: listing must not crash."""
    depth = 1500
    with store.odb.writer() as writer:
        tree = writer.put(ObjectType.TREE, Tree().encode())
        for _ in range(depth):
            tree = writer.put(ObjectType.TREE, Tree.from_entries(
                [TreeEntry(b"d", stat.S_IFDIR | 0o755, ObjectType.TREE, tree)]).encode())
    listed = list(ls_tree(store, tree.hex, recursive=True, show_trees=True))
    assert len(listed) == depth
    assert listed[-1].path == b"/".join([b"d"] * depth)


def _records(store: Store, tree: Oid, *, nul: bool) -> bytes:
    return b"".join(format_record(item, nul=nul) for item in ls_tree(store, tree.hex))


@pytest.mark.parametrize("nul", [False, True], ids=["text", "z"])
def test_ls_tree_mktree_round_trip(store: Store, tmp_path: Path, nul: bool) -> None:
    tree = _odd_tree(store, tmp_path / "odd")
    assert mktree(store, parse_records(_records(store, tree, nul=nul), nul=nul)) == tree


def test_mktree_keeps_attributes_modes_and_times(store: Store) -> None:
    with store.odb.writer() as writer:
        blob = writer.put(ObjectType.BLOB, b"data")
        target = writer.put(ObjectType.BLOB, b"../elsewhere")
        empty = writer.put(ObjectType.TREE, Tree().encode())
    entries = [
        TreeEntry(b"file", stat.S_IFREG | 0o4755, ObjectType.BLOB, blob, 4, -5,
                  (("user.tag", b"\x00\xffx"), ("z", b""))),
        TreeEntry(b"link", stat.S_IFLNK | 0o777, ObjectType.BLOB, target, 12, 2**62),
        TreeEntry(b"dir", stat.S_IFDIR | 0o700, ObjectType.TREE, empty, 0, 0),
    ]
    tree = mktree(store, entries)
    text = _records(store, tree, nul=False)
    assert b"104755 blob " + blob.hex.encode() + b" 4 -5 user.tag=00ff78 z=\tfile\n" in text
    for nul in (False, True):
        records = _records(store, tree, nul=nul)
        assert mktree(store, parse_records(records, nul=nul)) == tree
        assert [parse_record(r, nul=nul)[1] for r in
                records.split(b"\0" if nul else b"\n")[:-1]] == list(store.odb.read_tree(tree)
                                                                 .entries)


GOOD = "100644 blob " + "ab" * 32 + " 1 2\tgood\n"


BAD_RECORDS = [
    ("100644 blob " + "ab" * 32 + " 1 2 x\n", "missing TAB"),
    ("100644 blob " + "ab" * 32 + "\tx\n", "expected '<mode>"),
    ("100648 blob " + "ab" * 32 + " 1 2\tx\n", "malformed mode"),
    ("100644 blub " + "ab" * 32 + " 1 2\tx\n", "unknown object type 'blub'"),
    ("100644 blob " + "ab" * 31 + " 1 2\tx\n", "malformed object id"),
    ("100644 blob " + "AB" * 32 + " 1 2\tx\n", "malformed object id"),
    ("100644 blob " + "ab" * 32 + " one 2\tx\n", "malformed mode, size or mtime"),
    ("100644 blob " + "ab" * 32 + " -1 2\tx\n", "size out of range"),
    ("100644 blob " + "ab" * 32 + " 1 2 k=zz\tx\n", "malformed attribute 'k=zz'"),
    ("100644 blob " + "ab" * 32 + " 1 2 novalue\tx\n", "malformed attribute"),
    ("100644 blob " + "ab" * 32 + ' 1 2\t"unterminated\n', "unterminated"),
    ("100644 blob " + "ab" * 32 + ' 1 2\t"bad\\q"\n', "unknown escape"),
    ("100644 blob " + "ab" * 32 + " 1 2\ta/b\n", "has a '/'"),
    ("100644 blob " + "ab" * 32 + " 1 2\t..\n", "name '..'"),
    ("100644 blob " + "ab" * 32 + " 1 2\t.VST\n", "reserved"),
    ("100644 blob " + "ab" * 32 + " 1 2\t\n", "empty name"),
    ("040755 blob " + "ab" * 32 + " 0 2\tx\n", "cannot point at a blob"),
    ("140755 tree " + "ab" * 32 + " 0 2\tx\n", "invalid mode"),
    ("040755 tree " + "ab" * 32 + " 5 2\tx\n", "size 0"),
    (GOOD, "duplicate name 'good' (also record 1)"),
]


@pytest.mark.parametrize(("record", "reason"), BAD_RECORDS, ids=[r for _, r in BAD_RECORDS])
def test_mktree_rejects_bad_records(store: Store, record: str, reason: str) -> None:
    data = (GOOD + record).encode()
    with pytest.raises(UsageError) as info:
        mktree(store, parse_records(data), allow_missing=True)
    message = str(info.value)
    assert message.startswith("mktree: record 2: "), message
    assert reason in message
    assert "\n" not in message
    # The same through the command line: one line, exit 2, nothing stored.
    ran = vst("--store", store.path, "mktree", "--missing", input=data)
    assert ran.code == 2 and ran.out == b""
    assert ran.err.splitlines() == [f"vst: error: {message}"]


def test_mktree_refuses_missing_and_mistyped_objects(store: Store) -> None:
    with store.odb.writer() as writer:
        blob = writer.put(ObjectType.BLOB, b"data")
    missing = Oid(b"\x11" * 32)
    with pytest.raises(ObjectMissing, match=r"'\"new\\nline\"' points at missing object"):
        mktree(store, parse_records(
            f'100644 blob {missing} 1 0\t"new\\nline"\n'.encode()))
    with pytest.raises(UsageError, match="is a blob, not a tree"):
        mktree(store, parse_records(f"040755 tree {blob} 0 0\td\n".encode()))
    assert mktree(store, parse_records(f"100644 blob {missing} 1 0\tx\n".encode()),
                  allow_missing=True)


# -- write-tree -----------------------------------------------------------------------------------


def test_write_tree_stores_what_is_on_disk(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    _write(root / "file", b"hello")
    _write(root / "exec", b"#!/bin/sh\n")
    (root / "empty").mkdir()
    (root / "private").mkdir()
    _write(root / "private" / "inner", b"inner")
    (root / "outside").mkdir()
    secret = tmp_path / "secret"
    _write(secret, b"must not be stored")
    os.symlink(secret, root / "link")
    os.symlink("nowhere/at/all", root / "dangling")
    os.symlink("private", root / "dirlink")
    os.mkfifo(root / "fifo")
    (root / ".vst").mkdir()
    _write(root / ".vst" / "state", b"working copy state")
    _write(root / ".VsT", b"also reserved")
    os.chmod(root / "file", 0o640)
    os.chmod(root / "exec", 0o755)
    os.chmod(root / "private", 0o700)
    os.utime(root / "file", ns=(1, 1_234_567_890_123_456_789))
    os.utime(root / "link", ns=(1, 1_111_111_111_000_000_007), follow_symlinks=False)
    os.utime(root / "empty", ns=(1, 987_654_321_000_000_001))
    warnings: list[str] = []
    tree = write_tree(store, str(root), warn=warnings.append)

    entries = {e.name: e for e in store.odb.read_tree(tree).entries}
    assert set(entries) == {b"file", b"exec", b"empty", b"private", b"outside", b"link",
                            b"dangling", b"dirlink"}
    file = entries[b"file"]
    assert (file.mode, file.kind, file.size) == (stat.S_IFREG | 0o640, ObjectType.BLOB, 5)
    assert file.mtime_ns == 1_234_567_890_123_456_789
    assert store.odb.get_typed(file.oid, ObjectType.BLOB) == b"hello"
    assert entries[b"exec"].mode == stat.S_IFREG | 0o755
    assert entries[b"empty"].mode & stat.S_IFMT(0xFFFF) == stat.S_IFDIR
    assert entries[b"empty"].mtime_ns == 987_654_321_000_000_001
    assert store.odb.read_tree(entries[b"empty"].oid).entries == ()
    assert entries[b"private"].mode == stat.S_IFDIR | 0o700
    assert [e.name for e in store.odb.read_tree(entries[b"private"].oid).entries] == [b"inner"]
    for name, target in ((b"link", os.fsencode(secret)), (b"dangling", b"nowhere/at/all"),
                         (b"dirlink", b"private")):
        link = entries[name]
        assert stat.S_ISLNK(link.mode), name
        assert link.kind == ObjectType.BLOB and link.size == len(target)
        assert store.odb.get_typed(link.oid, ObjectType.BLOB) == target
    assert entries[b"link"].mtime_ns == 1_111_111_111_000_000_007
    assert not store.odb.has(PLAIN_IDS.compute(ObjectType.BLOB, b"must not be stored"))
    assert not store.odb.has(PLAIN_IDS.compute(ObjectType.BLOB, b"working copy state"))
    assert len(warnings) == 1 and "fifo" in warnings[0]
    assert "not a regular file" in warnings[0]
    # The same directory gives the same tree; nothing new is stored the second time.
    counts = store.odb.index.count()
    assert write_tree(store, str(root)) == tree
    assert store.odb.index.count() == counts


def test_write_tree_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        write_tree(store, str(tmp_path / "missing"))
    _write(tmp_path / "file", b"x")
    with pytest.raises(UsageError, match="not a directory"):
        write_tree(store, str(tmp_path / "file"))


def _remove_chain(root: Path, depth: int) -> None:
    """Remove root/a/a/.../a without recursion (shutil.rmtree recurses per level)."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for _ in range(depth - 1):
            try:
                fds.append(os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
            except FileNotFoundError:
                break
        for fd in reversed(fds):
            try:
                os.rmdir("a", dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        for fd in fds:
            os.close(fd)


def test_write_tree_of_a_very_deep_directory(store: Store, tmp_path: Path) -> None:
    depth = 1100
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    try:
        tree = write_tree(store, str(root))
        assert len(list(ls_tree(store, tree.hex, recursive=True, show_trees=True))) == depth
    finally:
        _remove_chain(root, depth)


# -- hash-object -----------------------------------------------------------------------------------


def test_hash_object_small_file(store: Store, tmp_path: Path) -> None:
    data = b"hello world\n"
    _write(tmp_path / "f", data)
    expected = PLAIN_IDS.compute(ObjectType.BLOB, data)
    (without_store,) = hash_object(None, paths=[str(tmp_path / "f")])
    (dry,) = hash_object(store, paths=[str(tmp_path / "f")])
    assert without_store.oid == dry.oid == expected
    assert (dry.kind, dry.size) == (ObjectType.BLOB, len(data))
    assert not store.odb.has(expected)
    (written,) = hash_object(store, paths=[str(tmp_path / "f")], write=True)
    assert written.oid == expected and store.odb.has(expected)
    assert store.odb.get(expected) == (ObjectType.BLOB, data)
    (from_stdin,) = hash_object(store, stdin=io.BytesIO(data))
    assert from_stdin.oid == expected
    _write(tmp_path / "empty", b"")
    (empty,) = hash_object(store, paths=[str(tmp_path / "empty")], write=True)
    assert empty.oid == PLAIN_IDS.compute(ObjectType.BLOB, b"")
    assert store.odb.get(empty.oid) == (ObjectType.BLOB, b"")


def test_hash_object_large_file_becomes_chunks(store: Store, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(9 * 1024 * 1024 + 123)
    path = str(tmp_path / "big")
    _write(path, data)
    (without_store,) = hash_object(None, paths=[path])
    (dry,) = hash_object(store, paths=[path])
    assert not store.odb.has(dry.oid)
    (written,) = hash_object(store, paths=[path], write=True)
    assert without_store.oid == dry.oid == written.oid
    assert written.kind == ObjectType.CHUNKS and written.size == len(data)
    chunks = store.odb.read_chunk_list(written.oid).chunks
    assert len(chunks) >= 3
    assert sum(c.size for c in chunks) == len(data)
    assert all(c.size <= store.chunk_params.max for c in chunks)
    assert b"".join(file_content(store, written.oid)) == data
    (streamed,) = hash_object(store, stdin=io.BytesIO(data))
    assert streamed.oid == written.oid
    # Through the command line: the file comes back byte-exact.
    ran = vst("--store", store.path, "cat-file", "--content", written.oid.hex)
    assert ran.code == 0 and ran.err == ""
    assert ran.out == data
    assert vst("--store", store.path, "cat-file", "-t", written.oid.hex).out == b"chunks\n"


def test_large_files_store_each_new_chunk_once_and_reuse_stored_ones(store: Store,
                                                                   tmp_path: Path) -> None:
    """Chunks of a large file are hashed, looked up and sealed by worker threads (one job a
    chunk): a chunk repeated within the file, or already stored, is not written again."""
    block = random.Random(3).randbytes(6 * 1024 * 1024)
    _write(str(tmp_path / "twice"), block + block)  # the second half cuts like the first
    (twice,) = hash_object(store, paths=[str(tmp_path / "twice")], write=True)
    chunks = store.odb.read_chunk_list(twice.oid).chunks
    distinct = {c.oid for c in chunks}
    assert len(distinct) < len(chunks)  # the test means something: chunks repeat
    objects = store.odb.index.count()[0]
    assert objects == len(distinct) + 1  # each chunk once, and the chunks object
    assert b"".join(file_content(store, twice.oid)) == block + block
    # A file sharing all but its tail with the stored one writes only the new chunks.
    _write(str(tmp_path / "longer"), block + block + random.Random(4).randbytes(100_000))
    (longer,) = hash_object(store, paths=[str(tmp_path / "longer")], write=True)
    new = {c.oid for c in store.odb.read_chunk_list(longer.oid).chunks} - distinct
    assert 1 <= len(new) <= 2  # the tail, and the chunk the tail's cut point moved
    assert store.odb.index.count()[0] == objects + len(new) + 1
    assert b"".join(file_content(store, longer.oid))[-100_000:] == \
        random.Random(4).randbytes(100_000)


def test_hash_object_refuses_non_files(store: Store, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a regular file"):
        hash_object(store, paths=[str(tmp_path)])
    with pytest.raises(NotFound):
        hash_object(store, paths=[str(tmp_path / "missing")])
    with pytest.raises(UsageError):
        hash_object(None, paths=[], stdin=io.BytesIO(b"x"), write=True)


def test_hash_object_follows_a_named_symlink_and_reads_dash_as_stdin(store: Store,
                                                                     tmp_path: Path) -> None:
    _write(tmp_path / "real", b"content\n")
    os.symlink("real", tmp_path / "link")
    (via_link,) = hash_object(store, paths=[str(tmp_path / "link")])
    assert via_link.oid == PLAIN_IDS.compute(ObjectType.BLOB, b"content\n")
    ran = vst("hash-object", "-", input=b"content\n")
    assert ran.code == 0 and ran.out.decode().strip() == via_link.oid.hex
    assert vst("hash-object", "-", "-", input=b"x").code == 2


def test_push_blob_sends_shared_subtrees_before_their_parents(store: Store,
                                                              tmp_path: Path) -> None:
    # Two directories holding the same subtree: the walk meets it twice.
    for top in ("a", "b"):
        (tmp_path / "src" / top / "shared").mkdir(parents=True)
        _write(tmp_path / "src" / top / "shared" / "f", b"same")
    tree = write_tree(store, str(tmp_path / "src"))
    commit = _commit(store, tree)
    order = [oid for oid, _ in reachable(store, [commit])]
    position = {oid: i for i, oid in enumerate(order)}
    assert len(order) == len(set(order))
    for oid in order:
        kind, content = store.odb.get(oid)
        if kind == ObjectType.TREE:
            for entry in Tree.decode(content).entries:
                assert position[entry.oid] < position[oid], "a child after its parent"
    assert order[-1] == commit


# -- commit-tree and dates ---------------------------------------------------------------------


def test_commit_tree_parents_and_messages(store: Store) -> None:
    tree = mktree(store, [])
    author = Signature("Author", "author@example.com", 1_600_000_000, -420)
    root = commit_tree(store, tree, [], b"root", author=author, committer=SIG)
    commit = store.odb.read_commit(root)
    assert commit.parents == () and commit.tree == tree
    assert commit.message == b"root\n"  # a final newline is added
    assert commit.author == author and commit.committer == SIG
    child = _commit(store, tree, [root], b"two\n\nparagraphs\n")
    assert store.odb.read_commit(child).message == b"two\n\nparagraphs\n"
    merge = _commit(store, tree, [child, root], b"")
    assert store.odb.read_commit(merge).parents == (child, root)
    assert store.odb.read_commit(merge).message == b""
    assert store.odb.get_typed(child, ObjectType.COMMIT).startswith(
        f"tree {tree}\nparent {root}\nauthor Test User <test@example.com> 1700000000 +0100\n"
        .encode())


def test_commit_tree_errors(store: Store) -> None:
    tree = mktree(store, [])
    root = _commit(store, tree)
    with pytest.raises(UsageError, match="not a tree"):
        _commit(store, root)
    with pytest.raises(UsageError, match="not a commit"):
        _commit(store, tree, [tree])
    with pytest.raises(UsageError, match="duplicate parent"):
        _commit(store, tree, [root, root])
    with pytest.raises(ObjectMissing):
        _commit(store, tree, [Oid(b"\x33" * 32)])
    with pytest.raises(ObjectMissing):
        _commit(store, Oid(b"\x44" * 32))


@pytest.mark.parametrize(("text", "expected"), [
    ("@1700000000 +0100", (1_700_000_000, 60)),
    ("1700000000 +0100", (1_700_000_000, 60)),
    ("1700000000 -0230", (1_700_000_000, -150)),
    ("1700000000 +05:30", (1_700_000_000, 330)),
    ("@0 +0000", (0, 0)),
    ("-1 +0000", (-1, 0)),
    ("2024-05-01T12:00:00+02:00", (1_714_557_600, 120)),
    ("2024-05-01 12:00:00 +0200", (1_714_557_600, 120)),
    ("2024-05-01T10:00:00Z", (1_714_557_600, 0)),
    ("2024-05-01T05:00:00-05:00", (1_714_557_600, -300)),
    ("Wed, 01 May 2024 12:00:00 +0200", (1_714_557_600, 120)),
    ("  @1700000000 +0100  ", (1_700_000_000, 60)),
])
def test_parse_date(text: str, expected: tuple[int, int]) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "1700000000 +01",
                                  "12:00", "Wed, 32 May 2024 12:00:00 +0200"])
def test_parse_date_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid date"):
        parse_date(text)


def test_signature() -> None:
    sig = signature("Some One", "one@example.com", "2024-05-01T12:00:00+02:00")
    assert sig == Signature("Some One", "one@example.com", 1_714_557_600, 120)
    assert sig.encode() == b"Some One <one@example.com> 1714557600 +0200"
    for name, email in (("a<b", "x@y"), ("a", "x>y"), (" padded", "x@y"), ("a\nb", "x@y")):
        with pytest.raises(UsageError, match="invalid identity"):
            signature(name, email, "@0 +0000")


# -- push-blob ----------------------------------------------------------------------------------


def test_push_blob_sends_only_what_is_missing(store: Store, tmp_path: Path,
                                              make_tree: Callable[..., Path]) -> None:
    big = random.Random(3).randbytes(6 * 1024 * 1024)
    source_dir = make_tree(tmp_path / "src", {
        "a.txt": b"A", "dup.txt": b"A", "big.bin": big,
        "sub": {"b.txt": b"B", "deeper": {"c.txt": b"C"}}, "link": ("symlink", "a.txt")})
    tree = write_tree(store, str(source_dir))
    commit = _commit(store, tree, [], b"backup")
    destination = Store.init(str(tmp_path / "dest"))
    try:
        everything = {oid for oid, _ in reachable(store, [commit])}
        sub_tree = rev_parse(store, f"{tree}:sub")
        part = push_blob(store, destination, [sub_tree], recursive=True)
        assert set(part) == {oid for oid, _ in reachable(store, [sub_tree])}
        sent: list[Oid] = []
        rest = push_blob(store, destination, [commit], recursive=True, on_sent=sent.append)
        assert rest == sent
        assert len(rest) == len(set(rest))
        assert set(rest) == everything - set(part)
        assert not set(rest) & set(part)
        # Children are sent before what names them.
        position = {oid: i for i, oid in enumerate(rest)}
        for oid in rest:
            kind, content = store.odb.get(oid)
            if kind == ObjectType.TREE:
                for entry in Tree.decode(content).entries:
                    assert position.get(entry.oid, -1) < position[oid]
        assert push_blob(store, destination, [commit], recursive=True) == []
        # Without -r only the named object is sent.
        lone = _commit(store, tree, [commit], b"next")
        assert push_blob(store, destination, [lone]) == [lone]

        destination.create_collection("c")
        destination.update_ref("c", lone, None, committer=SIG, message="pushed")
        result = fsck(destination, full=True)
        assert result.problems == []
        assert result.objects_checked == len(everything) + 1
        assert b"".join(file_content(destination, rev_parse(destination, "c:big.bin"))) == big
    finally:
        destination.close()


# -- fsck and index rebuild ----------------------------------------------------------------------


@pytest.fixture
def committed(store: Store, tmp_path: Path, make_tree: Callable[..., Path]) -> Oid:
    """A collection 'c' with one commit of a small tree (files, a subdirectory, a symlink)."""
    tree = write_tree(store, str(make_tree(tmp_path / "src", {
        "a.txt": b"alpha", "sub": {"b.txt": b"bravo"}, "link": ("symlink", "a.txt")})))
    commit = _commit(store, tree, [], b"backup")
    store.create_collection("c")
    store.update_ref("c", commit, None, committer=SIG, message="backup")
    return commit


def test_fsck_clean_store(store: Store, committed: Oid) -> None:
    result = fsck(store, full=True)
    assert result.problems == []
    assert result.objects_checked == len(list(reachable(store, [committed])))
    assert result.packs_checked == store.odb.index.count()[1]
    ran = vst("--store", store.path, "fsck", "--full")
    assert ran.code == 0 and ran.out == b""
    assert "no problems" in ran.err


def test_fsck_reports_a_missing_blob_with_what_names_it(store: Store, committed: Oid,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Blobs are looked up in batches (a round trip each over SSH otherwise): one the
    index lacks is still named, with the tree that names it."""
    import vst.plumbing.fsck as fsck_module

    monkeypatch.setattr(fsck_module, "BLOB_BATCH", 1)  # a batch per blob, and the end
    root = store.odb.read_commit(committed).tree
    blob = next(e.oid for e in store.odb.read_tree(root).entries if e.name == b"a.txt")
    store.odb.index._db.execute("DELETE FROM objects WHERE id = ?", (blob.raw,))
    store.odb.index._db.commit()
    assert fsck(store).problems == [f"missing blob {blob} (from tree {root.short()})"]


def test_fsck_reports_a_deleted_pack(store: Store, committed: Oid) -> None:
    tree = store.odb.read_commit(committed).tree
    _pack_path(store, tree).unlink()
    problems = fsck(store).problems
    assert any(p.startswith("missing tree " + tree.hex) for p in problems), problems
    full = fsck(store, full=True).problems
    assert any(p.startswith("missing pack ") for p in full), full
    ran = vst("--store", store.path, "fsck")
    assert ran.code == 1
    assert f"missing tree {tree}".encode() in ran.out
    assert "Traceback" not in ran.err


def test_fsck_full_reports_a_flipped_byte(store: Store, committed: Oid) -> None:
    blob = rev_parse(store, "c:sub/b.txt")
    location = store.odb.index.lookup(blob)
    assert location is not None
    path = _pack_path(store, blob)
    data = bytearray(path.read_bytes())
    data[location.offset + location.length - 1] ^= 0x01
    path.write_bytes(bytes(data))
    problems = fsck(store, full=True).problems
    assert f"pack {location.pack} on volume 'default': content does not match its name" \
        in problems
    assert any(blob.hex in p for p in problems), problems
    ran = vst("--store", store.path, "fsck", "--full")
    assert ran.code == 1
    assert b"content does not match its name" in ran.out
    assert vst("--store", store.path, "verify-pack", location.pack.hex).code == 1


def test_index_rebuild_after_losing_the_index(store: Store, committed: Oid,
                                              tmp_path: Path) -> None:
    objects = sorted(oid for oid, _ in reachable(store, [committed]))
    counts = store.odb.index.count()
    contents = {oid: store.odb.get(oid) for oid in objects}
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(store.path, "index.sqlite" + suffix).unlink(missing_ok=True)
    # A stray file and a truncated copy of a pack are skipped, with a warning each.
    packs = Path(store.path, "volumes", "default", "packs")
    _write(packs / "README", b"not a pack")
    real = next(p for p in packs.glob("*/*"))
    fake = "f" * 64
    (packs / "ff").mkdir(exist_ok=True)
    _write(packs / "ff" / fake, real.read_bytes()[:-10])

    reopened = Store.open(store.path)
    assert not reopened.odb.has(committed)
    assert fsck(reopened).problems  # the ref points at an object the empty index lacks
    warnings: list[str] = []
    result = index_rebuild(reopened, warn=warnings.append)
    assert (result.objects, result.packs, result.skipped) == (counts[0], counts[1], 2)
    assert len(warnings) == 2
    assert reopened.odb.index.count() == counts
    assert {oid: reopened.odb.get(oid) for oid in objects} == contents
    assert fsck(reopened, full=True).problems == []
    assert b"".join(file_content(reopened, rev_parse(reopened, "c:a.txt"))) == b"alpha"
    reopened.close()
    ran = vst("--store", store.path, "index", "rebuild")
    assert ran.code == 0 and ran.out == b""
    assert f"indexed {counts[0]} objects in {counts[1]} packs" in ran.err


# -- the real command line, piped -----------------------------------------------------------------


@pytest.mark.parametrize("flag", ["", "-z"], ids=["text", "z"])
def test_ls_tree_piped_to_mktree(store: Store, tmp_path: Path, flag: str) -> None:
    tree = _odd_tree(store, tmp_path / "odd")
    store.close()
    script = f'"$VST" ls-tree {flag} {tree} | "$VST" mktree {flag}'
    env = {**os.environ, "VST": VST, "VST_STORE": store.path}
    ran = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True,
                         env=env, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"{tree}\n".encode()
    assert ran.stderr == b""


def test_small_files_read_by_threads_are_stored_once_and_reused(store: Store,
                                                                tmp_path: Path) -> None:
    """Small files read by threads are looked up and sealed where they are read, as worker
    processes do: a content met twice is stored once, and one the store holds is not
    written again."""
    rng = random.Random(6)
    contents = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(60)]
    root = tmp_path / "few"
    root.mkdir()
    for number, data in enumerate(contents + contents[:20]):  # 20 twice
        _write(root / f"f{number}", data)
    write_tree(store, str(root), processes=False)
    assert store.odb.index.count()[0] == 60 + 1  # each content once, and the tree
    for number in range(80, 90):  # 10 new contents among 80 stored ones
        _write(root / f"f{number}", contents[number - 80] + b"!")
    tree = write_tree(store, str(root), processes=False)
    assert store.odb.index.count()[0] == 61 + 10 + 1
    assert fsck(store, full=True).problems == []
    for entry in _all_entries(store, tree):
        number = int(entry.name[1:])
        expected = (contents + contents[:20])[number] if number < 80 \
            else contents[number - 80] + b"!"
        assert b"".join(file_content(store, entry.oid)) == expected


def test_write_tree_with_worker_processes_matches_threads(tmp_path: Path) -> None:
    """Enough small files to start worker processes: the tree must be the same one the
    threads build, every object must verify, and duplicates are stored once."""
    from vst.ingest import PROCESS_THRESHOLD

    rng = random.Random(5)
    root = tmp_path / "many"
    contents = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(PROCESS_THRESHOLD + 300)]
    contents += contents[:200]  # duplicates
    for number, data in enumerate(contents):
        folder = root / f"d{number % 17}"
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"f{number}", data)
    _write(root / "large.bin", rng.randbytes(1_500_000))  # chunked on the adding thread
    os.mkfifo(root / "fifo")
    trees = []
    for name, processes in (("threads", False), ("processes", True)):
        store = Store.init(str(tmp_path / name))
        try:
            tree = write_tree(store, str(root), processes=processes)
            trees.append(tree)
            assert fsck(store, full=True).problems == []
            stored = {e.oid for e in _all_entries(store, tree)
                      if e.is_file and e.name.startswith(b"f")}
            assert stored == {PLAIN_IDS.compute(ObjectType.BLOB, data) for data in contents}
            for entry in _all_entries(store, tree):
                if entry.is_file:
                    assert sum(len(p) for p in file_content(store, entry.oid)) == entry.size
        finally:
            store.close()
    assert trees[0] == trees[1]


def test_a_killed_worker_process_is_a_clear_error(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed while it reads files (out of memory, a signal) ends the ingest with a
    one-line error, not a hang or a traceback."""
    import signal

    import vst.ingest
    from vst.ingest import Ingest

    monkeypatch.setattr(vst.ingest, "PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(vst.ingest, "PATHS_PER_JOB", 1)
    paths = []
    for number in range(40):
        _write(tmp_path / f"f{number}", b"%d" % number)
        paths.append(os.fsencode(tmp_path / f"f{number}"))
    with store.odb.writer() as writer, \
            Ingest(store.chunk_params, writer.sealing, writer, processes=True) as ingest, \
            pytest.raises(VstError, match="a worker process died") as raised:
        ingest.add_path(paths[0])
        assert ingest._process_pool is not None
        for process in list(ingest._process_pool._processes.values()):  # type: ignore[attr-defined]
            os.kill(process.pid, signal.SIGKILL)
        for path in paths[1:]:
            ingest.add_path(path)
        ingest.finish()
    assert "\n" not in str(raised.value)


def _all_entries(store: Store, tree: Oid) -> list[TreeEntry]:
    entries = []
    for entry in store.odb.read_tree(tree).entries:
        entries.append(entry)
        if entry.is_dir:
            entries.extend(_all_entries(store, entry.oid))
    return entries


def test_a_job_reads_a_bounded_amount_and_hands_back_the_rest(tmp_path: Path) -> None:
    from vst.ingest import JOB_BYTES, open_and_hash_many

    paths = []
    for number in range(8):
        path = tmp_path / f"f{number}"
        _write(path, bytes([number]) * (JOB_BYTES // 3))
        paths.append(os.fsencode(path))
    pieces = open_and_hash_many(paths, 256 * 1024 * 1024, PLAIN_IDS)
    read = [p for p in pieces if not p.again]
    assert len(pieces) == 8 and 1 <= len(read) < 8
    assert sum(p.size for p in read) < JOB_BYTES + JOB_BYTES // 3
    assert all(p.again for p in pieces[len(read):])


def test_a_job_opens_its_files_first_and_leaves_no_descriptor_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job opens all its files before reading any (to hint the kernel to read them all at
    once): whatever each path turns out to be, and when a read fails, no descriptor stays
    open, and each path gets its own outcome."""
    import vst.ingest
    from vst.ingest import JOB_BYTES, open_and_hash_many

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "big").write_bytes(b"x" * (JOB_BYTES + 1))
    for number in range(4):
        (tmp_path / f"fill{number}").write_bytes(bytes([number]) * (JOB_BYTES // 2))
    names = ["a", "gone", "link", "fifo", "dir", "big"] + [f"fill{n}" for n in range(4)]
    paths = [os.fsencode(tmp_path / name) for name in names]
    before = open_fds()
    pieces = open_and_hash_many(paths, JOB_BYTES, PLAIN_IDS)
    assert open_fds() == before
    outcome = dict(zip(names, pieces, strict=True))
    assert outcome["a"].oid == PLAIN_IDS.compute(ObjectType.BLOB, b"alpha")
    assert outcome["gone"].skipped == "vanished while being read"
    assert outcome["link"].skipped == "became a symlink"
    assert outcome["fifo"].skipped == outcome["dir"].skipped == "not a regular file"
    assert outcome["big"].large and outcome["big"].oid is None
    assert outcome["fill1"].size == JOB_BYTES // 2
    assert outcome["fill2"].again and outcome["fill3"].again  # past the job's bytes

    def failing_read(fd: int, size_hint: int) -> bytes:
        if size_hint == JOB_BYTES // 2:
            raise OSError(errno.EIO, "Input/output error")
        return os.read(fd, size_hint + 1)

    monkeypatch.setattr(vst.ingest, "_read_fd", failing_read)
    with pytest.raises(VstError, match=r"cannot read .*fill0"):
        open_and_hash_many(paths, JOB_BYTES, PLAIN_IDS)
    assert open_fds() == before


def test_write_tree_of_files_larger_than_a_job(store: Store, tmp_path: Path) -> None:
    from vst.ingest import JOB_BYTES

    root = tmp_path / "medium"
    root.mkdir()
    rng = random.Random(3)
    # Small files (at most the 256 KiB chunking minimum), three jobs' worth in all.
    size = 200_000
    contents = {f"f{n}": rng.randbytes(size) for n in range(3 * JOB_BYTES // size)}
    for name, data in contents.items():
        _write(root / name, data)
    tree = write_tree(store, str(root), processes=False)
    listed = {e.name.decode(): e for e in store.odb.read_tree(tree).entries}
    assert set(listed) == set(contents)
    for name, data in contents.items():
        assert b"".join(file_content(store, listed[name].oid)) == data
