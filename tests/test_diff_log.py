"""Tree diffs (diff_trees, flatten_tree), the patch, --stat and --name-status renderers,
the history walk, and the `vst log`, `vst show` and `vst diff` commands."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import vst_run as vst
from conftest import make_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from vst.errors import NotAWorkingCopy, NotFound, UsageError
from vst.objects.commit import Signature
from vst.objects.oid import Oid
from vst.objects.tree import TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.diff_tree import Change, diff_trees, flatten_tree
from vst.plumbing.rev_parse import rev_parse
from vst.plumbing.write_tree import write_tree
from vst.porcelain.diff import (
    MAX_TEXT,
    diff,
    diff_stat,
    format_name_status,
    format_stat,
    render_patch,
    store_loader,
)
from vst.porcelain.log import commit_record, format_commit, format_date, format_oneline, log
from vst.porcelain.show import ShownCommit, ShownContent, ShownTree, format_tree, show
from vst.store import Store

Spec = dict[str, Any]


class Trees:
    """Builds trees from specs through real directories and write-tree."""

    def __init__(self, store: Store, tmp_path: Path, make_tree: Callable[..., Path]) -> None:
        self.store = store
        self.root = tmp_path / "trees"
        self.make_tree = make_tree
        self.count = 0

    def directory(self, spec: Spec) -> Path:
        self.count += 1
        return Path(self.make_tree(self.root / str(self.count), spec))

    def __call__(self, spec: Spec) -> Oid:
        return self.write(self.directory(spec))

    def write(self, path: Path) -> Oid:
        return write_tree(self.store, str(path), processes=False)


@pytest.fixture
def trees(store: Store, tmp_path: Path, make_tree: Callable[..., Path]) -> Trees:
    return Trees(store, tmp_path, make_tree)


def sig(time: int, tz: int = 60) -> Signature:
    return Signature("Ada Lovelace", "ada@example.com", time, tz)


def commit(store: Store, tree: Oid, parents: list[Oid], message: bytes, time: int) -> Oid:
    return commit_tree(store, tree, parents, message, author=sig(time), committer=sig(time))


def summary(changes: list[Change]) -> list[tuple[str, bytes]]:
    return [(c.status, c.path) for c in changes]


# -- diff_trees --------------------------------------------------------------------------------


def test_added_deleted_modified(store: Store, trees: Trees) -> None:
    old = trees({"a": "1", "b": "2", "sub": {"c": "3", "deep": {"x": "x"}}, "gone": {"y": "y"}})
    new = trees({"a": "1!", "sub": {"c": "3", "d": "4", "deep": {"x": "x"}}, "e": "5",
                 "fresh": {"z": "z", "more": {"w": "w"}}})
    changes = diff_trees(store, old, new)
    assert summary(changes) == [("M", b"a"), ("D", b"b"), ("A", b"e"), ("A", b"fresh/more/w"),
                                ("A", b"fresh/z"), ("D", b"gone/y"), ("A", b"sub/d")]
    modified = changes[0]
    assert modified.old is not None and modified.new is not None
    assert modified.old.name == modified.new.name == b"a"
    assert changes[1].new is None and changes[2].old is None
    assert summary(diff_trees(store, new, old)) == [
        ({"A": "D", "D": "A"}.get(s, s), p) for s, p in summary(changes)]
    assert diff_trees(store, old, old) == []
    assert summary(diff_trees(store, None, old)) == [
        ("A", b"a"), ("A", b"b"), ("A", b"gone/y"), ("A", b"sub/c"), ("A", b"sub/deep/x")]
    assert summary(diff_trees(store, old, None))[0] == ("D", b"a")


def test_mode_change_is_a_modification_and_mtime_alone_is_not(store: Store,
                                                              trees: Trees) -> None:
    directory = trees.directory({"run.sh": "echo hi\n", "data": "same\n"})
    old = trees.write(directory)
    os.chmod(directory / "run.sh", 0o755)
    os.utime(directory / "data", ns=(1, 1))
    new = trees.write(directory)
    changes = diff_trees(store, old, new)
    assert summary(changes) == [("M", b"run.sh")]
    assert changes[0].old is not None and changes[0].new is not None
    assert changes[0].old.oid == changes[0].new.oid
    assert changes[0].new.mode == 0o100755 and changes[0].old.mode != 0o100755


def test_type_changes(store: Store, trees: Trees) -> None:
    old = trees({"link": "target", "to_dir": "f", "to_empty": "f", "was_empty": {},
                 "to_file": {"inner": "i"}, "keeps": {}})
    new = trees({"link": ("symlink", "target"), "to_dir": {"x": "x", "y": "y"},
                 "to_empty": {}, "was_empty": "now a file", "to_file": "f", "keeps": {}})
    changes = diff_trees(store, old, new)
    # file <-> symlink and file <-> empty directory are one T; a file and a directory
    # with files are a deletion and additions, as in git.
    assert summary(changes) == [
        ("T", b"link"), ("D", b"to_dir"), ("A", b"to_dir/x"), ("A", b"to_dir/y"),
        ("T", b"to_empty"), ("A", b"to_file"), ("D", b"to_file/inner"), ("T", b"was_empty")]
    link = changes[0]
    assert link.old is not None and link.old.is_file
    assert link.new is not None and link.new.is_symlink
    assert link.old.oid == link.new.oid  # same bytes: the change is the type alone
    to_empty = changes[4]
    assert to_empty.new is not None and to_empty.new.is_dir


def test_empty_directories_are_leaves(store: Store, trees: Trees) -> None:
    old = trees({"empty": {}, "filled": {"f": "f"}, "nest": {"deeper": {}}})
    new = trees({"filled": {}, "nest": {"deeper": {"g": "g"}}, "new_empty": {}})
    changes = diff_trees(store, old, new)
    # A folder emptied ('filled') or filled ('nest/deeper') is no change of its own.
    assert summary(changes) == [("D", b"empty"), ("D", b"filled/f"), ("A", b"nest/deeper/g"),
                                ("A", b"new_empty")]
    assert changes[0].old is not None and changes[0].old.is_dir
    assert changes[3].new is not None and changes[3].new.kind == ObjectType.TREE


def test_empty_directory_mode_change(store: Store, trees: Trees) -> None:
    directory = trees.directory({"empty": {}, "full": {"f": "f"}})
    old = trees.write(directory)
    os.chmod(directory / "empty", 0o700)
    os.chmod(directory / "full", 0o700)
    new = trees.write(directory)
    # The empty directory is a leaf, so its mode counts; a directory with files is not.
    assert summary(diff_trees(store, old, new)) == [("M", b"empty")]


def test_paths_filter(store: Store, trees: Trees) -> None:
    old = trees({"a": "1", "sub": {"c": "3", "d": "4", "deep": {"x": "x"}}, "subway": "s"})
    new = trees({"a": "2", "sub": {"c": "3!", "d": "4!", "deep": {"x": "x!"}}, "subway": "t"})
    assert summary(diff_trees(store, old, new, [b"sub"])) == [
        ("M", b"sub/c"), ("M", b"sub/d"), ("M", b"sub/deep/x")]
    assert summary(diff_trees(store, old, new, [b"sub/"])) == summary(
        diff_trees(store, old, new, [b"sub"]))
    assert summary(diff_trees(store, old, new, [b"sub/deep/x", b"a"])) == [
        ("M", b"a"), ("M", b"sub/deep/x")]
    assert summary(diff_trees(store, old, new, [b"su"])) == []  # not a path component
    assert summary(diff_trees(store, old, new, [b"nothing/here"])) == []
    assert len(diff_trees(store, old, new, [b"."])) == 5


def test_identical_subtrees_are_not_read(store: Store, trees: Trees,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # One directory written twice: trees record mtimes, so only a subtree left alone
    # keeps its id.
    directory = trees.directory({"same": {"x": "x", "deeper": {"y": "y", "deepest": {}}},
                                 "changed": {"f": "1", "kept": {"k": "k"}}})
    old = trees.write(directory)
    (directory / "changed" / "f").write_text("2")
    new = trees.write(directory)
    read: list[Oid] = []
    odb = store.odb
    original = odb.read_tree

    def counting(oid: Oid) -> Any:
        read.append(oid)
        return original(oid)

    monkeypatch.setattr(odb, "read_tree", counting)
    assert summary(diff_trees(store, old, new)) == [("M", b"changed/f")]
    # The two roots and the two 'changed' trees: nothing under 'same' or 'kept'.
    assert len(read) == 4
    read.clear()
    assert summary(diff_trees(store, old, new, [b"changed"])) == [("M", b"changed/f")]
    assert len(read) == 4


def test_changes_sorted_by_path_bytes(store: Store, trees: Trees) -> None:
    # Tree order walks 'a' (and a/x) before 'a.txt'; path order puts '.' before '/'.
    changes = diff_trees(store, None, trees({"a": {"x": "x"}, "a.txt": "t", "a-b": "b"}))
    assert summary(changes) == [("A", b"a-b"), ("A", b"a.txt"), ("A", b"a/x")]


def test_flatten_tree_is_pre_order(store: Store, trees: Trees) -> None:
    tree = trees({"b": "b", "a": {"y": "y", "x": {"z": "z"}}, "a.txt": "t", "e": {}})
    assert [path for path, _ in flatten_tree(store, tree)] == [
        b"a", b"a/x", b"a/x/z", b"a/y", b"a.txt", b"b", b"e"]
    entries = dict(flatten_tree(store, tree))
    assert entries[b"a/x"].is_dir and entries[b"a/x/z"].is_file


# -- patches -----------------------------------------------------------------------------------


def test_patch_golden(store: Store, trees: Trees) -> None:
    old = trees({"a.txt": "one\ntwo\nthree\n", "gone.txt": "bye\n", "nonl": "x",
                 "empty": "", "link": ("symlink", "old-target")})
    new = trees({"a.txt": "one\n2\nthree\n", "new.txt": "hi\n", "nonl": "y",
                 "empty": "", "link": ("symlink", "new-target")})
    changes = diff_trees(store, old, new)
    ids = {c.path: (c.old.oid.short() if c.old else "0" * 12,
                    c.new.oid.short() if c.new else "0" * 12) for c in changes}
    text = b"".join(render_patch(changes, *store_loader(store))).decode()
    link_mode = f"{changes[2].new.mode:06o}" if changes[2].new else ""
    file_mode = f"{changes[0].new.mode:06o}" if changes[0].new else ""
    assert text == f"""\
