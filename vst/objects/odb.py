"""The object database: objects in packs on the store's volumes, found through the index.

Writes go through an ``ObjectWriter``: records stream into a spool file as they come; a
full pack is handed to a background thread that makes it durable on every target volume
and only then records it in the index (packs first, index second; the caller moves refs
last). Reads re-verify every object against its id and fall back to another volume's copy.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from vst.errors import (
    CorruptObject,
    NotFound,
    ObjectMissing,
    UnsupportedFormat,
    UsageError,
    VolumeError,
    VstError,
    WrongKey,
)
from vst.fsio import DEFAULT_FS, FileSystem
from vst.objects.ids import PLAIN_IDS, IdScheme
from vst.objects.index import Located, Location, ObjectIndex
from vst.objects.oid import Oid, is_prefix
from vst.objects.pack import PackIndex, PackStream, pack_id
from vst.objects.seal import (
    NO_KEYRING,
    PLAIN,
    Sealing,
    UnexpectedSize,
    seal,
    unseal,
    verify_record,
)
from vst.objects.types import ObjectType
from vst.remotes.volume import Volume

if TYPE_CHECKING:  # the codecs are imported where used: `cat-file -t` starts faster
    from vst.objects.chunks import ChunkList
    from vst.objects.commit import Commit
    from vst.objects.tree import Tree


class VolumeRef(NamedTuple):
    """A volume as the store knows it: its name in the config, its id, its backend."""

    name: str
    volume_id: str
    backend: Volume


class Placement:
    """Where a writer puts new packs (a replication policy as it stands now): the policy's
    volumes that are up, in order of preference; how many copies each pack needs; the ids
    of all the policy's volumes (a copy on one that is down still counts: it is there,
    only out of reach); and the policy's volumes that are down, with why."""

    def __init__(self, policy: str, volumes: list[VolumeRef], copies: int,
                 policy_ids: frozenset[str], unavailable: dict[str, str]) -> None:
        self.policy = policy
        self.volumes = list(volumes)
        self.copies = copies
        self.policy_ids = policy_ids
        self.unavailable = dict(unavailable)

    def mark_down(self, volume: VolumeRef, why: str) -> None:
        """A write to ``volume`` failed: no further packs are sent there by this writer."""
        self.volumes = [v for v in self.volumes if v.volume_id != volume.volume_id]
        self.unavailable[volume.name] = why


def _no_keys(keyring: bytes) -> Sealing:
    raise WrongKey(f"objects of keyring {keyring.hex()} are encrypted, and no key for it "
                   "was given")


_T = TypeVar("_T")

INDEX_BATCH = 8  # packs indexed per transaction
IN_FLIGHT = 2  # packs being made durable at once by a writer
SPAN_GAP = 256 * 1024  # records this close in a pack are read together by read_many...
SPAN_MAX = 8 * 1024 * 1024  # ...up to this much at once
LOOKUP_BATCH = 512  # ids looked up in the index at once by read_sealed_many


def _sorted_locations(locations: list[Location | None]) -> list[Located]:
    """The known ``locations`` in pack and offset order, each with its position."""
    return sorted((location.pack.raw, location.offset, location.length, number,
                   location.keyring)
                  for number, location in enumerate(locations) if location is not None)


def _runs(located: list[Located]) -> Iterator[tuple[int, int, int, int]]:
    """Runs of nearby records, read together: (start, stop) in ``located``, and the bytes
    (first, end) of the pack they span."""
    start = 0
    while start < len(located):
        pack_raw, first, length = located[start][:3]
        end, stop = first + length, start + 1
        while stop < len(located) and located[stop][0] == pack_raw \
                and located[stop][1] <= end + SPAN_GAP \
                and located[stop][1] + located[stop][2] - first <= SPAN_MAX:
            end = max(end, located[stop][1] + located[stop][2])
            stop += 1
        yield start, stop, first, end
        start = stop


