"""``vst repair``: rewrite the bad or missing pack copies that a scrub finds, each from a
copy on another volume that verifies.

Redundancy is only fault tolerance when a damaged copy can never become the source of a
repair (RELIABILITY S4: corruption must not spread), so:

- the source is read once into memory and exactly those bytes are verified, with scrub's
  own check (BLAKE3 against the name, header, footer, index, every record against its
  id), right before they are written: no earlier result is trusted;
- only the damaged copy's volume is written (a bad copy is overwritten, since its name is
  right and its bytes are wrong; a missing one is created), and the new copy is read back
  from the volume and verified before the index records it;
- a pack with no verified copy anywhere is reported, with the objects the index says it
  held and every (collection, commit, path) of every collection's history that they
  cost, and nothing is written for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from vst.errors import NotFound, VolumeIOError, VstError
from vst.objects.odb import VolumeRef, pack_name
from vst.objects.oid import Oid
from vst.objects.pack import parse_pack
from vst.plumbing.affected import AffectedPath, affected_paths
from vst.porcelain.scrub import BAD, MISSING, ScrubProblem, check_pack, scrub
from vst.remotes.volume import Volume, VolumeInfo
from vst.store import Store


@dataclass(frozen=True, slots=True)
class Repaired:
    volume: str  # the volume whose copy was rewritten
    pack: str
    kind: str  # BAD (overwritten) or MISSING (written)
    source: str  # the volume the verified copy was read from
    size: int


@dataclass(frozen=True, slots=True)
class Unrepairable:
    pack: str
    volumes: tuple[str, ...]  # the volumes whose copy is bad or missing
    tried: tuple[str, ...]  # the volumes a source copy was looked for on
    reason: str  # why each of them could not serve, or why the write failed
    objects: tuple[str, ...]  # object ids the index places in the pack
    collections: tuple[str, ...]  # collections whose history reaches one of those objects
    # Every (collection, commit, path) one of those objects makes unreadable, in the order
    # of affected_paths; each record's ``lost`` holds only this pack's objects.
    affected: tuple[AffectedPath, ...] = ()


@dataclass(slots=True)
class RepairResult:
    dry_run: bool
    repaired: list[Repaired] = field(default_factory=list)  # or would be, with dry_run
    unrepairable: list[Unrepairable] = field(default_factory=list)
    problems: list[ScrubProblem] = field(default_factory=list)  # what the scrub found

    @property
    def complete(self) -> bool:
        return not self.unrepairable


def repair(store: Store, *, volume: str | None = None, dry_run: bool = False) -> RepairResult:
    """Scrub ``volume`` (every volume when None) and rewrite each bad or missing pack copy
    there from a verified copy on another volume. With ``dry_run`` the sources are still
    read and verified, so the result says what would be repaired, but nothing is written."""
    found = scrub(store, volume=volume)
    result = RepairResult(dry_run, problems=list(found.problems))
    # A bad pack the index does not know is left alone, as unknown packs are: nothing
    # says it should exist ('vst index rebuild' decides).
    indexed = {row.pack.hex for row in store.odb.index.packs()}
    damaged: dict[str, dict[str, str]] = {}  # pack hex -> volume name -> BAD or MISSING
    for problem in found.problems:
        if problem.kind in (BAD, MISSING) and problem.pack in indexed:
            damaged.setdefault(problem.pack, {})[problem.volume] = problem.kind
    volumes = {ref.name: ref for ref in store.volumes()}
    lost: dict[str, tuple[tuple[str, ...], list[str], list[str]]] = {}
    for pack_hex, copies in sorted(damaged.items()):
        for name, kind in sorted(copies.items()):
            tried, failures, done = _repair_copy(store, volumes[name], kind, pack_hex,
                                                 [ref for ref in volumes.values()
                                                  if ref.name != name], dry_run)
            if done is not None:
                result.repaired.append(done)
                continue
            targets, all_tried, reasons = lost.get(pack_hex, ((), [], []))
            lost[pack_hex] = ((*targets, name), all_tried + [v for v in tried
                                                             if v not in all_tried],
                              reasons + [r for r in failures if r not in reasons])
    if lost:
        objects = _objects_of(store, set(lost))
        affected = _affected_by_pack(store, objects)
        for pack_hex, (targets, tried, reasons) in sorted(lost.items()):
            held = objects.get(pack_hex, set())
            records = tuple(affected.get(pack_hex, ()))
            result.unrepairable.append(Unrepairable(
                pack_hex, targets, tuple(tried), "; ".join(reasons) or "no other volume",
                tuple(sorted(oid.hex for oid in held)),
                tuple(sorted({record.collection for record in records})), records))
    return result


def _affected_by_pack(store: Store, objects: dict[str, set[Oid]]
                      ) -> dict[str, list[AffectedPath]]:
    """The records of affected_paths for the lost ``objects`` (pack hex -> ids), each
    filed under every pack one of its lost objects is in (a large file may lose chunks
    in several)."""
    pack_of = {oid: pack_hex for pack_hex, oids in objects.items() for oid in oids}
    roots = {c.name: c.head for c in store.collections() if c.head is not None}
    by_pack: dict[str, list[AffectedPath]] = {}
    for record in affected_paths(store.odb, roots, set(pack_of)):
        packs = dict.fromkeys(pack_of[oid] for oid in record.lost)
        for pack_hex in packs:
            own = record if len(packs) == 1 else replace(
                record, lost=tuple(oid for oid in record.lost if pack_of[oid] == pack_hex))
            by_pack.setdefault(pack_hex, []).append(own)
    return by_pack


def _repair_copy(store: Store, target: VolumeRef, kind: str, pack_hex: str,
                 sources: list[VolumeRef], dry_run: bool
                 ) -> tuple[list[str], list[str], Repaired | None]:
    """Rewrite one copy; returns the volumes tried, what went wrong with each, and the
    repair (None when no verified source was found or the new copy did not verify)."""
    name = pack_name(Oid.from_hex(pack_hex))
    sealings = store.odb.sealing_or_none
    tried: list[str] = []
    failures: list[str] = []
    for source in sources:
        tried.append(source.name)
        where = f"pack {pack_hex} on volume '{source.name}'"
        try:
            data = source.backend.load(name)
        except NotFound:
            failures.append(f"{where}: missing")
            continue
        except VstError as exc:
            failures.append(f"{where}: cannot read: {exc}")
            continue
        # Verify exactly the bytes that would be written, not an earlier read of them.
        _size, wrong = check_pack(_InMemory(name, data), name, pack_hex, where, sealings, None)
        if wrong:
            failures.append(wrong[0])
            continue
        repaired = Repaired(target.name, pack_hex, kind, source.name, len(data))
        if dry_run:
            return tried, failures, repaired
        problem = _write_verified(store, target, name, pack_hex, data, overwrite=kind == BAD)
        if problem is not None:
            failures.append(problem)
            return tried, failures, None
        return tried, failures, repaired
    return tried, failures, None


def _write_verified(store: Store, target: VolumeRef, name: str, pack_hex: str, data: bytes,
                    *, overwrite: bool) -> str | None:
    """Store ``data`` on ``target``, read it back, verify it and index the copy; returns
    what went wrong, or None."""
    where = f"pack {pack_hex} on volume '{target.name}'"
    try:
        target.backend.store(name, data, overwrite=overwrite)
    except VstError as exc:
        return f"{where}: cannot write: {exc}"
    _size, wrong = check_pack(target.backend, name, pack_hex, where, store.odb.sealing_or_none,
                              None)
    if wrong:
        return f"{where}: the rewritten copy does not verify: {wrong[0]}"
    pack = Oid.from_hex(pack_hex)
    store.odb.index.add_packs([(pack, len(data), parse_pack(data, pack_hex),
                                [target.volume_id])])
    return None


class _InMemory(Volume):
    """One pack's bytes, held in memory, as a read-only volume: what scrub's check reads."""

    def __init__(self, name: str, data: bytes) -> None:
        self.url = "memory:"
        self._name = name
        self._data = data

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        if name != self._name:
            raise NotFound(f"no '{name}'")
        end = len(self._data) if size is None else offset + size
        return self._data[offset:end]

    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        raise VolumeIOError("read-only")

    def size(self, name: str) -> int:
        if name != self._name:
            raise NotFound(f"no '{name}'")
        return len(self._data)

    def delete(self, name: str) -> None:
        raise VolumeIOError("read-only")

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([self._name] if self._name.startswith(prefix) else [])

    def info(self) -> VolumeInfo:
        raise VolumeIOError("read-only")


def _objects_of(store: Store, packs: set[str]) -> dict[str, set[Oid]]:
    """The objects the index places in each of ``packs``."""
    held: dict[str, set[Oid]] = {}
    for oid, location in store.odb.index.all_objects():
        if location.pack.hex in packs:
            held.setdefault(location.pack.hex, set()).add(oid)
    return held

