"""``vst index rebuild``: recreate the object index from the packs on the volumes.

The new index is built beside the old one and renamed over it, so a reader never sees a
half-built index and an interrupted rebuild leaves the old one in place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from vst.errors import VolumeUnreachable, VstError, from_os_error
from vst.objects.index import ObjectIndex
from vst.objects.odb import VolumeRef
from vst.objects.oid import Oid, is_full_hex
from vst.objects.pack import read_index
from vst.plumbing.reachable import record_owners
from vst.store import Store


@dataclass(frozen=True, slots=True)
class RebuildResult:
    packs: int
    objects: int
    skipped: int


def index_volume(index: ObjectIndex, volume: VolumeRef, *,
                 warn: Callable[[str], None] = lambda _: None,
                 on_pack: Callable[[int], None] = lambda _size: None) -> tuple[int, int]:
    """Record in ``index`` every pack on ``volume`` (its footer and index only, not its
    records). Files under packs/ not named like packs, and packs whose index cannot be read,
    are skipped with a warning. ``on_pack`` gets each indexed pack's size. Returns (packs
    indexed, files skipped)."""
    indexed = skipped = 0
    for name in volume.backend.list("packs/"):
        hex_id = name.rsplit("/", 1)[-1]
        if not is_full_hex(hex_id) or name != f"packs/{hex_id[:2]}/{hex_id}":
            warn(f"ignoring unexpected file '{name}' on volume '{volume.name}'")
            skipped += 1
            continue
        pack = Oid.from_hex(hex_id)
        try:
            size = volume.backend.size(name)
            entries = read_index(partial(volume.backend.load, name), size,
                                 f"{pack} on volume '{volume.name}'")
        except VstError as exc:
            warn(f"skipping pack: {exc}")
            skipped += 1
            continue
        index.add_pack(pack, size, entries, [volume.volume_id])
        indexed += 1
        on_pack(size)
    return indexed, skipped


def index_rebuild(store: Store, *, warn: Callable[[str], None] = lambda _: None) -> RebuildResult:
    final = os.path.join(store.path, "index.sqlite")
    temp = final + ".rebuild"
    for leftover in (temp, temp + "-wal", temp + "-shm"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    volumes = store.volumes()
    if store.unavailable:
        # Rebuilt without it, the index would forget every copy the volume holds.
        name, why = sorted(store.unavailable.items())[0]
        raise VolumeUnreachable(f"cannot rebuild the index while volume '{name}' is "
                                f"unavailable: {why}",
                                hint="bring it back, or forget it with 'vst volume lost'")
    index = ObjectIndex(temp)
    skipped = 0
    try:
        for volume in volumes:
            skipped += index_volume(index, volume, warn=warn)[1]
        objects, packs, _ = index.count()
    finally:
        index.close()
    store.close()
    try:
        # The old index's write-ahead log must not be applied to the new file.
        for stale in (final + "-wal", final + "-shm"):
            if os.path.exists(stale):
                os.unlink(stale)
        os.replace(temp, final)
    except OSError as exc:
        raise from_os_error(exc, f"cannot replace the index '{final}'") from exc
    store.fs.fsync_dir(store.path)
    # Which packs each collection uses is not in the packs: walk the collections for it.
    for collection in store.collections():
        unreadable = record_owners(store, collection.name, collection.head)
        if unreadable:
            warn(f"collection '{collection.name}': {len(unreadable)} object(s) cannot be "
                 "read; its under-replicated count is unknown until 'vst replicate'")
    return RebuildResult(packs, objects, skipped)
