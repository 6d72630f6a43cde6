"""``vst count-objects``: how much the store holds, from the index."""

from __future__ import annotations

from dataclasses import dataclass

from vst.store import Store


@dataclass(frozen=True, slots=True)
class Counts:
    objects: int
    packs: int
    size_pack: int
    volumes: int
    collections: int


def count_objects(store: Store) -> Counts:
    objects, packs, size = store.odb.index.count()
    return Counts(objects, packs, size, len(store.volumes()), len(store.collection_names()))
