"""``vst replicate``: bring every pack to the copies its collections' policies ask for.

Which packs a collection needs is found by walking its whole history (every commit, tree
and chunk list, read and verified), not taken from the index's record of what its commits
wrote, and that record (``pack_owners``, what ``status`` and ``collection list`` count) is
refreshed from the walk. A pack several collections share must satisfy each of their
policies. What the index says a volume holds is checked against a listing of the volume,
so a disk replaced by an empty one is refilled, not trusted.

Each copy is made from a copy whose bytes hash to the pack's name (``copy_pack``): a
damaged copy is never spread. The store's metadata is mirrored again to every volume that
is available, so a volume that was down during commits catches up on refs as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vst.errors import ProtocolError, VolumeError, VstError, WrongKey
from vst.objects.odb import VolumeRef, pack_name
from vst.objects.oid import Oid
from vst.plumbing.reachable import walk_history
from vst.policy import DEFAULT_POLICY, Policy
from vst.porcelain.volume import copy_meta
from vst.store import Store


@dataclass(frozen=True, slots=True)
class Copied:
    pack: str
    volume: str
    size: int
    policy: str


@dataclass(frozen=True, slots=True)
class Short:
    """A pack left with fewer copies on a policy's volumes than it asks for."""

    pack: str
    policy: str
    have: int
    want: int
    reason: str


@dataclass(slots=True)
class ReplicateResult:
    dry_run: bool
    collections: list[str]
    packs: int = 0  # packs considered
    copied: list[Copied] = field(default_factory=list)  # or to copy, with dry_run
    short: list[Short] = field(default_factory=list)
    # Copies the index recorded that the volume's listing did not show (now forgotten).
    vanished: int = 0
    # Objects the walk could not read on any volume (what they name is not known).
    unreadable: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # volume -> why
    # Encrypted collections whose key is not held here: their packs are those the index
    # recorded their commits writing and reusing, not those a walk reaches.
    unwalked: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.short and not self.unreadable


def replicate(store: Store, collections: Iterable[str] = (), *, dry_run: bool = False,
              on_start: Callable[[int], None] = lambda _total: None,
              on_bytes: Callable[[int], None] = lambda _done: None) -> ReplicateResult:
    """Copy packs until each one the ``collections`` reach (every collection when none is
    named, and then also packs no collection reaches, by the default policy) has its
    policies' copies. With ``dry_run`` nothing is copied, forgotten or recorded."""
    from vst.ssh.client import RemoteStore

    if isinstance(store, RemoteStore):  # the server copies between its own volumes
        def progress(what: str, n: int) -> None:
            (on_start if what == "total" else on_bytes)(n)
        said, _ = store.connection.call("replicate", collections=list(collections),
                                        dry_run=dry_run, progress=progress)
        try:
            copied = [Copied(**c) for c in said.pop("copied")]
            short = [Short(**c) for c in said.pop("short")]
            return ReplicateResult(**said, copied=copied, short=short)
        except (AttributeError, KeyError, TypeError):
            raise ProtocolError(f"'{store.path}' sent a malformed replicate result") from None
    wanted = list(collections)
    for name in wanted:
        store.read_ref(name)  # NotFound for an unknown collection
    names = wanted or store.collection_names()
    odb = store.odb
    index = odb.index
    result = ReplicateResult(dry_run, names, unavailable=dict(store.unavailable))
    needs: dict[Oid, list[Policy]] = {}
    for name in names:
        head = store.read_ref(name)
        if head is not None and not _can_read(store, name):
            # No key here (the NAS's own account, a server): the index's record of the
            # packs its commits wrote and reused stands in for the walk.
            packs = {row[0] for row in index.owned(name)}
            result.unwalked.append(name)
        else:
            reached, unreadable = walk_history(store, [head] if head is not None else [])
            result.unreadable.extend(oid.hex for oid in unreadable)
            packs = index.packs_of(reached)
            if not dry_run and not unreadable:  # a partial walk would under-record
                index.set_owned(name, packs)
        policy = store.policy_of(name)
        for pack in packs:
            needs.setdefault(pack, []).append(policy)
    if not wanted:
        default = store.policies()[DEFAULT_POLICY]
        for row in index.packs():
            needs.setdefault(row.pack, [default])
    result.packs = len(needs)
    volumes = {ref.name: ref for ref in store.volumes()}
    held = index.pack_copies(needs)
    result.vanished = _check_listings(store, volumes.values(), held, dry_run)

    plan: list[tuple[Oid, VolumeRef, Policy]] = []
    sizes = {row.pack: row.size for row in index.packs()}
    ids_of = {name: store.policy_volume_ids(policy)
              for name, policy in store.policies().items()}
    for pack in sorted(needs, key=lambda p: p.hex):
        copies = set(held.get(pack, ()))
        for policy in sorted(needs[pack], key=lambda p: (-p.copies, p.name)):
            have = len(copies & ids_of[policy.name])
            for name in policy.volumes:
                if have >= policy.copies:
                    break
                target = volumes.get(name)
                if target is None or target.volume_id in copies:
                    continue
                plan.append((pack, target, policy))
                copies.add(target.volume_id)
                have += 1
            if have < policy.copies:
                out = [n for n in policy.volumes if n not in volumes]
                result.short.append(Short(
                    pack.hex, policy.name, have, policy.copies,
                    "volumes out: " + ", ".join(f"'{n}'" for n in out) if out
                    else "the policy has too few volumes"))
    on_start(sum(sizes.get(pack, 0) for pack, _, _ in plan))
    for pack, target, policy in plan:
        size = sizes.get(pack, 0)
        if not dry_run:
            try:
                size = odb.copy_pack(pack, target)
            except VstError as exc:
                have = len(index.pack_copies([pack]).get(pack, set()) & ids_of[policy.name])
                result.short.append(Short(pack.hex, policy.name, have, policy.copies,
                                          f"copy to '{target.name}' failed: {exc.message}"))
                continue
        result.copied.append(Copied(pack.hex, target.name, size, policy.name))
        on_bytes(size)
    if not dry_run:
        for ref in volumes.values():
            try:
                copy_meta(store, ref.backend)
            except VolumeError as exc:
                store.warn(f"cannot mirror the store's metadata to volume '{ref.name}': "
                           f"{exc.message}")
    return result


def _can_read(store: Store, collection: str) -> bool:
    try:
        store.sealing(collection)
    except WrongKey:
        return False
    return True


def _check_listings(store: Store, volumes: Iterable[VolumeRef], held: dict[Oid, set[str]],
                    dry_run: bool) -> int:
    """Forget the copies the index records on an available volume that its listing does
    not show (``held`` is corrected in place); returns how many. A volume that cannot be
    listed is left as the index says."""
    gone: list[tuple[Oid, str]] = []
    for ref in volumes:
        try:
            listed = set(ref.backend.list("packs/"))
        except VolumeError as exc:
            store.warn(f"cannot list volume '{ref.name}': {exc.message}")
            continue
        for pack, copies in held.items():
            if ref.volume_id in copies and pack_name(pack) not in listed:
                copies.discard(ref.volume_id)
                gone.append((pack, ref.volume_id))
    if gone and not dry_run:
        store.odb.index.forget_copies(gone)
    return len(gone)
