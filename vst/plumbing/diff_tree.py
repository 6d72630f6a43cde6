"""Comparing two trees: the leaf changes between them, and flattening one tree.

A tree's *leaves* are its files, its symlinks and its empty directories, each at its
``/``-joined path. ``diff_trees`` is the difference of the two trees' leaves:

- a path that is a leaf only in the old tree is ``D``, only in the new tree ``A``;
- a path that is a leaf in both, with a different file type (file, symlink, empty
  directory), is ``T``;
- a path that is a leaf in both, of the same type, with a different id or mode, is ``M``
  (mtime, size and attributes alone are not a change: the id covers the content).

So a directory added or deleted yields its files (a directory on both sides, emptied or
filled, yields only its files' changes), a file replaced by a non-empty directory is a ``D`` of the file plus an ``A`` for each file below the directory (as in
git), and a file replaced by an empty directory (or by a symlink) is one ``T``. A
directory's own mode is not compared unless the directory is empty, as git tracks no
directories. Subtrees with the same id on both sides are skipped without being read.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vst.objects.oid import Oid
from vst.objects.tree import TreeEntry
from vst.store import Store


@dataclass(frozen=True, slots=True)
class Change:
    status: str  # "A" added, "D" deleted, "M" modified (content or mode), "T" type changed
    path: bytes  # b"/"-joined, relative to the compared trees
    old: TreeEntry | None
    new: TreeEntry | None


class _PathFilter:
    """git pathspecs without globs: a path matches a spec equal to it or above it."""

    def __init__(self, paths: Sequence[bytes]) -> None:
        specs = [p.strip(b"/") for p in paths]
        # An empty spec ('.', '/' or '') names the root: everything matches.
        self.specs = [] if any(s in (b"", b".") for s in specs) else specs

    def matches(self, path: bytes) -> bool:
        return not self.specs or any(path == s or path.startswith(s + b"/")
                                     for s in self.specs)

    def leads_to_match(self, path: bytes) -> bool:
        """Something below ``path`` may match (``path`` is a directory on the way)."""
        return self.matches(path) or any(s.startswith(path + b"/") for s in self.specs)


def leaf_change(path: bytes, old: TreeEntry | None, new: TreeEntry | None) -> Change | None:
    if old is None and new is None:
        return None
    if old is None:
        return Change("A", path, None, new)
    if new is None:
        return Change("D", path, old, None)
    if stat.S_IFMT(old.mode) != stat.S_IFMT(new.mode):
        return Change("T", path, old, new)
    if old.oid != new.oid or old.mode != new.mode:
        return Change("M", path, old, new)
    return None


def _join(prefix: bytes, name: bytes) -> bytes:
    return prefix + b"/" + name if prefix else name


def diff_trees(store: Store, old: Oid | None, new: Oid | None,
               paths: Sequence[bytes] = ()) -> list[Change]:
    """The leaf changes from tree ``old`` to tree ``new`` (None: an empty tree), sorted by
    path bytes; with ``paths``, only changes at or below one of them."""
    wanted = _PathFilter(paths)
    changes: list[Change] = []
    # Each task is a path where at least one side is a directory (or the root). Explicit
    # stack, not recursion: trees may nest deeper than Python's recursion limit.
    tasks: list[tuple[bytes, TreeEntry | None, TreeEntry | None, Oid | None, Oid | None]]
    tasks = [(b"", None, None, old, new)] if old != new else []
    while tasks:
        path, old_entry, new_entry, old_tree, new_tree = tasks.pop()
        old_children = _children(store, old_tree)
        new_children = _children(store, new_tree)
        if path and wanted.matches(path):
            # A side that is a file or symlink, or an empty directory, is a leaf here.
            old_leaf = old_entry if old_tree is None or not old_children else None
            new_leaf = new_entry if new_tree is None or not new_children else None
            # A directory on both sides that was emptied or filled is no change of its
            # own: its files' changes say it all.
            both_dirs = old_tree is not None and new_tree is not None
            if both_dirs and (old_leaf is None or new_leaf is None):
                old_leaf = new_leaf = None
            change = leaf_change(path, old_leaf, new_leaf)
            if change is not None:
                changes.append(change)
        for name in sorted(old_children.keys() | new_children.keys()):
            child = _join(path, name)
            if not wanted.leads_to_match(child):
                continue
            o, n = old_children.get(name), new_children.get(name)
            if o is not None and n is not None and o.oid == n.oid:
                # Same content, so not read: only the mode can differ, and a directory's
                # mode counts only when the directory is an empty leaf.
                change = leaf_change(child, o, n) if wanted.matches(child) else None
                # (Read, not compared with the empty tree's id: that id depends on the
                # keyring; only a mode change gets here, so this read is rare.)
                if change is not None and (not o.is_dir
                                           or not store.odb.read_tree(o.oid).entries):
                    changes.append(change)
                continue
            old_dir = o.oid if o is not None and o.is_dir else None
            new_dir = n.oid if n is not None and n.is_dir else None
            if old_dir is not None or new_dir is not None:
                tasks.append((child, o, n, old_dir, new_dir))
            elif wanted.matches(child):
                change = leaf_change(child, o, n)
                if change is not None:
                    changes.append(change)
    changes.sort(key=lambda c: c.path)
    return changes


def _children(store: Store, tree: Oid | None) -> dict[bytes, TreeEntry]:
    if tree is None:
        return {}
    return {entry.name: entry for entry in store.odb.read_tree(tree).entries}


def flatten_tree(store: Store, tree: Oid) -> Iterator[tuple[bytes, TreeEntry]]:
    """Every entry below ``tree`` with its path: directories before their contents, the
    entries of each directory in name order (pre-order)."""
    stack = [iter([(e.name, e) for e in store.odb.read_tree(tree).entries])]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        path, entry = item
        yield path, entry
        if entry.is_dir:
            stack.append(iter([(path + b"/" + e.name, e)
                               for e in store.odb.read_tree(entry.oid).entries]))
