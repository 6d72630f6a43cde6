"""``vst fsck``: is everything every collection reaches present and intact?

Connectivity (default): from every head and reflog entry, read every commit, tree and chunk
list (each read is verified) and check that every blob is indexed. ``full`` also reads
every pack on every volume: its bytes against its name, and every record against its id.
Problems are reported git-style, one per line; the function never stops at the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vst.errors import ObjectMissing, VstError, WrongKey
from vst.objects.chunks import ChunkList
from vst.objects.commit import Commit
from vst.objects.oid import Oid
from vst.objects.tree import Tree
from vst.objects.types import ObjectType
from vst.plumbing.verify_pack import verify_pack_bytes
from vst.store import Store

BLOB_BATCH = 4096  # blob ids looked up at once


@dataclass(slots=True)
class FsckResult:
    problems: list[str] = field(default_factory=list)
    objects_checked: int = 0
    packs_checked: int = 0
    # Collections whose history could not be walked: no key you hold opens their keyring
    # (their packs are still checked, without keys, by --full). Not problems.
    unchecked: dict[str, str] = field(default_factory=dict)


def fsck(store: Store, *, full: bool = False,
         on_progress: Callable[[int], None] | None = None) -> FsckResult:
    result = FsckResult()
    roots: dict[Oid, str] = {}
    for name in store.collection_names():
        try:
            head = store.read_ref(name)
            log = store.reflog(name)
        except VstError as exc:
            result.problems.append(f"bad ref {name}: {exc}")
            continue
        if head is not None:
            roots[head] = name
        for entry in log:
            roots.setdefault(entry.new, f"{name} (reflog)")
    _connectivity(store, roots, result, on_progress)
    if full:
        _packs(store, result)
    return result


def _connectivity(store: Store, roots: dict[Oid, str], result: FsckResult,
                  on_progress: Callable[[int], None] | None) -> None:
    odb = store.odb
    seen: set[Oid] = set()
    stack: list[tuple[Oid, ObjectType, str]] = [
        (oid, ObjectType.COMMIT, f"ref {name}") for oid, name in roots.items()]
    # Blobs are only looked up, many at a time: one question per blob would be a round
    # trip per blob to a store over SSH.
    blobs: dict[Oid, str] = {}

    def check_blobs() -> None:
        present = odb.has_many(blobs)
        result.problems.extend(f"missing blob {oid} (from {referrer})"
                               for oid, referrer in blobs.items() if oid not in present)
        blobs.clear()

    while stack:
        oid, kind, referrer = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        result.objects_checked += 1
        if on_progress:
            on_progress(result.objects_checked)
        if kind == ObjectType.BLOB:
            blobs[oid] = referrer
            if len(blobs) >= BLOB_BATCH:
                check_blobs()
            continue
        try:
            content = odb.get_typed(oid, kind)
        except WrongKey as exc:
            result.unchecked.setdefault(referrer.removeprefix("ref "), exc.message)
            continue
        except ObjectMissing:
            result.problems.append(f"missing {kind.label} {oid} (from {referrer})")
            continue
        except VstError as exc:
            result.problems.append(f"bad {kind.label} {oid}: {exc}")
            continue
        here = f"{kind.label} {oid.short()}"
        try:
            if kind == ObjectType.COMMIT:
                commit = Commit.decode(content, oid)
                stack.append((commit.tree, ObjectType.TREE, here))
                stack.extend((p, ObjectType.COMMIT, here) for p in commit.parents)
            elif kind == ObjectType.TREE:
                stack.extend((e.oid, e.kind, here) for e in Tree.decode(content, oid).entries)
            elif kind == ObjectType.CHUNKS:
                stack.extend((c.oid, ObjectType.BLOB, here)
                             for c in ChunkList.decode(content, oid).chunks)
        except VstError as exc:
            result.problems.append(f"bad {kind.label} {oid}: {exc}")
    check_blobs()


def _packs(store: Store, result: FsckResult) -> None:
    odb = store.odb
    for row in odb.index.packs():
        for volume in store.volumes():
            if volume.volume_id not in row.volumes:
                continue
            where = f"pack {row.pack} on volume '{volume.name}'"
            result.packs_checked += 1
            try:
                data = odb.load_pack(volume, row.pack)
            except VstError as exc:
                result.problems.append(f"missing {where}: {exc}")
                continue
            report = verify_pack_bytes(data, row.pack, odb.sealing_or_none, where)
            result.problems.extend(report.problems)