diff --vst a/a.txt b/a.txt
index {ids[b"a.txt"][0]}..{ids[b"a.txt"][1]} {file_mode}
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 one
-two
+2
 three
diff --vst a/gone.txt b/gone.txt
deleted file mode {file_mode}
index {ids[b"gone.txt"][0]}..000000000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --vst a/link b/link
index {ids[b"link"][0]}..{ids[b"link"][1]} {link_mode}
--- a/link
+++ b/link
@@ -1 +1 @@
-old-target
\\ No newline at end of file
+new-target
\\ No newline at end of file
diff --vst a/new.txt b/new.txt
new file mode {file_mode}
index 000000000000..{ids[b"new.txt"][1]}
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+hi
diff --vst a/nonl b/nonl
index {ids[b"nonl"][0]}..{ids[b"nonl"][1]} {file_mode}
--- a/nonl
+++ b/nonl
@@ -1 +1 @@
-x
\\ No newline at end of file
+y
\\ No newline at end of file
"""


def test_patch_headers_for_modes_types_empty_files_and_odd_names(store: Store,
                                                                  trees: Trees) -> None:
    directory = trees.directory({"run": "x\n", "kind": "t", "e": "", "tab\there": "1\n"})
    old = trees.write(directory)
    os.chmod(directory / "run", 0o755)
    (directory / "kind").unlink()
    (directory / "kind").symlink_to("t")
    (directory / "e").unlink()
    (directory / "dir").mkdir()
    (directory / "tab\there").write_text("2\n")
    new = trees.write(directory)
    changes = diff_trees(store, old, new)
    assert summary(changes) == [("A", b"dir"), ("D", b"e"), ("T", b"kind"), ("M", b"run"),
                                ("M", b"tab\there")]
    blocks = [p.decode() for p in render_patch(changes, *store_loader(store))]
    assert blocks[0].startswith("diff --vst a/dir b/dir\nnew directory mode 04")
    assert blocks[0].count("\n") == 2  # header and mode: no content for a directory
    assert blocks[1].startswith("diff --vst a/e b/e\ndeleted file mode 100")
    assert "---" not in blocks[1]  # an empty file has no lines
    # The type change: the file deleted, then the symlink added.
    assert blocks[2].startswith("diff --vst a/kind b/kind\ndeleted file mode 100")
    assert blocks[3].startswith("diff --vst a/kind b/kind\nnew file mode 120")
    assert blocks[3].endswith("+t\n\\ No newline at end of file\n")
    run = changes[3].old
    assert run is not None
    # Same content: the mode lines say it all (no index line, no hunks).
    assert blocks[4] == f"diff --vst a/run b/run\nold mode {run.mode:06o}\nnew mode 100755\n"
    assert blocks[5].startswith('diff --vst "a/tab\\there" "b/tab\\there"\n')
    assert '--- "a/tab\\there"\n+++ "b/tab\\there"\n' in blocks[5]


def test_hunks_match_difflib(store: Store, trees: Trees) -> None:
    before = [f"line {n}\n" for n in range(40)]
    after = list(before)
    after[2] = "changed 2\n"
    after[20:22] = ["inserted\n"]
    after.insert(35, "new 35\n")
    del after[38]
    old = trees({"f": "".join(before)})
    new = trees({"f": "".join(after)})
    text = b"".join(render_patch(diff_trees(store, old, new), *store_loader(store))).decode()
    hunks = text[text.index("@@"):]
    expected = "".join(list(difflib.unified_diff(before, after, n=3))[2:])
    assert hunks == expected
    assert hunks.count("@@ -") == 3


def _apply(old: bytes, patch: bytes) -> bytes:
    """Apply a one-file patch's hunks to ``old`` (strictly: every context and deleted line
    must match), honouring '\\ No newline at end of file'."""
    body = patch[patch.index(b"\n@@") + 1:] if b"\n@@" in patch else b""
    lines: list[tuple[bytes, bytes]] = []  # (sign, line with its LF, if it has one)
    for raw in body.split(b"\n")[:-1]:
        if raw.startswith(b"\\ No newline"):
            sign, line = lines.pop()
            lines.append((sign, line[:-1]))
        else:
            lines.append((raw[:1], raw[1:] + b"\n"))
    source = old.split(b"\n")
    source_lines = [line + b"\n" for line in source[:-1]] + ([source[-1]] if source[-1] else [])
    out: list[bytes] = []
    position = 0
    for sign, line in lines:
        if sign == b"@":
            start = int(line.split(b" ")[1][1:].split(b",")[0])
            count = line.split(b" ")[1].split(b",")
            start -= 0 if len(count) > 1 and count[1] == b"0" else 1
            out += source_lines[position:start]
            position = start
        elif sign == b"+":
            out.append(line)
        else:
            assert source_lines[position] == line, (position, line)
            position += 1
            if sign == b" ":
                out.append(line)
    return b"".join(out + source_lines[position:])


_TEXT_LINES = st.lists(st.sampled_from(["a", "b", "c", "", "long line", "a"]), max_size=30)


@given(before=_TEXT_LINES, after=_TEXT_LINES, end_old=st.booleans(), end_new=st.booleans())
@settings(max_examples=300, deadline=None)
def test_patch_applies(before: list[str], after: list[str], end_old: bool,
                       end_new: bool) -> None:
    old = "\n".join(before).encode() + (b"\n" if end_old and before else b"")
    new = "\n".join(after).encode() + (b"\n" if end_new and after else b"")
    change = Change("M", b"f", _entry(b"f", old, 1), _entry(b"f", new, 2))
    patch = b"".join(render_patch([change], lambda c: old, lambda c: new))
    assert _apply(old, patch) == new
    [stat] = diff_stat([change], lambda c: old, lambda c: new)
    assert stat.insertions == patch.count(b"\n+") - (b"\n+++ " in patch)
    assert stat.deletions == patch.count(b"\n-") - (b"\n--- " in patch)


def _entry(name: bytes, data: bytes, oid_byte: int) -> TreeEntry:
    return TreeEntry(name, 0o100644, ObjectType.BLOB, Oid(bytes([oid_byte]) * 32), len(data))


@pytest.mark.parametrize(("old", "new"), [
    (b"text\n", b"te\0xt\n"),  # a NUL
    (b"caf\xe9\n", b"cafe\n"),  # Latin-1, not UTF-8
    (b"a" * 9000 + b"\0", b"b"),  # a NUL after the first 8 KiB: text
    (b"plain\n", "é\n".encode()),  # UTF-8: text
])
def test_binary_detection(old: bytes, new: bytes) -> None:
    change = Change("M", b"f", _entry(b"f", old, 1), _entry(b"f", new, 2))
    text = b"".join(render_patch([change], lambda c: old, lambda c: new))
    binary = b"\0" in old[:8192] + new[:8192] or not _utf8(old) or not _utf8(new)
    assert (b"Binary files a/f and b/f differ\n" in text) == binary
    assert (b"@@" in text) == (not binary)
    [stat] = diff_stat([change], lambda c: old, lambda c: new)
    assert stat.binary == binary


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_large_files_are_binary_and_never_loaded() -> None:
    big = TreeEntry(b"big", 0o100644, ObjectType.CHUNKS, Oid(b"\1" * 32), MAX_TEXT + 1)
    small = TreeEntry(b"big", 0o100644, ObjectType.BLOB, Oid(b"\2" * 32), 10)

    def refuse(change: Change) -> bytes:
        raise AssertionError("loaded a file over the text limit")

    changes = [Change("M", b"big", small, big), Change("A", b"big", None, big)]
    text = b"".join(render_patch(changes, refuse, refuse))
    assert text.count(b"Binary files") == 2
    assert b"Binary files /dev/null and b/big differ\n" in text
    stats = diff_stat(changes, refuse, refuse)
    assert b"".join(format_stat(stats)).decode().splitlines()[0] == \
        f" big | Bin 10 -> {MAX_TEXT + 1} bytes"


# -- --stat and --name-status -----------------------------------------------------------------


def test_stat_and_summary(store: Store, trees: Trees) -> None:
    old = trees({"a.txt": "1\n2\n3\n", "gone": "x\ny\n", "bin": b"\0\1", "same": "s"})
    new = trees({"a.txt": "1\nTWO\n3\n4\n", "long-name.txt": "n\n", "bin": b"\0\2",
                 "same": "s"})
    changes = diff_trees(store, old, new)
    stats = diff_stat(changes, *store_loader(store))
    assert [(s.path, s.insertions, s.deletions, s.binary) for s in stats] == [
        (b"a.txt", 2, 1, False), (b"bin", 0, 0, True), (b"gone", 0, 2, False),
        (b"long-name.txt", 1, 0, False)]
    assert b"".join(format_stat(stats)).decode() == (
        " a.txt         |   3 ++-\n"
        " bin           | Bin 2 -> 2 bytes\n"
        " gone          |   2 --\n"
        " long-name.txt |   1 +\n"
        " 4 files changed, 3 insertions(+), 3 deletions(-)\n")


@pytest.mark.parametrize(("counts", "line"), [
    ([(1, 0)], " 1 file changed, 1 insertion(+)"),
    ([(0, 1)], " 1 file changed, 1 deletion(-)"),
    ([(0, 0)], " 1 file changed, 0 insertions(+), 0 deletions(-)"),
    ([(2, 3), (0, 0)], " 2 files changed, 2 insertions(+), 3 deletions(-)"),
])
def test_stat_summary_line(counts: list[tuple[int, int]], line: str) -> None:
    from vst.porcelain.diff import FileStat

    stats = [FileStat(b"f%d" % n, "M", i, d, False, 1, 1) for n, (i, d) in enumerate(counts)]
    assert b"".join(format_stat(stats)).decode().splitlines()[-1] == line


def test_stat_bar_is_scaled_to_the_width() -> None:
    from vst.porcelain.diff import FileStat

    stats = [FileStat(b"big", "M", 300, 100, False, 1, 1), FileStat(b"small", "M", 1, 0, False,
                                                                    1, 1)]
    lines = b"".join(format_stat(stats, width=40)).decode().splitlines()
    assert lines[0].startswith(" big   | 400 +") and len(lines[0]) <= 40
    bar = lines[0].split()[-1]
    assert bar.count("+") > 2 * bar.count("-") > 0
    assert lines[1] == " small |   1 +"


def test_name_status(store: Store, trees: Trees) -> None:
    old = trees({"a": "1", "gone": "g", "new\nline": "n"})
    new = trees({"a": "2", "added": "x", "new\nline": "m"})
    changes = diff_trees(store, old, new)
    assert b"".join(format_name_status(changes)) == \
        b'M\ta\nA\tadded\nD\tgone\nM\t"new\\nline"\n'
    assert b"".join(format_name_status(changes, nul=True)) == \
        b"M\0a\0A\0added\0D\0gone\0M\0new\nline\0"


# -- log and show ----------------------------------------------------------------------------


class History:
    """r <- a1 <- a2 <- m, and r <- b1 <- m (m merges a2 and b1); times r=1000 ... m=5000,
    b1 (3000) between a1 (2000) and a2 (4000)."""

    def __init__(self, store: Store, trees: Trees) -> None:
        self.r = commit(store, trees({"f": "1\n", "sub": {"s": "s\n"}}), [], b"root\n", 1000)
        self.a1 = commit(store, trees({"f": "2\n", "sub": {"s": "s\n"}}), [self.r],
                         b"a1: change f\n\nWith a body.\n", 2000)
        self.b1 = commit(store, trees({"f": "1\n", "sub": {"s": "S\n"}}), [self.r],
                         b"b1: change sub\n", 3000)
        self.a2 = commit(store, trees({"f": "3\n", "sub": {"s": "s\n"}}), [self.a1],
                         b"a2: f again\n", 4000)
        self.m = commit(store, trees({"f": "3\n", "sub": {"s": "S\n"}}), [self.a2, self.b1],
                        b"merge b\n", 5000)
        store.create_collection("c")
        store.update_ref("c", self.m, None, committer=sig(5000), message="m")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, History]:
    """One store with the history for every test that only reads it."""
    root = tmp_path_factory.mktemp("history")
    store = Store.init(str(root / "store"))
    try:
        return store.path, History(store, Trees(store, root, make_tree))
    finally:
        store.close()


@pytest.fixture
def history(built: tuple[str, History]) -> History:
    return built[1]


@pytest.fixture
def hstore(built: tuple[str, History]) -> Iterator[Store]:
    store = Store.open(built[0])
    try:
        yield store
    finally:
        store.close()


def test_log_walks_every_parent_newest_first(hstore: Store, history: History) -> None:
    h = history
    assert [e.oid for e in log(hstore, h.m)] == [h.m, h.a2, h.b1, h.a1, h.r]
    assert [e.oid for e in log(hstore, h.m, max_count=2)] == [h.m, h.a2]
    assert list(log(hstore, h.m, max_count=0)) == []
    assert [e.oid for e in log(hstore, h.a2)] == [h.a2, h.a1, h.r]
    assert all(e.changes is None for e in log(hstore, h.m))


def test_log_reaches_a_commit_by_two_paths_once(store: Store, trees: Trees) -> None:
    tree = trees({"f": "x"})
    root = commit(store, tree, [], b"root", 10)
    left = commit(store, tree, [root], b"left", 30)  # clocks need not agree with ancestry
    right = commit(store, tree, [root], b"right", 5)
    merge = commit(store, tree, [left, right], b"merge", 40)
    assert [e.oid for e in log(store, merge)] == [merge, left, root, right]


def test_log_paths_and_changes(hstore: Store, history: History) -> None:
    h = history
    # Compared with the first parent: the merge brings sub/s from b1.
    assert [e.oid for e in log(hstore, h.m, paths=[b"sub"])] == [h.m, h.b1, h.r]
    assert [e.oid for e in log(hstore, h.m, paths=[b"f"])] == [h.a2, h.a1, h.r]
    assert [e.oid for e in log(hstore, h.m, paths=[b"f"], max_count=1)] == [h.a2]
    entries = list(log(hstore, h.m, with_changes=True))
    assert [summary(list(e.changes or ())) for e in entries] == [
        [("M", b"sub/s")], [("M", b"f")], [("M", b"sub/s")], [("M", b"f")],
        [("A", b"f"), ("A", b"sub/s")]]
    limited = list(log(hstore, h.m, paths=[b"sub"], with_changes=True))
    assert summary(list(limited[-1].changes or ())) == [("A", b"sub/s")]


def test_log_of_a_tree_is_a_usage_error(hstore: Store, history: History) -> None:
    tree = hstore.odb.read_commit(history.m).tree
    with pytest.raises(UsageError, match="not a commit"):
        list(log(hstore, tree))


def test_commit_formats(hstore: Store, history: History) -> None:
    a1 = hstore.odb.read_commit(history.a1)
    assert format_commit(history.a1, a1).decode() == (
        f"commit {history.a1.hex}\n"
        "Author: Ada Lovelace <ada@example.com>\n"
        "Date:   Thu Jan 1 01:33:20 1970 +0100\n"
        "\n"
        "    a1: change f\n"
        "    \n"
        "    With a body.\n")
    m = hstore.odb.read_commit(history.m)
    assert f"\nMerge: {history.a2.short()} {history.b1.short()}\n".encode() in \
        format_commit(history.m, m)
    assert format_oneline(history.a1, a1) == history.a1.short().encode() + b" a1: change f\n"
    assert format_date(Signature("n", "e", 1_700_000_000, -(7 * 60 + 30))) == \
        "Tue Nov 14 14:43:20 2023 -0730"
    assert format_date(Signature("n", "e", 2**62, 0)) == f"@{2**62} +0000"


def test_commit_record(hstore: Store, history: History) -> None:
    entry = next(log(hstore, history.m, with_changes=True))
    record = commit_record(entry)
    assert record == {
        "type": "commit", "id": history.m.hex, "tree": entry.commit.tree.hex,
        "parents": [history.a2.hex, history.b1.hex],
        "author": {"name": "Ada Lovelace", "email": "ada@example.com",
                   "time": "1970-01-01T01:23:20Z"},
        "committer": {"name": "Ada Lovelace", "email": "ada@example.com",
                      "time": "1970-01-01T01:23:20Z"},
        "message": "merge b\n",
        "changes": [{"status": "M", "path": "sub/s"}],
    }
    assert "changes" not in commit_record(next(log(hstore, history.m)))


def test_show_commit_tree_and_content(hstore: Store, history: History) -> None:
    shown = show(hstore, history.a1)
    assert isinstance(shown, ShownCommit)
    assert summary(list(shown.changes)) == [("M", b"f")]
    root = show(hstore, history.r)
    assert isinstance(root, ShownCommit)
    assert summary(list(root.changes)) == [("A", b"f"), ("A", b"sub/s")]
    tree = show(hstore, rev_parse(hstore, "c:"))
    assert isinstance(tree, ShownTree)
    assert format_tree(tree) == f"tree {tree.oid.hex}\n\nf\nsub/\n".encode()
    content = show(hstore, rev_parse(hstore, "c:sub/s"))
    assert isinstance(content, ShownContent)
    assert b"".join(content.content) == b"S\n"


def test_diff_of_commits_and_trees(hstore: Store, history: History) -> None:
    h = history
    assert summary(diff(hstore, h.a1, h.b1)) == [("M", b"f"), ("M", b"sub/s")]
    tree = hstore.odb.read_commit(h.b1).tree
    assert diff(hstore, h.a1, tree) == diff(hstore, h.a1, h.b1)
    assert summary(diff(hstore, None, h.r, [b"sub"])) == [("A", b"sub/s")]
    blob = rev_parse(hstore, "c:f")
    with pytest.raises(UsageError, match="not a tree or commit"):
        diff(hstore, blob, h.r)


# -- the commands ----------------------------------------------------------------------------


@pytest.fixture
def cli_store(built: tuple[str, History]) -> str:
    return built[0]


def test_cli_log(cli_store: str, history: History) -> None:
    h = history
    ran = vst("--store", cli_store, "log", "c")
    assert ran.code == 0 and ran.err == ""
    text = ran.out.decode()
    assert [line.split()[1] for line in text.splitlines() if line.startswith("commit ")] == \
        [c.hex for c in (h.m, h.a2, h.b1, h.a1, h.r)]
    assert f"commit {h.a2.hex}\nAuthor: Ada Lovelace <ada@example.com>\n" \
           "Date:   Thu Jan 1 02:06:40 1970 +0100\n\n    a2: f again\n\ncommit " in text
    assert text.endswith("    root\n")
    ran = vst("--store", cli_store, "log", "--oneline", "-n", "2", "c")
    assert ran.out.decode() == f"{h.m.short()} merge b\n{h.a2.short()} a2: f again\n"
    ran = vst("--store", cli_store, "log", "--oneline", "c~1", "--", "sub")
    assert ran.out.decode() == f"{h.r.short()} root\n"


def test_cli_log_stat_and_json(cli_store: str, history: History) -> None:
    h = history
    ran = vst("--store", cli_store, "log", "--stat", "-n", "2", "c")
    assert ran.code == 0, ran.err
    assert "    merge b\n\n sub/s | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n\n" \
           f"commit {h.a2.hex}\n" in ran.out.decode()
    ran = vst("--store", cli_store, "log", "--oneline", "--stat", "-n", "1", "c")
    assert ran.out.decode() == f"{h.m.short()} merge b\n sub/s | 2 +-\n" \
                               " 1 file changed, 1 insertion(+), 1 deletion(-)\n"
    for args in (["--json", "log", "c"], ["log", "--json", "c"]):
        ran = vst("--store", cli_store, *args)
        records = [json.loads(line) for line in ran.out.decode().splitlines()]
        assert [r["id"] for r in records] == [c.hex for c in (h.m, h.a2, h.b1, h.a1, h.r)]
        assert all(r["type"] == "commit" and "changes" not in r for r in records)
    ran = vst("--store", cli_store, "--json", "log", "--stat", "c", "--", "f")
    records = [json.loads(line) for line in ran.out.decode().splitlines()]
    assert [r["changes"] for r in records] == [[{"status": "M", "path": "f"}]] * 2 + \
        [[{"status": "A", "path": "f"}]]


def test_cli_show(cli_store: str, history: History) -> None:
    h = history
    ran = vst("--store", cli_store, "show", "c~1")
    assert ran.code == 0, ran.err
    assert ran.out.decode().startswith(f"commit {h.a2.hex}\n")
    assert "\n    a2: f again\n\ndiff --vst a/f b/f\n" in ran.out.decode()
    assert ran.out.decode().endswith("@@ -1 +1 @@\n-2\n+3\n")
    assert vst("--store", cli_store, "show", "c:sub/s").out == b"S\n"
    assert vst("--store", cli_store, "show", "c:sub").out.endswith(b"\n\ns\n")


def test_cli_diff(cli_store: str, history: History) -> None:
    ran = vst("--store", cli_store, "diff", "c~1", "c")
    assert ran.code == 0, ran.err
    assert ran.out.decode().startswith("diff --vst a/sub/s b/sub/s\nindex ")
    assert ran.out.decode().endswith("@@ -1 +1 @@\n-s\n+S\n")
    ran = vst("--store", cli_store, "diff", "--stat", "c~2", "c")
    assert ran.out.decode() == (" f     | 2 +-\n sub/s | 2 +-\n"
                                " 2 files changed, 2 insertions(+), 2 deletions(-)\n")
    ran = vst("--store", cli_store, "diff", "--name-status", "c~2", "c")
    assert ran.out == b"M\tf\nM\tsub/s\n"
    ran = vst("--store", cli_store, "diff", "--name-status", "-z", "c~2", "c", "--", "sub")
    assert ran.out == b"M\0sub/s\0"
    assert vst("--store", cli_store, "diff", "--stat", "c", "c").out == b""


@pytest.mark.parametrize(("args", "code"), [
    (["log", "nope"], NotFound.exit_code),
    (["show", "c:missing"], NotFound.exit_code),
    (["diff", "c", "nope"], NotFound.exit_code),
    (["log", "c", "c~1"], UsageError.exit_code),
    (["log", "-n", "-1", "c"], UsageError.exit_code),
    (["log", "--frobnicate", "c"], UsageError.exit_code),
    (["diff", "--stat", "--name-status", "c~1", "c"], UsageError.exit_code),
    (["diff", "c~2", "c~1", "c"], UsageError.exit_code),
    (["log", "c:f"], UsageError.exit_code),
])
def test_cli_errors(cli_store: str, args: list[str], code: int) -> None:
    ran = vst("--store", cli_store, *args)
    assert ran.code == code, ran.err
    assert ran.out == b""
    assert ran.err.startswith("vst: error: ") and "Traceback" not in ran.err
    assert len(ran.err_lines) <= 2


def test_unknown_revision_is_17_under_json_too(cli_store: str) -> None:
    ran = vst("--store", cli_store, "--json", "log", "nope")
    assert ran.code == 17
    assert json.loads(ran.err_lines[-1])["code"] == 17


@pytest.mark.parametrize("args", [["log"], ["show"], ["diff"], ["diff", "c"]])
def test_without_a_working_copy(cli_store: str, tmp_path: Path, args: list[str]) -> None:
    # No REV means HEAD, and comparing with files needs a working copy.
    ran = vst("-C", str(tmp_path), "--store", cli_store, *args)
    assert ran.code == NotAWorkingCopy.exit_code, ran.err
    assert ran.out == b"" and ran.err.startswith("vst: error: not a working copy")
