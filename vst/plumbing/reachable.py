"""Walking the object graph from commits, trees or content objects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vst.errors import VstError
from vst.objects.chunks import ChunkList
from vst.objects.commit import Commit
from vst.objects.oid import Oid
from vst.objects.tree import Tree
from vst.objects.types import ObjectType
from vst.store import Store


def children(kind: ObjectType, oid: Oid, content: bytes) -> list[tuple[Oid, ObjectType]]:
    """The objects one object names, in its own order."""
    if kind == ObjectType.COMMIT:
        commit = Commit.decode(content, oid)
        return [(commit.tree, ObjectType.TREE)] + [(p, ObjectType.COMMIT) for p in commit.parents]
    if kind == ObjectType.TREE:
        return [(e.oid, e.kind) for e in Tree.decode(content, oid).entries]
    if kind == ObjectType.CHUNKS:
        return [(c.oid, ObjectType.BLOB) for c in ChunkList.decode(content, oid).chunks]
    return []


def reachable(store: Store, roots: Iterable[Oid]) -> Iterator[tuple[Oid, ObjectType]]:
    """Every object reachable from ``roots``, once each, every object after all of the
    objects it names (a depth-first post-order): copying them in this order, an interrupted
    copy never leaves an object whose children are missing, even where subtrees are shared.

    Commits, trees and chunk lists are read (and so verified); blobs are only named. A
    missing or corrupt object raises.
    """
    odb = store.odb
    seen: set[Oid] = set()
    # (oid, kind or None if not yet known, its children once expanded)
    stack: list[tuple[Oid, ObjectType | None, list[tuple[Oid, ObjectType]] | None]] = [
        (oid, None, None) for oid in reversed(list(roots))]
    while stack:
        oid, kind, named = stack.pop()
        if named is not None:
            yield oid, kind  # type: ignore[misc]
            continue
        if oid in seen:
            continue
        seen.add(oid)
        if kind is None:
            kind = odb.get_kind(oid)
        if kind == ObjectType.BLOB:
            yield oid, kind
            continue
        named = children(kind, oid, odb.get_typed(oid, kind))
        stack.append((oid, kind, named))
        stack.extend((child, child_kind, None) for child, child_kind in reversed(named)
                     if child not in seen)


def walk_history(store: Store, roots: Iterable[Oid]) -> tuple[set[Oid], list[Oid]]:
    """Every object named from the commits ``roots`` (through all their parents), and the
    objects that could not be read on any volume, whose children stay unknown: unlike
    ``reachable`` a damaged store is walked as far as it can be."""
    odb = store.odb
    seen: set[Oid] = set()
    unreadable: list[Oid] = []
    stack: list[tuple[Oid, ObjectType]] = [(oid, ObjectType.COMMIT) for oid in roots]
    while stack:
        oid, kind = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if kind == ObjectType.BLOB:
            continue
        try:
            named = children(kind, oid, odb.get_typed(oid, kind))
        except VstError:
            unreadable.append(oid)
            continue
        stack.extend(child for child in named if child[0] not in seen)
    return seen, unreadable


def record_owners(store: Store, collection: str, head: Oid | None) -> list[Oid]:
    """Refresh the index's record of the packs ``collection`` uses from a walk of its
    history; returns the objects that could not be read (the record is then left as it
    was: a partial walk would under-record)."""
    reached, unreadable = walk_history(store, [head] if head is not None else [])
    if not unreadable:
        index = store.odb.index
        index.set_owned(collection, index.packs_of(reached))
    return unreadable
