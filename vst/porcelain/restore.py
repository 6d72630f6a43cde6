"""``vst restore``: bring files or folders back from any commit, into the working copy or
into any folder.

A restored folder is laid over what is there (overlay): files the commit names are put back,
files it does not name are left alone, so a restore never deletes anything that is not in
the commit. Whatever a restored path replaces is gone, as with ``git restore``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vst.checkout import Checkout, Placed
from vst.errors import NotFound, UsageError, from_os_error
from vst.objects.oid import Oid
from vst.objects.tree import TreeEntry
from vst.porcelain.clone import cache_entries
from vst.porcelain.status import load_cache
from vst.store import Store
from vst.workdir import StatCache, WorkingCopy

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    source: Oid
    placed: list[Placed]

    @property
    def files(self) -> int:
        return sum(1 for p in self.placed if not p.entry.is_dir)

    @property
    def bytes(self) -> int:
        return sum(p.entry.size for p in self.placed if p.entry.is_file)


def entry_at(store: Store, tree: Oid, path: bytes) -> TreeEntry | None:
    """The entry at ``path`` in ``tree`` (None for the root itself); NotFound if absent."""
    entry = None
    current = tree
    parts = [p for p in path.split(b"/") if p]
    for depth, part in enumerate(parts):
        found = store.odb.read_tree(current).get(part)
        if found is None or (depth < len(parts) - 1 and not found.is_dir):
            raise NotFound(f"path '{path.decode(errors='replace')}' is not in the source commit")
        entry = found
        current = found.oid
    return entry


def restore(store: Store, source: Oid, target: str, paths: Sequence[bytes], *,
            warn: Warn = lambda _: None,
            on_bytes: Callable[[int], None] | None = None,
            in_place: bool = True) -> RestoreResult:
    """Write ``paths`` (relative to the commit's root; none or b"": everything) of commit
    ``source`` under ``target``, at the same relative paths. ``in_place``: files in
    folders the restore makes are created under their own names (see ``Checkout``)."""
    tree = store.odb.read_commit(source).tree
    wanted = list(paths) or [b""]
    plan: list[tuple[bytes, TreeEntry | None]] = []
    for path in wanted:
        clean = b"/".join(p for p in path.split(b"/") if p not in (b"", b"."))
        if any(p == b".." for p in clean.split(b"/")):
            raise UsageError(f"'{path.decode(errors='replace')}': '..' is not allowed here")
        plan.append((clean, entry_at(store, tree, clean)))  # all found before writing any
    made = not os.path.lexists(target)
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, f"cannot create '{target}'") from exc
    with Checkout(store, target, on_bytes=on_bytes, warn=warn, in_place=in_place,
                  empty_root=in_place and made) as checkout:
        for path, entry in plan:
            if entry is None:
                for child in store.odb.read_tree(tree).entries:
                    checkout.write(child.name, child)
            else:
                checkout.write(path, entry)
        placed = checkout.finish()
    return RestoreResult(source, placed)


def restore_in_working_copy(store: Store, copy: WorkingCopy, source: Oid,
                            paths: Sequence[bytes], *, warn: Warn = lambda _: None,
                            on_bytes: Callable[[int], None] | None = None) -> RestoreResult:
    """``restore`` into the working copy. Restored from its base, the files are in step with
    it again, and the stat cache learns their status (no need to read them next time)."""
    with copy.lock("restore"):
        started = time.time_ns()
        # Files being replaced under the user's eyes: each renamed into place whole.
        result = restore(store, source, copy.root, paths, warn=warn, on_bytes=on_bytes,
                         in_place=False)
        base = copy.base()
        if source == base:
            cache = load_cache(store, copy)
            entries = dict(cache.entries)
            entries.update({path: entry for path, entry in cache_entries(result.placed).items()
                            if path in entries})
            copy.save_cache(StatCache(base, entries), started)
    return result
