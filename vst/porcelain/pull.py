"""``vst pull``: bring the working copy to its collection's head.

A file-level three-way merge between the base commit (B), the working copy (W) and the
head (T), path by path over the leaves (files, symlinks, empty folders):

- changed only in T: T's version is written (or the path removed);
- changed only in W, or the same change on both sides: W is kept;
- changed on both sides differently: W is kept at the path, and T's version is written
  next to it as ``NAME.vst-conflict-<shortid>.EXT`` (shortid: the head's short id);
- deleted in W, changed in T: T's version comes back (nothing is lost);
- changed in W, deleted in T: W is kept, and is then an addition;
- new in T where W has something the scan does not take (an ignored file): it is kept, and
  T's version is written next to it, as for a conflict.

Nothing local is overwritten or deleted: a path is only replaced when it still holds its
base content. Afterwards the base is the head; the local changes remain uncommitted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vst.checkout import Checkout
from vst.errors import NotFound, Refused
from vst.objects.oid import Oid
from vst.objects.types import ObjectType
from vst.plumbing.diff_tree import Change
from vst.plumbing.snapshot import cache_from_tree, remove_temporaries, scan
from vst.porcelain.clone import cache_entries
from vst.porcelain.hooks import Hooks
from vst.porcelain.status import leaves, load_cache, working_changes
from vst.store import Store
from vst.workdir import CacheEntry, StatCache, WorkingCopy

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Conflict:
    path: bytes
    kind: str  # "both changed", "deleted here", "deleted there", "ignored here", "blocked"
    copy: bytes | None = None  # where the head's version was written, if elsewhere


@dataclass(slots=True)
class PullResult:
    old: Oid | None
    new: Oid | None
    updated: list[bytes] = field(default_factory=list)
    removed: list[bytes] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return self.old == self.new


def conflict_name(path: bytes, head: Oid) -> bytes:
    """``dir/NAME.EXT`` -> ``dir/NAME.vst-conflict-<shortid>.EXT``."""
    parent, slash, name = path.rpartition(b"/")
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem:  # no extension, or a dot file such as '.profile'
        stem, ext = name, b""
    marker = b".vst-conflict-" + head.short().encode()
    return parent + slash + stem + marker + (b"." + ext if ext else b"")


def pull(store: Store, copy: WorkingCopy, *, hooks: Hooks, warn: Warn = lambda _: None,
         on_bytes: Callable[[int], None] | None = None) -> PullResult:
    with copy.lock("pull"):
        base = copy.base()
        if not store.has_collection(copy.collection):
            raise NotFound(f"collection '{copy.collection}' is not in the store")
        head = store.read_ref(copy.collection)
        result = PullResult(base, head)
        if head == base or head is None:
            result.new = base
            return result
        started = time.time_ns()
        cache = load_cache(store, copy)
        snapshot = scan(store, copy.root, cache, sealing=store.sealing(copy.collection),
                    warn=warn)
        remove_temporaries(copy.root, snapshot)
        theirs_all = cache_from_tree(store, head).entries
        ours = {c.path: c for c in working_changes(cache.entries, snapshot.entries)}
        theirs = working_changes(cache.entries, theirs_all)
        mine, other = leaves(snapshot.entries), leaves(theirs_all)
        with Checkout(store, copy.root, on_bytes=on_bytes, warn=warn) as checkout:
            root = os.fsencode(copy.root)

            def present(path: bytes) -> bool:
                return os.path.lexists(os.path.join(root, path))

            def folder(path: bytes) -> bool:
                full = os.path.join(root, path)
                return os.path.isdir(full) and not os.path.islink(full)

            for change in theirs:
                _merge_path(checkout, change, ours.get(change.path), mine, other, head, result,
                            present, folder)
            _remove_emptied_dirs(checkout, cache.entries, theirs_all)
            placed = checkout.finish()
        entries = _new_cache(theirs_all, snapshot.entries, cache_entries(placed))
        copy.set_base(head)
        copy.save_cache(StatCache(head, entries), started)
    hooks.post("post-checkout", [base.hex if base else "0" * 64, head.hex, "1"])
    return result


def _merge_path(checkout: Checkout, change: Change, ours: Change | None,
                mine: dict[bytes, CacheEntry], other: dict[bytes, CacheEntry], head: Oid,
                result: PullResult, present: Callable[[bytes], bool],
                folder: Callable[[bytes], bool]) -> None:
    path = change.path
    theirs = other.get(path)
    here = mine.get(path)
    name = path.rpartition(b"/")[2]
    try:
        if ours is None and here is None and theirs is not None and present(path):
            if theirs.kind == ObjectType.TREE and folder(path):
                return  # an empty folder there, a folder with new files here: both kept
            # Something the scan did not take (an ignored file, say) is where the head now
            # has a path: it is not ours to overwrite.
            aside = conflict_name(path, head)
            checkout.write(aside, theirs.tree_entry(aside.rpartition(b"/")[2]))
            result.conflicts.append(Conflict(path, "ignored here", aside))
            return
        if ours is None:  # untouched here: take theirs
            if theirs is None:
                if checkout.remove(path):
                    result.removed.append(path)
            else:
                checkout.write(path, theirs.tree_entry(name))
                result.updated.append(path)
            return
        if (theirs is None and here is None) or \
                (theirs is not None and here is not None and theirs.same_content(here)):
            return  # the same change on both sides
        if theirs is None:
            result.conflicts.append(Conflict(path, "deleted there"))
        elif here is None:
            checkout.write(path, theirs.tree_entry(name))
            result.updated.append(path)
            result.conflicts.append(Conflict(path, "deleted here"))
        elif theirs.kind == ObjectType.TREE:
            # An empty folder there, something else here: keeping ours loses nothing.
            result.conflicts.append(Conflict(path, "both changed"))
        else:
            aside = conflict_name(path, head)
            checkout.write(aside, theirs.tree_entry(aside.rpartition(b"/")[2]))
            result.conflicts.append(Conflict(path, "both changed", aside))
    except Refused:
        # Something local is in the way (a file or symlink where the head has a folder).
        result.conflicts.append(Conflict(path, "blocked"))


def _remove_emptied_dirs(checkout: Checkout, base: dict[bytes, CacheEntry],
                         theirs: dict[bytes, CacheEntry]) -> None:
    """Folders of the base that the head no longer has go, deepest first, if empty."""
    gone = [path for path, entry in base.items()
            if entry.kind == ObjectType.TREE and path not in theirs]
    for path in sorted(gone, key=lambda p: -p.count(b"/")):
        try:
            checkout.remove(path)
        except Refused:
            continue


def _new_cache(theirs: dict[bytes, CacheEntry], scanned: dict[bytes, CacheEntry],
               placed: dict[bytes, CacheEntry]) -> dict[bytes, CacheEntry]:
    """The head's entries, with the status of every file known to hold that content."""
    entries = {}
    for path, entry in theirs.items():
        if path in placed:
            entry = placed[path]
        elif path in scanned and scanned[path].ctime_ns and scanned[path].same_content(entry):
            entry = scanned[path]
        entries[path] = entry
    return entries
