"""``vst status``: what changed in the working copy since its base commit.

Changes are leaf changes, as ``diff_trees`` defines them (files, symlinks and empty
directories): the working copy is scanned through the stat cache, and its entries are
compared with the cache's, which describe the base commit. A file whose status no longer
matches but whose content does (it was touched, or copied back) is not a change; its new
status is saved, so the next scan does not read it again.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from vst.errors import Locked, NotFound, UsageError
from vst.objects.oid import Oid
from vst.objects.types import ObjectType
from vst.plumbing.diff_tree import Change, leaf_change
from vst.plumbing.snapshot import Snapshot, cache_from_tree, scan
from vst.store import Store
from vst.workdir import CacheEntry, StatCache, WorkingCopy

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Status:
    base: str | None  # the base commit's id (hex), None before the first commit
    head: str | None  # the collection's head (hex)
    changes: list[Change]
    snapshot: Snapshot

    @property
    def behind(self) -> bool:
        """The collection has moved past the working copy's base (another clone committed)."""
        return self.head != self.base


def load_cache(store: Store, copy: WorkingCopy) -> StatCache:
    """The stat cache of ``copy``, rebuilt from the base commit when missing, damaged or
    made for another base."""
    base = copy.base()
    cache = copy.load_cache()
    if cache is None or cache.base != base:
        cache = cache_from_tree(store, base)
    return cache


def leaves(entries: dict[bytes, CacheEntry]) -> dict[bytes, CacheEntry]:
    """The entries that are files, symlinks or empty directories."""
    parents = {path.rpartition(b"/")[0] for path in entries}
    return {path: entry for path, entry in entries.items()
            if entry.kind != ObjectType.TREE or path not in parents}


def working_changes(base: dict[bytes, CacheEntry], current: dict[bytes, CacheEntry],
                    paths: Sequence[bytes] = ()) -> list[Change]:
    """Leaf changes from the base entries to the working copy's, sorted by path."""
    return list(iter_working_changes(base, current, paths, ordered=True))


def iter_working_changes(base: dict[bytes, CacheEntry], current: dict[bytes, CacheEntry],
                         paths: Sequence[bytes] = (), *, ordered: bool = False
                         ) -> Iterator[Change]:
    """``working_changes`` one at a time, in no particular order unless ``ordered``: what a
    commit counts, without holding a change for each of a million new files at once."""
    specs = [p.strip(b"/") for p in paths if p.strip(b"/") not in (b"", b".")]
    base_parents = current_parents = None  # computed only if a folder needs them
    tree = ObjectType.TREE
    every = itertools.chain(base, (path for path in current if path not in base))
    for path in sorted(every) if ordered else every:
        was, now = base.get(path), current.get(path)
        if was is not None and now is not None:
            if was is now or (was.oid == now.oid and was.mode == now.mode):
                continue  # the common case, decided without building anything
            if was.kind == now.kind == tree and was.mode == now.mode:
                # A folder on both sides, emptied or filled: its files' changes say it all.
                # (Nor are ids compared: a scan that stores nothing has none for folders.)
                continue
        if specs and not any(path == s or path.startswith(s + b"/") for s in specs):
            continue
        # Only leaves count: a non-empty folder is not one.
        if was is not None and was.kind == tree:
            base_parents = base_parents or {p.rpartition(b"/")[0] for p in base}
            if path in base_parents:
                was = None
        if now is not None and now.kind == tree:
            current_parents = current_parents or {p.rpartition(b"/")[0] for p in current}
            if path in current_parents:
                now = None
        name = path.rpartition(b"/")[2]
        change = leaf_change(path, was.tree_entry(name) if was else None,
                             now.tree_entry(name) if now else None)
        if change is not None:
            yield change


def status(store: Store, copy: WorkingCopy, *, paths: Sequence[bytes] = (),
           warn: Warn = lambda _: None, on_bytes: Callable[[int], None] | None = None,
           refresh: bool = True) -> Status:
    """Scan ``copy`` and compare it with its base; with ``refresh``, save the status of
    files found unchanged after all, when no other command holds the working copy."""
    started = time.time_ns()
    cache = load_cache(store, copy)
    snapshot = scan(store, copy.root, cache, sealing=partial(store.sealing, copy.collection),
                    warn=warn, on_bytes=on_bytes)
    changes = working_changes(cache.entries, snapshot.entries, paths)
    if refresh:
        refresh_cache(copy, cache, snapshot, started)
    head = store.read_ref(copy.collection) if store.has_collection(copy.collection) else None
    base = copy.base()
    return Status(base.hex if base else None, head.hex if head else None, changes, snapshot)


def refresh_cache(copy: WorkingCopy, cache: StatCache, snapshot: Snapshot,
                  started: int) -> None:
    """Record the status of files read and found to hold their base content, so that they
    are not read again (``started``: when the scan began, for the racy rule)."""
    if not snapshot.read_bytes:
        return
    refreshed = dict(cache.entries)
    updated = False
    for path, entry in snapshot.entries.items():
        old = cache.entries.get(path)
        if old is not None and entry.ctime_ns and entry != old and old.same_content(entry):
            refreshed[path] = entry
            updated = True
    if not updated:
        return
    if copy.base() != cache.base:
        return
    try:
        if copy.lock_held:
            copy.save_cache(StatCache(cache.base, refreshed), started)
            return
        with copy.lock("refresh the stat cache", wait=False):
            if copy.base() == cache.base:
                copy.save_cache(StatCache(cache.base, refreshed), started)
    except (Locked, NotFound, OSError):
        pass  # only a cache: another command is busy here, or the folder is read-only


def relative_paths(copy: WorkingCopy, paths: Sequence[str], cwd: str | None = None) -> list[bytes]:
    """PATH arguments (relative to ``cwd``) as paths relative to the working copy's root."""
    here = os.path.abspath(cwd or os.getcwd())
    out = []
    for path in paths:
        full = os.path.normpath(os.path.join(here, path))
        rel = os.path.relpath(full, copy.root)
        if rel == os.curdir:
            out.append(b"")
            continue
        if rel.startswith(os.pardir + os.sep) or rel == os.pardir:
            raise UsageError(f"'{path}' is outside the working copy '{copy.root}'")
        out.append(os.fsencode(rel))
    return out


def working_diff(store: Store, copy: WorkingCopy, against: Oid | None,
                 paths: Sequence[bytes] = (), *, warn: Warn = lambda _: None
                 ) -> tuple[list[Change], Callable[[Change], bytes]]:
    """The changes from commit ``against`` (None: nothing) to the working copy, and a loader
    for the working copy's side of a change (a file's bytes, or a symlink's target)."""
    cache = load_cache(store, copy)
    if against != cache.base:
        cache = cache_from_tree(store, against)
    snapshot = scan(store, copy.root, cache, sealing=partial(store.sealing, copy.collection),
                    warn=warn)
    changes = working_changes(cache.entries, snapshot.entries, paths)

    def load(change: Change) -> bytes:
        path = os.path.join(os.fsencode(copy.root), change.path)
        if change.new is not None and change.new.is_symlink:
            return os.readlink(path)
        with open(path, "rb") as f:
            return f.read()

    return changes, load
