"""Walking the object graph from commits, trees or content objects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vst.objects.chunks import ChunkList
from vst.objects.commit import Commit
from vst.objects.oid import Oid
from vst.objects.tree import Tree
from vst.objects.types import ObjectType
from vst.store import Store


def reachable(store: Store, roots: Iterable[Oid], *,
              skip: set[Oid] | None = None) -> Iterator[tuple[Oid, ObjectType]]:
    """Every object reachable from ``roots`` once, parents before what they point at.

    Commits, trees and chunk lists are read (and so verified); blobs are only named. A
    missing or corrupt object raises; ``fsck`` catches and reports.
    """
    seen = set(skip or ())
    stack: list[tuple[Oid, ObjectType | None]] = [(oid, None) for oid in roots]
    odb = store.odb
    while stack:
        oid, kind = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if kind is None:
            kind = odb.get_kind(oid)
        yield oid, kind
        if kind == ObjectType.BLOB:
            continue
        content = odb.get_typed(oid, kind)
        if kind == ObjectType.COMMIT:
            commit = Commit.decode(content, oid)
            stack.extend((p, ObjectType.COMMIT) for p in reversed(commit.parents))
            stack.append((commit.tree, ObjectType.TREE))
        elif kind == ObjectType.TREE:
            stack.extend((e.oid, e.kind) for e in reversed(Tree.decode(content, oid).entries))
        elif kind == ObjectType.CHUNKS:
            stack.extend((c.oid, ObjectType.BLOB) for c in ChunkList.decode(content, oid).chunks)
