"""``vst collection create|list``."""

from __future__ import annotations

from dataclasses import dataclass

from vst.objects.oid import Oid
from vst.porcelain.clone import tree_size
from vst.store import Store


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    head: Oid | None
    commit_time: int | None
    files: int = 0  # in the head commit
    size: int = 0  # bytes of file content in the head commit


def collection_create(store: Store, name: str) -> None:
    store.create_collection(name)


def collection_list(store: Store) -> list[CollectionInfo]:
    infos = []
    for collection in store.collections():
        when = None
        files = size = 0
        if collection.head is not None:
            commit = store.odb.read_commit(collection.head)
            when = commit.committer.time
            files, size = tree_size(store, commit.tree)
        infos.append(CollectionInfo(collection.name, collection.head, when, files, size))
    return infos
