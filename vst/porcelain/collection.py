"""``vst collection create|list|set-policy``."""

from __future__ import annotations

from dataclasses import dataclass

from vst.objects.oid import Oid
from vst.porcelain.clone import tree_size
from vst.porcelain.policy import under_replicated
from vst.store import Store


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    head: Oid | None
    commit_time: int | None
    files: int = 0  # in the head commit
    size: int = 0  # bytes of file content in the head commit
    policy: str = ""
    under_replicated: int = 0  # packs with fewer copies than the policy asks


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
        infos.append(CollectionInfo(collection.name, collection.head, when, files, size,
                                    store.collection_policy(collection.name),
                                    under_replicated(store, collection.name)[0]))
    return infos


def collection_set_policy(store: Store, name: str, policy: str) -> None:
    """Make ``name`` follow ``policy``; its existing packs move to it with 'vst replicate'."""
    store.set_collection_policy(name, policy)
