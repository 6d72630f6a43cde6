"""``vst policy set|list|remove``: the store's replication policies."""

from __future__ import annotations

from dataclasses import dataclass

from vst.errors import UsageError
from vst.objects.index import ObjectIndex
from vst.objects.oid import Oid
from vst.policy import Policy
from vst.store import Store


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    policy: Policy
    collections: tuple[str, ...]  # the collections that follow it


def policy_set(store: Store, name: str, volumes: str, copies: int | None) -> Policy:
    """Create or change ``name`` over the comma-separated ``volumes``. Collections that
    follow it write new packs by it at once; 'vst replicate' applies it to the rest."""
    listed = tuple(v.strip() for v in volumes.split(","))
    if any(not v for v in listed):
        raise UsageError(f"--volumes '{volumes}': give volume names separated by commas")
    return store.set_policy(name, listed, copies)


def policy_list(store: Store) -> list[PolicyInfo]:
    users: dict[str, list[str]] = {}
    for collection in store.collection_names():
        users.setdefault(store.collection_policy(collection), []).append(collection)
    return [PolicyInfo(policy, tuple(users.get(name, ())))
            for name, policy in sorted(store.policies().items())]


def policy_remove(store: Store, name: str) -> None:
    store.remove_policy(name)


def short_packs(store: Store, collection: str, index: ObjectIndex | None = None
                ) -> dict[Oid, int]:
    """See ``Store.short_packs``."""
    return store.short_packs(collection, index)


def under_replicated(store: Store, collection: str) -> tuple[int, int]:
    """(packs, bytes) of ``short_packs``."""
    short = short_packs(store, collection)
    return len(short), sum(short.values())