def pack_name(pack: Oid) -> str:
    hex_id = pack.hex
    return f"packs/{hex_id[:2]}/{hex_id}"


class ObjectDatabase:
    def __init__(self, volumes: list[VolumeRef], index: ObjectIndex, ids: IdScheme,
                 pack_size: int = 16 * 1024 * 1024, compression_level: int = 3, *,
                 spool_dir: str, fs: FileSystem = DEFAULT_FS,
                 placement: Placement | None = None,
                 warn: Callable[[str], None] | None = None,
                 sealings: Callable[[bytes], Sealing] | None = None) -> None:
        self.volumes = volumes
        # Reads try local disks before remote stores (stable: otherwise the store's order).
        self._read_order = sorted(volumes, key=lambda v: v.backend.remote)
        # Without a policy (tests, helper processes): a copy on every volume.
        self.placement = placement or Placement(
            "default", volumes, len(volumes), frozenset(v.volume_id for v in volumes), {})
        self.warn = warn
        self._reported: set[tuple[Oid, str]] = set()  # (pack, volume) fallbacks warned about
        self.spool_dir = spool_dir
        self.fs = fs
        self.index = index
        self.ids = ids  # of unencrypted objects
        # The sealing of an encrypted keyring, by its id (WrongKey when no key opens it).
        self._sealings = sealings or _no_keys
        self.pack_size = pack_size
        self.compression_level = compression_level
        # Writers fill packs in spool files that become the packs on a local volume (a
        # link); a database that sends them elsewhere may keep them in memory instead.
        self.spools_in_memory = False

    # -- reading ----------------------------------------------------------------------------

    def has(self, oid: Oid) -> bool:
        return self.index.has(oid)

    def has_many(self, oids: Iterable[Oid]) -> set[Oid]:
        return self.index.has_many(oids)

    def locate(self, oid: Oid) -> Location:
        location = self.index.lookup(oid)
        if location is None:
            raise ObjectMissing(f"object {oid} not found")
        return location

    def packs_holding(self, oids: Iterable[Oid]) -> set[Oid]:
        """The packs the index says hold ``oids`` (ObjectMissing naming one it lacks)."""
        return {self.locate(oid).pack for oid in oids}

    def sealing(self, keyring: bytes | None) -> Sealing:
        """How the objects of ``keyring`` (a pack's keyring id; None: unencrypted) are named
        and sealed."""
        if keyring is None or keyring == NO_KEYRING:
            return PLAIN if self.ids is PLAIN_IDS else Sealing(NO_KEYRING, self.ids, None)
        return self._sealings(keyring)

    def sealing_or_none(self, keyring: bytes | None) -> Sealing | None:
        """``sealing``, or None when the keyring cannot be opened here (no key): for
        checks that then look at what needs no key."""
        try:
            return self.sealing(keyring)
        except WrongKey:
            return None

    def copies(self, pack: Oid) -> list[VolumeRef]:
        """The available volumes holding ``pack``, in the order reads try them."""
        held = set(self.index.pack_volumes(pack))
        return [v for v in self._read_order if v.volume_id in held]

    def _read_record(self, oid: Oid, failed: tuple[VolumeRef, VstError] | None = None
                     ) -> tuple[ObjectType, bytes]:
        """Read and verify ``oid`` from the first copy that serves it, naming the copies
        that failed when one does; ``failed`` is a copy the caller already found bad."""
        def opened(record: bytes, location: Location, where: str) -> tuple[ObjectType, bytes]:
            return unseal(record, oid, self.sealing(location.keyring), where)
        return self._read_checked(oid, opened, failed)

    def read_sealed(self, oid: Oid, failed: tuple[VolumeRef, VstError] | None = None
                    ) -> tuple[bytes, bytes | None]:
        """The record of ``oid`` as stored, and its pack's keyring id, from the first copy
        that passes what can be checked here: everything for an unencrypted record or one
        whose key is open, the framing for the others (what a server without keys sends,
        for the client to open and verify)."""
        def checked(record: bytes, location: Location, where: str) -> tuple[bytes, bytes | None]:
            verify_record(record, oid, self.sealing_or_none(location.keyring), where)
            return record, location.keyring
        return self._read_checked(oid, checked, failed)

    def _read_checked(self, oid: Oid, check: Callable[[bytes, Location, str], _T],
                      failed: tuple[VolumeRef, VstError] | None) -> _T:
        location = self.locate(oid)
        failures: list[VstError] = [failed[1]] if failed else []
        failed_on: list[str] = [failed[0].name] if failed else []
        for volume in self.copies(location.pack):
            if failed is not None and volume.volume_id == failed[0].volume_id:
                continue
            where = f"pack {location.pack} on volume '{volume.name}'"
            try:
                record = volume.backend.load(pack_name(location.pack), location.offset,
                                             location.length)
                if len(record) != location.length:
                    raise CorruptObject(f"object {oid} in {where}: record truncated")
                found = check(record, location, where)
            except (CorruptObject, UnsupportedFormat, NotFound, VolumeError) as exc:
                failures.append(exc)
                failed_on.append(volume.name)
                continue
            if failures:
                self._report_fallback(location.pack, failed_on, failures, volume.name)
            return found
        if not failures:
            raise ObjectMissing(f"object {oid}: pack {location.pack} is on no volume that is "
                                "available now", hint="see 'vst volume list'")
        if all(isinstance(f, NotFound) for f in failures):
            raise ObjectMissing(f"object {oid}: pack {location.pack} missing from every volume",
                                hint="run 'vst fsck --full'")
        first = next(f for f in failures if not isinstance(f, NotFound))
        raise type(first)(first.message + ("" if len(failures) == 1 else
                                           f" (and {len(failures) - 1} other copies failed)"))

    def _report_fallback(self, pack: Oid, failed_on: list[str], failures: list[VstError],
                         served_by: str) -> None:
        """A copy failed and another served the read: say which (object, pack, volume),
        once per pack and volume, so that a restore from a damaged disk names the damage
        without repeating it for every object."""
        if self.warn is None:
            return
        for volume, failure in zip(failed_on, failures, strict=True):
            if (pack, volume) not in self._reported:
                self._reported.add((pack, volume))
                self.warn(f"{failure.message}; read from volume '{served_by}' instead "
                          "(run 'vst repair')")

    def get(self, oid: Oid) -> tuple[ObjectType, bytes]:
        """The object's type and content, verified against ``oid``."""
        return self._read_record(oid)

    def locate_ahead(self, oids: list[Oid], packs: dict[Oid, VolumeRef | None]
                     ) -> list[Located]:
        """Where ``oids`` are (the index's answers, for ``read_many``), and a hint to the
        volumes to start reading each run of nearby records: a caller that hands the reads
        to workers a little later finds them in the page cache instead of waiting on the
        disk in each worker."""
        located = self.index.locate_many(oids)
        for start, _, first, end in _runs(located):
            pack = Oid(located[start][0])
            volume = self._volume_of(pack, packs)
            if volume is not None:
                volume.backend.will_load(pack_name(pack), first, end - first)
        return located

    def _volume_of(self, pack: Oid, packs: dict[Oid, VolumeRef | None]) -> VolumeRef | None:
        if pack not in packs:
            held_by = self.index.pack_volumes(pack)
            packs[pack] = next((v for v in self._read_order if v.volume_id in held_by), None)
        return packs[pack]

    def read_many(self, wanted: list[tuple[Oid, int]], packs: dict[Oid, VolumeRef | None],
                  located: list[Located] | None = None
                  ) -> list[tuple[ObjectType, bytes] | None]:
        """Objects (id, expected size) read and verified as ``get`` does, but with one read
        per run of nearby records in a pack instead of an open and a read per object (half
        the cost of a small file's read). None where the caller should ask ``get``, which
        tries the other copies and reports what is wrong; so is an object of another size
        than expected, before it is decompressed: what a job holds stays what its sizes say
        (a record may claim up to 256 MiB). ``packs`` caches which volume holds each pack;
        ``located``: the index's answers for ``wanted`` (``locate_ahead``), if known."""
        oids = [oid for oid, _ in wanted]
        found: list[tuple[ObjectType, bytes] | None] = [None] * len(oids)
        for volume, keyring, records in self._spans(oids, packs, located):
            sealing = self.sealing(keyring)
            for number, record, where, problem in records:
                try:
                    if problem is not None:
                        raise problem
                    read = unseal(record, oids[number], sealing, where,
                                  max_size=wanted[number][1])
                    if len(read[1]) == wanted[number][1]:
                        found[number] = read
                except UnexpectedSize:
                    pass  # not what the caller expects: its get() says what it is
                except WrongKey:
                    raise
                except VstError as exc:
                    # Another copy may serve it, and this one is named when it does; if
                    # none does, the caller's get() reports it.
                    try:
                        found[number] = self._read_record(oids[number], (volume, exc))
                    except VstError:
                        pass
        return found

    def read_sealed_many(self, oids: list[Oid], budget: int
                         ) -> list[tuple[bytes, bytes | None] | None]:
        """``read_sealed`` for many objects, with one read per run of nearby records, for
        as many of ``oids`` (a prefix of them) as fit in ``budget`` bytes (at least one).
        None for an object that is not in the store; an object that no copy serves
        raises."""
        found: list[tuple[bytes, bytes | None] | None] = []
        locations: list[Location | None] = []
        total = 0
        for start in range(0, len(oids), LOOKUP_BATCH):  # no more lookups than the budget
            for location in self.index.lookup_many(oids[start:start + LOOKUP_BATCH]):
                if location is not None and found and total + location.length > budget:
                    break
                total += location.length if location is not None else 0
                found.append(None)
                locations.append(location)
            if len(found) < min(len(oids), start + LOOKUP_BATCH):
                break
        taken = oids[:len(found)]
        packs: dict[Oid, VolumeRef | None] = {}
        for volume, keyring, records in self._spans(taken, packs,
                                                    _sorted_locations(locations)):
            sealing = self.sealing_or_none(keyring)
            for number, record, where, problem in records:
                try:
                    if problem is not None:
                        raise problem
                    verify_record(record, taken[number], sealing, where)
                    found[number] = (bytes(record), keyring)
                except VstError as exc:
                    found[number] = self.read_sealed(taken[number], (volume, exc))
        return found

    def _spans(self, oids: list[Oid], packs: dict[Oid, VolumeRef | None],
               located: list[Located] | None = None) -> Iterator[
            tuple[VolumeRef, bytes | None, list[tuple[int, memoryview, str, VstError | None]]]]:
        """The records of ``oids`` that the index knows, read a run of nearby records at a
        time from the first volume holding each pack: (volume, keyring id, [(position in
        ``oids``, record, where, the error reading it or None)]). Records of packs on no
        available volume are left out. ``located``: the index's answers for ``oids``,
        when the caller has them already."""
        if located is None:
            located = self.index.locate_many(oids)
        for start, stop, first, end in _runs(located):
            pack_raw, keyring = located[start][0], located[start][4]
            pack = Oid(pack_raw)
            volume = self._volume_of(pack, packs)
            if volume is not None:
                where = f"pack {pack} on volume '{volume.name}'"
                problem: VstError | None = None
                try:
                    data = memoryview(volume.backend.load(pack_name(pack), first, end - first))
                except VstError as exc:
                    data, problem = memoryview(b""), exc
                records = []
                for _, offset, size, number, _ in located[start:stop]:
                    record = data[offset - first:offset - first + size]
                    error = problem
                    if error is None and len(record) != size:
                        error = CorruptObject(f"object {oids[number]} in {where}: record "
                                              "truncated")
                    records.append((number, record, where, error))
                yield volume, keyring, records

    def get_kind(self, oid: Oid) -> ObjectType:
        """The object's type. Read and verified whole, like ``get``: the type byte of a
        record header is covered by nothing else, and a flipped one would be believed."""
        return self._read_record(oid)[0]

    def get_typed(self, oid: Oid, kind: ObjectType) -> bytes:
        actual, content = self.get(oid)
        if actual != kind:
            raise CorruptObject(f"object {oid} is a {actual.label}, expected a {kind.label}")
        return content

    def read_tree(self, oid: Oid) -> Tree:
        from vst.objects.tree import Tree

        return Tree.decode(self.get_typed(oid, ObjectType.TREE), oid)

    def read_commit(self, oid: Oid) -> Commit:
        from vst.objects.commit import Commit

        return Commit.decode(self.get_typed(oid, ObjectType.COMMIT), oid)

    def read_chunk_list(self, oid: Oid) -> ChunkList:
        from vst.objects.chunks import ChunkList

        return ChunkList.decode(self.get_typed(oid, ObjectType.CHUNKS), oid)

    def resolve_prefix(self, prefix: str) -> Oid:
        if not is_prefix(prefix):
            raise UsageError(f"not an object id or prefix: '{prefix}'")
        found = self.index.resolve_prefix(prefix)
        if not found:
            raise NotFound(f"no object with id starting '{prefix}'")
        if len(found) > 1:
            raise UsageError(f"short object id '{prefix}' is ambiguous",
                             hint="use more hex digits")
        return found[0]

    # -- writing ----------------------------------------------------------------------------

    def writer(self, placement: Placement | None = None, *, owner: str | None = None,
               sealing: Sealing | Callable[[], Sealing] | None = None,
               keep_indexes: bool = False) -> ObjectWriter:
        """A writer putting new packs where ``placement`` says (the database's default
        when None), recording them, and the packs it reuses, as ``owner``'s (a
        collection): what ``vst replicate`` and the under-replicated counts go by. Its
        objects are named and sealed by ``sealing`` (unencrypted when None), in packs of
        that keyring only. A callable is asked on first need (``ObjectWriter.sealing``).
        ``keep_indexes``: keep the index of every pack written, in ``ObjectWriter.written``
        (a rotation relocates objects by them; a commit of a million files need not hold
        a million entries until it ends)."""
        return ObjectWriter(self, placement or self.placement, owner,
                            sealing or self.sealing(None), keep_indexes=keep_indexes)

    def load_pack(self, volume: VolumeRef, pack: Oid) -> bytes:
        return volume.backend.load(pack_name(pack))

    def store_spooled(self, spooled: _Spooled, placement: Placement,
                      copiers: ThreadPoolExecutor | None = None) -> list[str]:
        """Make a spooled pack durable and put it on the placement's first ``copies``
        volumes that take it (at once, through ``copiers`` when given); returns the ids of
        the volumes that hold it. A volume whose write fails is marked down for the rest of
        the writer, and the next one in the policy's order is tried: a pack short of copies
        is a deficit ``vst replicate`` makes up later, a pack on no volume is an error. The
        caller indexes it afterwards (packs first, the index second, refs last)."""
        try:
            self.fs.sync_and_close(spooled.fd)
            name = pack_name(spooled.pack)
            candidates = list(placement.volumes)
            written: list[str] = []
            failures: list[VstError] = []
            linked = False  # one volume at most may adopt the spool file itself (a link):
            # two links would make two "copies" one inode, lost together to one bad sector.
            while len(written) < placement.copies and candidates:
                wave = candidates[:placement.copies - len(written)]
                del candidates[:len(wave)]
                jobs = []
                for volume in wave:
                    take = not linked and volume.backend.adopts_files
                    linked = linked or take
                    store = partial(volume.backend.store_file, name, spooled.path, take=take)
                    jobs.append((volume, copiers.submit(store) if copiers is not None
                                 and len(wave) > 1 else store))
                for volume, job in jobs:
                    try:
                        job.result() if isinstance(job, Future) else job()
                    except VolumeError as exc:
                        placement.mark_down(volume, exc.message)
                        failures.append(exc)
                        continue
                    written.append(volume.volume_id)
            if not written:
                if failures:
                    raise failures[0]
                raise VolumeError(f"no volume of policy '{placement.policy}' is available: "
                                  + "; ".join(f"'{name}': {why}" for name, why
                                              in sorted(placement.unavailable.items())))
            return written
        finally:
            # A temporary name: nothing to make durable about its removal.
            try:
                os.unlink(spooled.path)
            except OSError:
                pass

    def load_verified(self, pack: Oid) -> bytes:
        """The bytes of ``pack`` from the first available copy whose bytes hash to its name
        (never a damaged copy: a source for copies and rewrites); ObjectMissing naming what
        is wrong with each copy when none does."""
        name = pack_name(pack)
        problems = []
        for volume in self.copies(pack):
            try:
                data = volume.backend.load(name)
            except VstError as exc:
                problems.append(f"'{volume.name}': {exc.message}")
                continue
            if pack_id(data) == pack:
                return data
            problems.append(f"'{volume.name}': its copy does not match its name")
        raise ObjectMissing(f"pack {pack}: no verified copy to copy from"
                            + (f" ({'; '.join(problems)})" if problems else
                               " (it is on no available volume)"),
                            hint="run 'vst scrub' and 'vst repair'")

    def copy_pack(self, pack: Oid, target: VolumeRef) -> int:
        """Copy ``pack`` to ``target`` from a copy that verifies (``load_verified``), check
        the new copy's size on the target and record it; returns the bytes copied.
        ObjectMissing when no copy verifies, VolumeError when the target does not take it."""
        name = pack_name(pack)
        data = self.load_verified(pack)
        target.backend.store(name, data)
        if target.backend.size(name) != len(data):
            raise VolumeError(f"pack {pack} on volume '{target.name}': the copy written "
                              "has the wrong size")
        self.index.add_copies([(pack, target.volume_id)])
        return len(data)

    def settle(self, reused: set[Oid], placement: Placement, owner: str | None
               ) -> dict[Oid, int]:
        """A writer's last step: bring the packs holding the ``reused`` objects up to the
        placement (``reconcile``) and record them as ``owner``'s. Returns the reused packs
        still short of copies (the packs written were counted as they were written)."""
        if not reused:
            return {}
        packs = self.index.packs_of(reused)
        short = self.reconcile(packs, placement)
        if owner is not None:
            self.index.add_owner(packs, owner)
        return short

    def reconcile(self, packs: Iterable[Oid], placement: Placement) -> dict[Oid, int]:
        """Give each of ``packs`` the placement's number of copies on its policy's
        volumes, copying from verified copies to the volumes up that lack one (Varasto's
        reconciliation, for objects a commit reuses). Returns the packs still short, with
        the copies each has."""
        short = {}
        for pack, held in self.index.pack_copies(packs).items():
            have = [v for v in held if v in placement.policy_ids]
            for volume in placement.volumes:
                if len(have) >= placement.copies:
                    break
                if volume.volume_id in held:
                    continue
                try:
                    self.copy_pack(pack, volume)
                except ObjectMissing:
                    break  # no good source: no other target does better
                except VolumeError as exc:
                    placement.mark_down(volume, exc.message)
                    continue
                have.append(volume.volume_id)
            if len(have) < placement.copies:
                short[pack] = len(have)
        return short


