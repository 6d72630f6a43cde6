"""``vst collection create|list|set-policy``."""

from __future__ import annotations

from dataclasses import dataclass

from vst.errors import AlreadyExists, UsageError
from vst.objects.oid import Oid
from vst.porcelain.clone import tree_size
from vst.porcelain.policy import under_replicated
from vst.store import Store, check_collection_name


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    head: Oid | None
    commit_time: int | None
    files: int = 0  # in the head commit
    size: int = 0  # bytes of file content in the head commit
    policy: str = ""
    under_replicated: int = 0  # packs with fewer copies than the policy asks


def collection_create(store: Store, name: str, *, encrypt: bool = True,
                      keyring: str | None = None) -> str | None:
    """Create collection ``name``; returns its keyring. Encrypted by default, with a keyring
    of its own (named after it, wrapped for your keys, made on first use); ``keyring``
    names an existing one to share, so that the collections deduplicate against each other
    (you must hold a key to it)."""
    if not encrypt:
        if keyring is not None:
            raise UsageError("--keyring and --no-encrypt contradict each other")
        store.create_collection(name)
        return None
    check_collection_name(name)
    if store.has_collection(name):
        raise AlreadyExists(f"collection '{name}' already exists")
    keyring = keyring or name
    if store.keyrings.exists(keyring):
        store.keyrings.unlock(keyring)  # sharing needs a key that opens it
    else:
        store.keyrings.create(keyring)
    store.create_collection(name, keyring=keyring)
    return keyring


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
