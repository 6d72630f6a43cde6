"""affected_paths: which (collection, commit, path) a set of lost objects costs, over every
commit of every collection, with each distinct tree read once."""

from __future__ import annotations

import random
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import make_tree

from vst.errors import ObjectMissing
from vst.objects.chunking import ChunkParams
from vst.objects.commit import Signature
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.affected import COMMIT, DIR, FILE, SYMLINK, AffectedPath, affected_paths
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.write_tree import write_tree
from vst.store import Store

SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)
BIG = random.Random(5).randbytes(48 * 1024)  # about a dozen chunks with the small params


class Counting:
    """The store's object database, counting the reads of each object."""

    def __init__(self, store: Store, fail: set[Oid] | None = None) -> None:
        self.odb = store.odb
        self.reads: Counter[Oid] = Counter()
        self.fail = fail or set()

    def get(self, oid: Oid) -> tuple[ObjectType, bytes]:
        self.reads[oid] += 1
        if oid in self.fail:
            raise ObjectMissing(f"object {oid} not found")
        result: tuple[ObjectType, bytes] = self.odb.get(oid)
        return result


@pytest.fixture
def small_chunks(tmp_path: Path) -> Iterator[Store]:
    store = Store.init(str(tmp_path / "store"),
                       chunk_params=ChunkParams(min=1024, avg=2048, max=8192))
    yield store
    store.close()


def commit_dir(store: Store, directory: Path, parents: list[Oid]) -> Oid:
    tree = write_tree(store, str(directory), processes=False)
    return commit_tree(store, tree, parents, b"snapshot", author=SIG, committer=SIG)


def lookup(store: Store, commit: Oid, path: bytes) -> TreeEntry:
    tree = store.odb.read_commit(commit).tree
    *dirs, name = path.split(b"/")
    for part in dirs:
        entry = store.odb.read_tree(tree).get(part)
        assert entry is not None
        tree = entry.oid
    entry = store.odb.read_tree(tree).get(name)
    assert entry is not None
    return entry


@pytest.fixture
def history(small_chunks: Store, tmp_path: Path) -> tuple[Store, list[Oid], Oid]:
    """Collection 'a': three commits (c1, c2 adds other.txt, c3 changes docs/x.txt), each
    with the chunked big.bin, docs/deep/y.txt and a symlink; collection 'b': one commit
    holding the same big.bin as copy/big.bin. Returns the store, [c1, c2, c3], b's head."""
    store = small_chunks
    work = make_tree(tmp_path / "a", {"big.bin": BIG, "link": ("symlink", "big.bin"),
                                      "docs": {"x.txt": "one", "deep": {"y.txt": "why"}}})
    c1 = commit_dir(store, work, [])
    (work / "other.txt").write_text("other")
    c2 = commit_dir(store, work, [c1])
    (work / "docs" / "x.txt").write_text("two")
    c3 = commit_dir(store, work, [c2])
    b = commit_dir(store, make_tree(tmp_path / "b", {"copy": {"big.bin": BIG}}), [])
    assert lookup(store, c3, b"big.bin").kind == ObjectType.CHUNKS
    return store, [c1, c2, c3], b


def walk(store: Store, roots: dict[str, Oid], lost: set[Oid],
         warn: Callable[[str], None] | None = None) -> list[AffectedPath]:
    return list(affected_paths(store.odb, roots, lost, warn=warn))