class _Spooled(NamedTuple):
    """A finished pack in a spool file (or, for a database that keeps them in memory,
    in ``data``; ``fd`` is then -1), on its way to the volumes."""

    pack: Oid
    fd: int
    path: str
    size: int
    pack_index: PackIndex
    data: bytearray | None = None


class ObjectWriter:
    """Writes new objects into packs. Use as a context manager; ``close`` makes everything
    durable and indexed (or raises). Not thread-safe: one thread adds.

    Records go straight into a spool file as they arrive (memory stays flat however large
    the commit); a full pack is handed to a background thread that syncs it and links it
    into place on the volumes while the next one fills. Worker threads may call ``claim``
    and read ``sealing``; everything else is for the adding thread."""

    def __init__(self, odb: ObjectDatabase, placement: Placement, owner: str | None,
                 sealing: Sealing | Callable[[], Sealing], *, keep_indexes: bool = False
                 ) -> None:
        self.odb = odb
        self.placement = placement
        self.owner = owner
        self._sealing = sealing
        self._opening_sealing = threading.Lock()
        # Packs written with fewer copies than the placement asks, and how many they got;
        # after close, also the reused packs that could not be brought up to it.
        self.short: dict[Oid, int] = {}
        self._reused: set[Oid] = set()  # objects asked for and found already stored
        self._pack: PackStream | None = None
        self._spool: tuple[int, str, bytearray | None] | None = None
        self._pending: set[Oid] = set()
        self._claimed: set[Oid] = set()
        self._claiming = threading.Lock()
        self._queue: queue.Queue[_Spooled | None] = queue.Queue()
        self._error: BaseException | None = None
        # Packs being made durable at once, besides the one filling: enough to keep a slow
        # volume (S3) busy while the next pack is built, few enough to bound dirty pages.
        self._slots = threading.BoundedSemaphore(IN_FLIGHT)
        self._lock = threading.Lock()
        self._unindexed: list[tuple[Oid, int, PackIndex, Sequence[str]]] = []
        self._copiers = ThreadPoolExecutor(IN_FLIGHT * max(1, len(placement.volumes)),
                                           thread_name_prefix="vst-pack-copy") \
            if len(placement.volumes) > 1 else None
        self._threads = [threading.Thread(target=self._drain, name=f"vst-pack-writer-{n}",
                                          daemon=True) for n in range(IN_FLIGHT)]
        for thread in self._threads:
            thread.start()
        self._closed = False
        self.objects_written = 0
        self.bytes_written = 0  # sealed (compressed) bytes of new records
        # The packs made durable and indexed, with their indexes if asked to keep them.
        self.written: list[tuple[Oid, PackIndex | None]] = []
        self._keep_indexes = keep_indexes

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def sealing(self) -> Sealing:
        """How this writer names and seals objects. Given as a callable, it is asked on
        first need only: a commit that finds nothing changed never opens the keyring (no
        passphrase asked, no cipher library loaded: 0.1 s and 13 MiB)."""
        sealing = self._sealing
        if not isinstance(sealing, Sealing):
            with self._opening_sealing:  # worker threads may ask at once: open it once
                if not isinstance(self._sealing, Sealing):
                    self._sealing = self._sealing()
                sealing = self._sealing
        assert isinstance(sealing, Sealing)
        return sealing

    def contains(self, oid: Oid) -> bool:
        if oid in self._pending:
            return True
        if self.odb.index.has(oid):
            self._reused.add(oid)
            return True
        return False

    def note_reused(self, oid: Oid) -> None:
        """``oid`` was found already stored by someone else asking the index (a worker
        process): its pack is checked against the placement at close like the others."""
        self._reused.add(oid)

    def pending(self, oid: Oid) -> bool:
        """Added by this writer and not yet durable (not readable through the database)."""
        return oid in self._pending and not self.odb.index.has(oid)

    def claim(self, oid: Oid) -> bool:
        """Whether the caller is the one to seal and add ``oid``: True once per object this
        store lacks, however many threads ask. Thread-safe, so that a worker can hash, look
        up and seal a chunk in one job (one lookup a chunk: for a local index only)."""
        with self._claiming:
            if oid in self._claimed or oid in self._pending:
                return False
            self._claimed.add(oid)
        if self.odb.index.has(oid):
            with self._claiming:
                self._reused.add(oid)
                self._claimed.discard(oid)  # the index answers whoever asks next
            return False
        return True

    def missing(self, oids: Iterable[Oid]) -> set[Oid]:
        wanted = {o for o in oids if o not in self._pending}
        present = self.odb.index.has_many(wanted)
        self._reused |= present
        return wanted - present

    def put(self, kind: ObjectType, content: bytes | memoryview) -> Oid:
        """Store one object (hashing and sealing on this thread); returns its id."""
        oid = self.sealing.ids.compute(kind, content)
        if not self.contains(oid):
            self.add_record(oid, seal(oid, kind, content, self.odb.compression_level,
                                      self.sealing.cipher))
        return oid

    def add_record(self, oid: Oid, record: bytes | bytearray) -> None:
        """Append an already sealed record (sealed by a worker thread, for instance)."""
        self._raise_if_failed()
        if oid in self._pending:
            return
        if self._pack is None:
            if self.odb.spools_in_memory:
                buffer = bytearray()
                self._spool = (-1, "", buffer)
                self._pack = PackStream(buffer.extend, self.sealing.keyring_id)
            else:
                fd, path = self.odb.fs.open_spool(self.odb.spool_dir)
                self._spool = (fd, path, None)
                self._pack = PackStream(partial(self.odb.fs.write_all, fd),
                                        self.sealing.keyring_id)
        self._pack.add(oid, record)
        self._pending.add(oid)
        if oid in self._claimed:  # only claimed objects in flight stay there: _pending says it
            with self._claiming:
                self._claimed.discard(oid)
        self.objects_written += 1
        self.bytes_written += len(record)
        if self._pack.size >= self.odb.pack_size:
            self.flush()

    def flush(self) -> None:
        if self._pack is None or self._spool is None:
            return
        pack, index = self._pack.finish()
        fd, path, data = self._spool
        spooled = _Spooled(pack, fd, path, self._pack.size, index, data)
        self._pack = self._spool = None
        self._hand_over(spooled)

    def _hand_over(self, item: _Spooled) -> None:
        # Waits while IN_FLIGHT packs are being written: the disk (or the network) stays
        # busy, and dirty data in the page cache stays bounded.
        self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            self._discard(item.fd, item.path)
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._stop()
        self._raise_if_failed()
        reused, self._reused = self._reused, set()
        self.short.update(self.odb.settle(reused, self.placement, self.owner))

    def abort(self) -> None:
        """Stop without keeping the pack being filled; packs already handed over finish."""
        if not self._closed:
            if self._spool is not None:
                self._discard(*self._spool[:2])
                self._pack = self._spool = None
            self._stop()

    def _discard(self, fd: int, path: str) -> None:
        if fd < 0:
            return  # a pack in memory
        try:
            os.close(fd)
        except OSError:
            pass
        try:
            os.unlink(path)
        except OSError:
            pass

    def _stop(self) -> None:
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        if self._copiers is not None:
            self._copiers.shutdown()
        # What the writer threads made durable and left unindexed (fewer than a batch).
        if self._unindexed and self._error is None:
            try:
                self.odb.index.add_packs(self._unindexed, owner=self.owner)
            except BaseException as exc:
                self._error = exc
            self._unindexed = []

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        # Durable packs wait in _unindexed to be indexed together: one index transaction
        # (and log fsync) per INDEX_BATCH packs, and always before close() returns.
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if self._error is None:
                    volumes = self.odb.store_spooled(item, self.placement, self._copiers)
                    batch = []
                    with self._lock:
                        if len(volumes) < self.placement.copies:
                            self.short[item.pack] = len(volumes)
                        self._unindexed.append((item.pack, item.size, item.pack_index,
                                                volumes))
                        self.written.append(
                            (item.pack, item.pack_index if self._keep_indexes else None))
                        if len(self._unindexed) >= INDEX_BATCH:
                            batch, self._unindexed = self._unindexed, []
                    if batch:
                        self.odb.index.add_packs(batch, owner=self.owner)
                else:
                    self._discard(item.fd, item.path)
            except BaseException as exc:  # re-raised on the adding thread
                self._error = exc
            finally:
                self._slots.release()
