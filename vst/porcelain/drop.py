"""``vst drop``: remove a working copy, only when nothing would be lost.

Refused when the working copy has uncommitted changes, holds ignored files (they are in no
commit), or when any object reachable from its base commit is missing from the store's
volumes, or has fewer copies on its collection's policy volumes than the policy asks —
checked on the volumes themselves (each pack's size asked of each volume), not only in the
index, which is a cache.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from vst.errors import ObjectMissing, Refused
from vst.objects.oid import Oid
from vst.plumbing.quoting import quote
from vst.plumbing.reachable import reachable
from vst.porcelain.hooks import Hooks
from vst.porcelain.status import status
from vst.store import Store
from vst.workdir import WorkingCopy

Warn = Callable[[str], None]
SHOWN = 5  # paths named in a refusal


@dataclass(frozen=True, slots=True)
class DropResult:
    root: str
    base: Oid | None
    objects: int
    packs: int


def check_stored(store: Store, commit: Oid, collection: str) -> tuple[int, int]:
    """(objects, packs) reachable from ``commit``, each pack found at its full size on as
    many of ``collection``'s policy volumes as the policy asks for copies; Refused naming
    what is short otherwise. Asked of the volumes themselves: the index is a cache."""
    try:
        oids = [oid for oid, _kind in reachable(store, [commit])]
        packs = store.odb.packs_holding(oids)
    except ObjectMissing as exc:
        raise Refused(f"the store lacks objects of this working copy's commit: {exc.message}",
                      hint="run 'vst fsck' on the store") from None
    store.check_copies(packs, collection)
    return len(oids), len(packs)


def _listing(paths: list[bytes]) -> str:
    shown = ", ".join(quote(p) for p in paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def drop(store: Store, copy: WorkingCopy, *, hooks: Hooks, discard_ignored: bool = False,
         warn: Warn = lambda _: None) -> DropResult:
    with copy.lock("drop"):
        marker = os.path.join(copy.state, "dropping")
        if os.path.exists(marker):  # an interrupted drop: everything was checked then
            base = copy.base()
            _remove_tree(copy.root)
            return DropResult(copy.root, base, 0, 0)
        hooks.pre("pre-drop")
        state = status(store, copy, warn=warn, refresh=False)
        if state.changes:
            raise Refused(f"'{copy.root}' has {len(state.changes)} uncommitted change(s): "
                          f"{_listing([c.path for c in state.changes])}",
                          hint="commit them ('vst commit') or undo them ('vst restore'), "
                               "then drop")
        if state.snapshot.ignored and not discard_ignored:
            raise Refused(f"'{copy.root}' holds {len(state.snapshot.ignored)} ignored "
                          f"path(s) that are in no commit: {_listing(state.snapshot.ignored)}",
                          hint="pass --discard-ignored to drop them too")
        base = copy.base()
        objects = packs = 0
        if base is not None:
            objects, packs = check_stored(store, base, copy.collection)
        copy.fs.write_file(marker, b"")
        _remove_tree(copy.root)
    return DropResult(copy.root, base, objects, packs)


def _remove_tree(root: str) -> None:
    # rmtree is fd-based on Linux: a symlink inside is removed, never followed. .vst/ goes
    # last, so an interrupted drop still leaves a working copy that can be dropped again.
    state = os.path.join(root, ".vst")
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if path == state:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    shutil.rmtree(root)