def test_a_lost_chunk_affects_its_file_in_every_commit_of_every_collection(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (c1, c2, c3), b = history
    chunks = lookup(store, c3, b"big.bin").oid
    chunk = store.odb.read_chunk_list(chunks).chunks[3].oid
    found = walk(store, {"a": c3, "b": b}, {chunk})
    assert found == [AffectedPath("a", c, b"big.bin", FILE, (chunk,)) for c in (c3, c2, c1)] \
        + [AffectedPath("b", b, b"copy/big.bin", FILE, (chunk,))]
    # The chunk list itself lost: the same paths, blamed on it.
    found = walk(store, {"a": c3, "b": b}, {chunks})
    assert [(r.commit, r.path, r.lost) for r in found] == \
        [(c, b"big.bin", (chunks,)) for c in (c3, c2, c1)] + [(b, b"copy/big.bin", (chunks,))]


def test_blobs_symlinks_and_files_of_some_commits_only(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (c1, c2, c3), b = history
    old_x = lookup(store, c1, b"docs/x.txt").oid
    other = lookup(store, c2, b"other.txt").oid
    y = lookup(store, c3, b"docs/deep/y.txt").oid
    target = lookup(store, c3, b"link").oid
    found = walk(store, {"a": c3, "b": b}, {old_x, other, y, target})
    assert [(r.commit, r.path, r.what, r.lost) for r in found] == [
        (c3, b"docs/deep/y.txt", FILE, (y,)),
        (c3, b"link", SYMLINK, (target,)),
        (c3, b"other.txt", FILE, (other,)),
        (c2, b"docs/deep/y.txt", FILE, (y,)),
        (c2, b"docs/x.txt", FILE, (old_x,)),
        (c2, b"link", SYMLINK, (target,)),
        (c2, b"other.txt", FILE, (other,)),
        (c1, b"docs/deep/y.txt", FILE, (y,)),
        (c1, b"docs/x.txt", FILE, (old_x,)),
        (c1, b"link", SYMLINK, (target,)),
    ]
    assert {r.collection for r in found} == {"a"}


def test_a_lost_tree_is_its_directory_and_nothing_below_it_is_read(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (c1, c2, c3), b = history
    deep = lookup(store, c3, b"docs/deep").oid
    y = lookup(store, c3, b"docs/deep/y.txt").oid
    reader = Counting(store)
    found = list(affected_paths(reader, {"a": c3}, {deep, y}))
    assert found == [AffectedPath("a", c, b"docs/deep", DIR, (deep,)) for c in (c3, c2, c1)]
    assert reader.reads[deep] == 0
    root = store.odb.read_commit(c1).tree
    found = walk(store, {"a": c3, "b": b}, {root})
    assert found == [AffectedPath("a", c1, b"", DIR, (root,))]


def test_a_lost_commit_is_reported_and_its_history_is_not_walked(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (_c1, c2, c3), _b = history
    y = lookup(store, c3, b"docs/deep/y.txt").oid
    found = walk(store, {"a": c3}, {c2, y})
    assert found == [AffectedPath("a", c3, b"docs/deep/y.txt", FILE, (y,)),
                     AffectedPath("a", c2, b"", COMMIT, (c2,))]
    assert walk(store, {"a": c3}, {c3}) == [AffectedPath("a", c3, b"", COMMIT, (c3,))]


def test_nothing_lost_reads_nothing_and_an_unrelated_loss_reports_nothing(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (_c1, _c2, c3), b = history
    reader = Counting(store)
    assert list(affected_paths(reader, {"a": c3, "b": b}, set())) == []
    assert not reader.reads
    assert list(affected_paths(reader, {"a": c3, "b": b}, {Oid(bytes(32))})) == []


def test_each_tree_commit_and_chunk_list_is_read_once(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (_c1, _c2, c3), b = history
    chunks = lookup(store, c3, b"big.bin").oid
    chunk = store.odb.read_chunk_list(chunks).chunks[0].oid
    reader = Counting(store)
    # 'b' walked twice (under two names) and sharing big.bin's chunk list with 'a'.
    found = list(affected_paths(reader, {"a": c3, "b": b, "b2": b}, {chunk}))
    assert len(found) == 5
    assert set(reader.reads.values()) == {1}
    assert chunks in reader.reads and chunk not in reader.reads


def test_an_unreadable_object_is_warned_about_and_not_walked_into(
        history: tuple[Store, list[Oid], Oid]) -> None:
    store, (c1, c2, c3), _b = history
    docs = lookup(store, c3, b"docs").oid
    y = lookup(store, c3, b"docs/deep/y.txt").oid
    warnings: list[str] = []
    reader = Counting(store, fail={docs, c1})
    found = list(affected_paths(reader, {"a": c3}, {y}, warn=warnings.append))
    # docs/ of c3 cannot be read; c2 and c1 have another docs/ (x.txt differs), but c1
    # cannot be read itself: only c2's record remains.
    assert [(r.commit, r.path) for r in found] == [(c2, b"docs/deep/y.txt")]
    assert len(warnings) == 2
    assert any(f"cannot read tree {docs}" in w for w in warnings)
    assert any(f"cannot read commit {c1}" in w for w in warnings)


def test_a_tree_deeper_than_the_recursion_limit(store: Store) -> None:
    with store.odb.writer() as writer:
        blob = writer.put(ObjectType.BLOB, b"deep down")
        tree = writer.put(ObjectType.TREE, Tree.from_entries(
            [TreeEntry(b"f", stat.S_IFREG | 0o644, ObjectType.BLOB, blob, 9)]).encode())
        for _ in range(1500):
            tree = writer.put(ObjectType.TREE, Tree.from_entries(
                [TreeEntry(b"d", stat.S_IFDIR | 0o755, ObjectType.TREE, tree)]).encode())
    commit = commit_tree(store, tree, [], b"deep", author=SIG, committer=SIG)
    [found] = walk(store, {"deep": commit}, {blob})
    assert found.path == b"d/" * 1500 + b"f"
