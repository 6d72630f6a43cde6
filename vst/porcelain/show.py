"""``vst show``: one object for a person to read: a commit with its changes, a tree's
listing, or a file's content."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vst.objects.commit import Commit
from vst.objects.oid import Oid
from vst.objects.tree import TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.cat_file import file_content
from vst.plumbing.diff_tree import Change, diff_trees
from vst.plumbing.quoting import quote
from vst.store import Store


@dataclass(frozen=True, slots=True)
class ShownCommit:
    oid: Oid
    commit: Commit
    changes: tuple[Change, ...]  # against the first parent; a root commit against nothing


@dataclass(frozen=True, slots=True)
class ShownTree:
    oid: Oid
    entries: tuple[TreeEntry, ...]


@dataclass(frozen=True, slots=True)
class ShownContent:
    """A blob or chunks object: the file it holds (or a symlink's target), verified piece
    by piece as it is read."""

    oid: Oid
    kind: ObjectType
    content: Iterator[bytes]


Shown = ShownCommit | ShownTree | ShownContent


def show(store: Store, oid: Oid) -> Shown:
    odb = store.odb
    kind = odb.get_kind(oid)
    if kind == ObjectType.COMMIT:
        commit: Commit = odb.read_commit(oid)
        base = odb.read_commit(commit.parents[0]).tree if commit.parents else None
        return ShownCommit(oid, commit, tuple(diff_trees(store, base, commit.tree)))
    if kind == ObjectType.TREE:
        return ShownTree(oid, odb.read_tree(oid).entries)
    return ShownContent(oid, kind, file_content(store, oid))


def format_tree(shown: ShownTree) -> bytes:
    """git's ``show`` of a tree: ``tree <id>``, a blank line, then one name per line,
    directories with a trailing ``/``, C-quoted."""
    names = [quote(e.name + (b"/" if e.is_dir else b"")).encode() + b"\n"
             for e in shown.entries]
    return b"tree " + shown.oid.hex.encode() + b"\n\n" + b"".join(names)
