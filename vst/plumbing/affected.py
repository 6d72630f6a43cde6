"""Which (collection, commit, path) a set of lost objects costs.

A file is affected when its blob, its chunk list or one of its chunks is lost; a directory
when its tree is lost (what it held cannot be listed, so nothing below it is named); a
commit when the commit object itself is lost (its tree and its parents cannot be known, so
the walk of that history stops there). Every commit of every collection is walked, not only
the heads.

A long history mostly repeats the same trees, so each distinct tree is read once and
summarised (by id) as the entries with something lost at or below them; a commit then costs
its own read plus a walk of the summaries, which stops at once in a tree with nothing lost
below. Chunk lists are read once each as well. Objects of ``lost`` are never read (a copy
of them that happens to verify must not make them look intact), and an object outside
``lost`` that cannot be read is reported to ``warn`` and not walked into: the records are
then a lower bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from vst.errors import CorruptObject, VstError
from vst.objects.chunks import ChunkList
from vst.objects.commit import Commit
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType

COMMIT = "commit"  # the commit object is lost: path is b""
DIR = "dir"  # a tree is lost: path is the directory (b"" for the commit's root tree)
FILE = "file"
SYMLINK = "symlink"


class ObjectReader(Protocol):
    """What the walk needs of an object database: one verified read."""

    def get(self, oid: Oid) -> tuple[ObjectType, bytes]: ...


@dataclass(frozen=True, slots=True)
class AffectedPath:
    collection: str
    commit: Oid
    path: bytes  # '/'-separated, relative to the commit's root tree; b"" for the root
    what: str  # COMMIT, DIR, FILE or SYMLINK
    lost: tuple[Oid, ...]  # the lost objects that make this path affected, in entry order


class _Hit(NamedTuple):
    """One entry of a tree with something lost at or below it."""

    name: bytes
    what: str
    lost: tuple[Oid, ...]  # what is lost at this entry itself; () when only below it
    subtree: Oid | None  # the subtree to descend into, when the loss is below it


_CLEAN: tuple[_Hit, ...] = ()
_T = TypeVar("_T")


def affected_paths(odb: ObjectReader, roots: Mapping[str, Oid], lost: set[Oid], *,
                   warn: Callable[[str], None] | None = None) -> Iterator[AffectedPath]:
    """Every (collection, commit, path) of ``roots`` (collection name -> head commit) that
    one of ``lost`` makes unreadable: collections in the order given, each one's commits from
    the head through parents (first parents first, each commit once), paths in tree order."""
    if not lost:
        return
    walker = _Walker(odb, lost, warn)
    for name, head in roots.items():
        yield from walker.history(name, head)


class _Walker:
    def __init__(self, odb: ObjectReader, lost: set[Oid],
                 warn: Callable[[str], None] | None) -> None:
        self.odb = odb
        self.lost = lost
        self.warn = warn
        # Per id, read once: a commit's (tree, parents) or None when unreadable; a tree's
        # hits (_CLEAN when nothing is lost below it); a chunk list's lost chunks.
        self.commits: dict[Oid, tuple[Oid, tuple[Oid, ...]] | None] = {}
        self.trees: dict[Oid, tuple[_Hit, ...]] = {}
        self.chunk_lists: dict[Oid, tuple[Oid, ...]] = {}

    def history(self, collection: str, head: Oid) -> Iterator[AffectedPath]:
        seen: set[Oid] = set()
        stack = [head]
        while stack:
            oid = stack.pop()
            if oid in seen:
                continue
            seen.add(oid)
            if oid in self.lost:
                yield AffectedPath(collection, oid, b"", COMMIT, (oid,))
                continue
            commit = self._commit(oid)
            if commit is None:
                continue
            tree, parents = commit
            for path, what, lost in self._paths(tree):
                yield AffectedPath(collection, oid, path, what, lost)
            stack.extend(reversed(parents))

    def _paths(self, root: Oid) -> Iterator[tuple[bytes, str, tuple[Oid, ...]]]:
        if root in self.lost:
            yield b"", DIR, (root,)
            return
        self._summarise(root)
        # An explicit stack, not recursion: a tree may nest deeper than Python's limit.
        stack: list[tuple[bytes, Iterator[_Hit]]] = [(b"", iter(self.trees[root]))]
        while stack:
            prefix, hits = stack[-1]
            hit = next(hits, None)
            if hit is None:
                stack.pop()
            elif hit.subtree is not None:
                stack.append((prefix + hit.name + b"/", iter(self.trees[hit.subtree])))
            else:
                yield prefix + hit.name, hit.what, hit.lost

    def _summarise(self, root: Oid) -> None:
        """Fill ``self.trees`` for ``root`` and every tree below it not yet known, children
        before parents (iteratively, for depth)."""
        stack: list[tuple[Oid, tuple[TreeEntry, ...] | None]] = [(root, None)]
        while stack:
            oid, entries = stack[-1]
            if oid in self.trees:
                stack.pop()
                continue
            if entries is None:
                tree = self._read(oid, ObjectType.TREE, Tree.decode)
                if tree is None:
                    self.trees[oid] = _CLEAN
                    stack.pop()
                    continue
                stack[-1] = (oid, tree.entries)
                pending = dict.fromkeys(e.oid for e in tree.entries
                                        if e.kind == ObjectType.TREE and e.oid not in self.lost
                                        and e.oid not in self.trees)
                stack.extend((child, None) for child in pending)
                continue
            stack.pop()
            self.trees[oid] = tuple(hit for hit in map(self._hit, entries)
                                    if hit is not None) or _CLEAN

    def _hit(self, entry: TreeEntry) -> _Hit | None:
        what = DIR if entry.kind == ObjectType.TREE else \
            SYMLINK if entry.is_symlink else FILE
        if entry.oid in self.lost:
            return _Hit(entry.name, what, (entry.oid,), None)
        if entry.kind == ObjectType.TREE:
            return _Hit(entry.name, what, (), entry.oid) if self.trees[entry.oid] else None
        if entry.kind == ObjectType.CHUNKS:
            chunks = self._lost_chunks(entry.oid)
            return _Hit(entry.name, what, chunks, None) if chunks else None
        return None

    def _lost_chunks(self, oid: Oid) -> tuple[Oid, ...]:
        known = self.chunk_lists.get(oid)
        if known is None:
            chunk_list = self._read(oid, ObjectType.CHUNKS, ChunkList.decode)
            known = () if chunk_list is None else tuple(
                dict.fromkeys(c.oid for c in chunk_list.chunks if c.oid in self.lost))
            self.chunk_lists[oid] = known
        return known

    def _commit(self, oid: Oid) -> tuple[Oid, tuple[Oid, ...]] | None:
        if oid not in self.commits:
            commit = self._read(oid, ObjectType.COMMIT, Commit.decode)
            self.commits[oid] = None if commit is None else (commit.tree, commit.parents)
        return self.commits[oid]

    def _read(self, oid: Oid, kind: ObjectType, decode: Callable[[bytes, Oid], _T]
              ) -> _T | None:
        try:
            actual, content = self.odb.get(oid)
            if actual != kind:
                raise CorruptObject(f"object {oid} is a {actual.label}, expected a {kind.label}")
            return decode(content, oid)
        except VstError as exc:
            if self.warn is not None:
                self.warn(f"cannot read {kind.label} {oid}, not walked into: {exc}")
            return None
