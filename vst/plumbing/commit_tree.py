"""``vst commit-tree``: make a commit object from a tree, parents and a message."""

from __future__ import annotations

from collections.abc import Sequence

from vst.errors import UsageError
from vst.objects.commit import Commit, Signature
from vst.objects.odb import ObjectWriter
from vst.objects.oid import Oid
from vst.objects.types import ObjectType
from vst.store import Store


def commit_tree(store: Store, tree: Oid, parents: Sequence[Oid], message: bytes, *,
                author: Signature, committer: Signature,
                writer: ObjectWriter | None = None) -> Oid:
    """Store the commit; into ``writer`` if given (the caller makes it durable), else into a
    pack of its own, durable when this returns."""
    odb = store.odb
    if writer is not None:
        return writer.put(ObjectType.COMMIT, _commit(store, tree, parents, message, author,
                                                     committer, writer))
    with odb.writer() as own:
        return own.put(ObjectType.COMMIT, _commit(store, tree, parents, message, author,
                                                  committer, own))


def _commit(store: Store, tree: Oid, parents: Sequence[Oid], message: bytes,
            author: Signature, committer: Signature, writer: ObjectWriter) -> bytes:
    odb = store.odb
    # Verified reads (trees and commits are small): a damaged record's type byte alone
    # must not decide what a commit points at. A tree still in the writer's open pack was
    # made by this process from verified parts.
    if not writer.pending(tree) and odb.get(tree)[0] != ObjectType.TREE:
        raise UsageError(f"{tree} is not a tree")
    seen = set()
    for parent in parents:
        if odb.get(parent)[0] != ObjectType.COMMIT:
            raise UsageError(f"{parent} is not a commit")
        if parent in seen:
            raise UsageError(f"duplicate parent {parent}")
        seen.add(parent)
    if message and not message.endswith(b"\n"):
        message += b"\n"
    return Commit(tree, tuple(parents), author, committer, message).encode()
