"""``vst collection create|list``."""

from __future__ import annotations

from dataclasses import dataclass

from vst.objects.oid import Oid
from vst.store import Store


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    head: Oid | None
    commit_time: int | None


def collection_create(store: Store, name: str) -> None:
    store.create_collection(name)


def collection_list(store: Store) -> list[CollectionInfo]:
    infos = []
    for collection in store.collections():
        when = None
        if collection.head is not None:
            when = store.odb.read_commit(collection.head).committer.time
        infos.append(CollectionInfo(collection.name, collection.head, when))
    return infos
