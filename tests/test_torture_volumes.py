"""S4 and S18 of RELIABILITY.md on a store of real commits with two local volumes.

S4, one corruption on one volume: each trial damages ONE copy of ONE pack on ONE volume
(bit flip in the header, a record, the index or the footer; a zeroed 4 KiB block; truncation;
garbage appended; garbage in place of the file; another pack's bytes; deletion), then
measures whether scrub names exactly that copy, whether every object of the pack is still
served with its original bytes and type (``odb.get``, ``get_kind`` and restore's batched
``read_many``; every few trials, full restores of every commit of the collections the pack
serves), whether repair rewrites it so that a second scrub is clean, and whether anything
else changed (spread: the healthy copy and every other copy must keep their bytes, inode
and mtime). The repair is what undoes each injection, so one store serves every trial.

S18, scrub coverage: ``subset=(n, 5)`` for n = 1..5 together check every pack copy of every
volume exactly once, and a full scrub's throughput is reported.

The normal suite runs samples (28 injections, a few MiB); VST_TORTURE=1 runs the full counts
(1,050 injections; S18 on a store of about 300 MiB). Both print their figures.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import pytest

from vst.errors import VstError
from vst.objects.chunking import ChunkParams
from vst.objects.commit import Signature
from vst.objects.odb import pack_name
from vst.objects.oid import Oid
from vst.objects.pack import FOOTER_SIZE, MAGIC
from vst.objects.types import ObjectType
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.reachable import reachable
from vst.plumbing.write_tree import write_tree
from vst.porcelain.repair import repair
from vst.porcelain.restore import restore
from vst.porcelain.scrub import BAD, MISSING, scrub
from vst.porcelain.volume import volume_add
from vst.store import Store

TORTURE = os.environ.get("VST_TORTURE") == "1"
PER_KIND = 150 if TORTURE else 4  # injections of each kind (7 kinds)
FULL_RESTORE_EVERY = 25 if TORTURE else 4  # trials between full restores of whole commits
VERSIONS = 3 if TORTURE else 2  # commits per collection
SCALE = 3 if TORTURE else 1  # files per collection, relative to the sample
S18_MIB = 300 if TORTURE else 4  # data committed for the coverage run
SEED = 20240604
KIB, MIB = 1024, 1024 * 1024
SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)
# Small chunks and packs: large files become chunk lists, and the store has many packs.
CHUNKS = ChunkParams(16 * KIB, 48 * KIB, 256 * KIB)
PACK_SIZE = 96 * KIB
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey"]


# -- the store ----------------------------------------------------------------------------------


def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choices(WORDS, k=rng.randint(3, 14))) + "\n").encode()
    return bytes(out[:size])


def _fill(collection: str, root: Path, rng: random.Random) -> None:
    """The first version of a collection: text, small random files, large chunked ones."""
    root.mkdir(parents=True)
    if collection == "docs":
        for i in range(12 * SCALE):
            sub = root / f"part{i % 3}"
            sub.mkdir(exist_ok=True)
            (sub / f"note{i:03}.txt").write_bytes(_text(rng, rng.randint(50, 40 * KIB)))
        (root / "empty.txt").write_bytes(b"")
        (root / "empty-dir").mkdir()
        (root / "latest").symlink_to("part0/note000.txt")
        (root / "book.txt").write_bytes(_text(rng, 600 * KIB))  # chunked and compressible
    elif collection == "photos":
        for i in range(10 * SCALE):
            (root / f"img{i:03}.raw").write_bytes(rng.randbytes(rng.randint(1, 60 * KIB)))
    else:
        for i in range(2 * SCALE):
            (root / f"clip{i}.bin").write_bytes(rng.randbytes(rng.randint(300 * KIB, 900 * KIB)))


def _mutate(root: Path, rng: random.Random, version: int) -> None:
    """The next version: a few bytes changed inside files (new chunks next to old ones),
    appends, new files and a deletion."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    for path in rng.sample(files, min(3, len(files))):
        data = bytearray(path.read_bytes())
        if data:
            at = rng.randrange(len(data))
            data[at:at + 8] = rng.randbytes(8)
        path.write_bytes(bytes(data) + _text(rng, rng.randint(0, 2 * KIB)))
    (root / f"new{version}.bin").write_bytes(rng.randbytes(rng.randint(1, 200 * KIB)))
    (root / f"new{version}.txt").write_bytes(_text(rng, rng.randint(1, 20 * KIB)))
    if len(files) > 4:
        rng.choice(files[1:]).unlink()


def tree_contents(root: Path) -> dict[str, object]:
    """Relative path -> file bytes, ("link", target) or "dir": what a restore must recreate."""
    found: dict[str, object] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                found[relative] = "dir"
            else:
                found[relative] = path.read_bytes()
    return found


@dataclass
class Built:
    store: Store
    root: Path
    # commit -> (collection, what its tree holds)
    commits: dict[Oid, tuple[str, dict[str, object]]]
    objects: dict[Oid, tuple[ObjectType, bytes]]  # every object, read before any damage
    in_pack: dict[str, list[Oid]]  # pack hex -> the objects the index places there
    reached: dict[str, set[Oid]]  # collection -> every object its history reaches
    volumes: dict[str, Path]  # volume name -> its directory

    def copy(self, volume: str, pack: str) -> Path:
        return self.volumes[volume] / pack_name(Oid.from_hex(pack))


def build(root: Path) -> Built:
    rng = random.Random(SEED)
    store = Store.init(str(root / "store"), pack_size=PACK_SIZE, chunk_params=CHUNKS)
    commits: dict[Oid, tuple[str, dict[str, object]]] = {}
    for collection in ("docs", "photos", "video"):
        store.create_collection(collection)
        parent: Oid | None = None
        for version in range(VERSIONS):
            source = root / "sources" / f"{collection}-{version}"
            if version == 0:
                _fill(collection, source, rng)
            else:
                shutil.copytree(root / "sources" / f"{collection}-{version - 1}", source,
                                symlinks=True)
                _mutate(source, rng, version)
            tree = write_tree(store, str(source), processes=False)
            commit = commit_tree(store, tree, [parent] if parent else [],
                                 f"{collection} v{version}".encode(), author=SIG, committer=SIG)
            store.update_ref(collection, commit, parent, committer=SIG, message="commit")
            commits[commit] = (collection, tree_contents(source))
            parent = commit
    volume_add(store, "second", str(root / "second"))
    odb = store.odb
    objects = {oid: odb.get(oid) for oid, _location in odb.index.all_objects()}
    in_pack: dict[str, list[Oid]] = {}
    for oid, location in odb.index.all_objects():
        in_pack.setdefault(location.pack.hex, []).append(oid)
    reached = {c.name: {oid for oid, _kind in reachable(store, [c.head])}
               for c in store.collections() if c.head is not None}
    volumes = {ref.name: Path(ref.backend.root) for ref in store.volumes()}
    return Built(store, root, commits, objects, in_pack, reached, volumes)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    made = build(tmp_path_factory.mktemp("s4"))
    yield made
    made.store.close()


# -- injections ---------------------------------------------------------------------------------


def _region(data: bytes, rng: random.Random) -> tuple[str, int, int]:
    """A random region of a well-formed pack: (name, start, end)."""
    index_offset = int.from_bytes(data[-FOOTER_SIZE:][:8], "big")
    regions = [("header", 0, len(MAGIC)), ("record", len(MAGIC), index_offset),
               ("index", index_offset, len(data) - FOOTER_SIZE),
               ("footer", len(data) - FOOTER_SIZE, len(data))]
    return rng.choice([r for r in regions if r[2] > r[1]])


def bit_flip(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    region, start, end = _region(data, rng)
    flipped = bytearray(data)
    flipped[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    path.write_bytes(flipped)
    return region


def zeroed_block(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    blocks = [b for b in range(0, len(data), 4096) if any(data[b:b + 4096])]
    start = rng.choice(blocks)  # a block that was not zero already: the bytes change
    path.write_bytes(data[:start] + bytes(len(data[start:start + 4096])) + data[start + 4096:])
    return "aligned" if start + 4096 <= len(data) else "tail"


def truncation(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    path.write_bytes(data[:rng.randrange(len(data))])
    return ""


def garbage_appended(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    path.write_bytes(data + rng.randbytes(rng.randint(1, 8 * KIB)))
    return ""


def garbage_file(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    path.write_bytes(rng.randbytes(rng.randint(1, 2 * len(data))))
    return ""


def swap(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    path.write_bytes(other)
    return ""


def deletion(path: Path, data: bytes, rng: random.Random, other: bytes) -> str:
    path.unlink()
    return ""


INJECTORS: dict[str, Callable[[Path, bytes, random.Random, bytes], str]] = {
    "bit flip": bit_flip, "zeroed 4 KiB block": zeroed_block, "truncation": truncation,
    "garbage appended": garbage_appended, "garbage file": garbage_file, "swap": swap,
    "deletion": deletion}


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Tally:
    injected: int = 0
    detected: int = 0  # scrub named exactly the damaged copy, as BAD (MISSING if deleted)
    served: int = 0  # every object of the pack read back with its original bytes
    repaired: int = 0  # repair rewrote that copy from the other one; the next scrub is clean
    spread: int = 0  # trials where any other copy changed (bytes, inode or mtime)
    false_positives: int = 0  # problems reported that are not the injected one


@dataclass
class Run:
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in INJECTORS})
    failures: list[str] = field(default_factory=list)
    first_read: int = 0  # trials where odb.get tried the damaged copy first
    restore_trials: int = 0
    restored_commits: int = 0
    details: Counter[str] = field(default_factory=Counter)

    def fail(self, trial: int, kind: str, what: str) -> None:
        self.failures.append(f"trial {trial} ({kind}): {what}")


def copies_state(built: Built) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(volume, pack) -> (size, inode, mtime) of every file under each volume's packs/."""
    state = {}
    for volume, root in built.volumes.items():
        for path in (root / "packs").rglob("*"):
            if path.is_file():
                st = path.stat()
                state[volume, path.name] = (st.st_size, st.st_ino, st.st_mtime_ns)
    return state


def wrong_copies(built: Built, skip: tuple[str, str]) -> list[str]:
    """Copies (but ``skip``) whose bytes do not hash to their name."""
    return [f"{volume}:{pack[:12]}" for volume in built.volumes for pack in built.in_pack
            if (volume, pack) != skip and (not built.copy(volume, pack).exists() or
                                           blake3.blake3(built.copy(volume, pack).read_bytes())
                                           .hexdigest() != pack)]


def served_problems(built: Built, pack: str) -> list[str]:
    """What came back wrong when reading every object of ``pack``."""
    odb = built.store.odb
    wrong = []
    for oid in built.in_pack[pack]:
        expected = built.objects[oid]
        try:
            if odb.get(oid) != expected:
                wrong.append(f"get {oid}: other bytes")
            if odb.get_kind(oid) != expected[0]:  # see the regression test at the end
                wrong.append(f"get_kind {oid}: {odb.get_kind(oid).label}")
        except VstError as exc:
            wrong.append(f"get {oid}: {exc}")
    wanted = [(oid, len(built.objects[oid][1])) for oid in built.in_pack[pack]]
    for (oid, _size), got in zip(wanted, odb.read_many(wanted, {}), strict=True):
        if got is not None and got != built.objects[oid]:  # None: the caller asks get()
            wrong.append(f"read_many {oid}: other bytes")
    return wrong


def restore_problems(built: Built, pack: str, run: Run) -> list[str]:
    """Restore every commit of each collection whose history reaches ``pack``."""
    held = set(built.in_pack[pack])
    affected = {name for name, oids in built.reached.items() if oids & held}
    wrong = []
    for commit, (collection, contents) in built.commits.items():
        if collection not in affected:
            continue
        target = built.root / "restored"
        try:
            restore(built.store, commit, str(target), [])
            if tree_contents(target) != contents:
                wrong.append(f"restore of {collection} {commit}: other contents")
        except VstError as exc:
            wrong.append(f"restore of {collection} {commit}: {exc}")
        finally:
            shutil.rmtree(target, ignore_errors=True)
        run.restored_commits += 1
    return wrong


def trial(built: Built, run: Run, number: int, kind: str, volume: str, pack: str,
          rng: random.Random) -> None:
    store, tally = built.store, run.tallies[kind]
    other_volume = next(v for v in built.volumes if v != volume)
    path = built.copy(volume, pack)
    original = path.read_bytes()
    other = built.copy(volume, rng.choice([p for p in built.in_pack if p != pack])).read_bytes()
    before = copies_state(built)
    healthy = built.copy(other_volume, pack)
    detail = INJECTORS[kind](path, original, rng, other)
    run.details[f"{kind}: {detail}" if detail else kind] += 1
    tally.injected += 1
    assert not path.exists() or path.read_bytes() != original
    # odb.get tries the copies in the index's order: is the damaged one read at all?
    ids = {ref.volume_id: ref.name for ref in store.volumes()}
    run.first_read += ids[store.odb.index.pack_volumes(Oid.from_hex(pack))[0]] == volume
    target = (volume, pack, MISSING if kind == "deletion" else BAD)
    try:
        found = scrub(store)
        named = {(p.volume, p.pack, p.kind) for p in found.problems}
        extra = [p.message for p in found.problems if (p.volume, p.pack) != (volume, pack)]
        tally.false_positives += len(extra)
        if named == {target}:
            tally.detected += 1
        else:
            run.fail(number, kind, f"scrub reported {sorted(named)}, expected {target}")

        wrong = served_problems(built, pack)
        if number % FULL_RESTORE_EVERY == 0:
            run.restore_trials += 1
            wrong += restore_problems(built, pack, run)
        if wrong:
            run.fail(number, kind, "; ".join(wrong[:3]))
        else:
            tally.served += 1

        result = repair(store)
        done = [(r.volume, r.pack, r.kind, r.source) for r in result.repaired]
        again = scrub(store)
        if done == [(*target, other_volume)] and result.complete and again.clean \
                and not again.problems and path.read_bytes() == original \
                and set(store.odb.index.pack_volumes(Oid.from_hex(pack))) == \
                {ref.volume_id for ref in store.volumes()}:
            tally.repaired += 1
        else:
            run.fail(number, kind, f"repair did {done}, unrepairable {result.unrepairable}, "
                     f"scrub after it: {[p.message for p in again.problems]}")
    finally:
        after = copies_state(built)
        changed = sorted(key for key in set(before) | set(after)
                         if key != (volume, pack) and before.get(key) != after.get(key))
        changed += wrong_copies(built, (volume, pack))
        if healthy.read_bytes() and blake3.blake3(healthy.read_bytes()).hexdigest() != pack:
            changed.append("the healthy copy")
        if changed:
            tally.spread += 1
            run.fail(number, kind, f"spread to {changed[:5]}")
        if not path.exists() or path.read_bytes() != original:
            path.write_bytes(original)  # a failed repair must not spoil the next trials


def print_table(run: Run, built: Built, seconds: float) -> None:
    sizes = [sum(p.stat().st_size for p in (root / "packs").rglob("*") if p.is_file())
             for root in built.volumes.values()]
    total = Tally()
    lines = [f"{'kind':<20}{'injected':>9}{'detected':>9}{'served':>8}{'repaired':>9}"
             f"{'spread':>7}{'false+':>7}"]
    for kind, tally in [*run.tallies.items(), ("total", total)]:
        if kind != "total":
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        lines.append(f"{kind:<20}{tally.injected:>9}{tally.detected:>9}{tally.served:>8}"
                     f"{tally.repaired:>9}{tally.spread:>7}{tally.false_positives:>7}")
    print(f"\nS4 one corruption on one volume: {total.injected} injections in {seconds:.1f} s; "
          f"{len(built.volumes)} volumes of {len(built.in_pack)} packs "
          f"({sizes[0] / MIB:.1f} MiB each), {len(built.objects)} objects, "
          f"{len(built.commits)} commits in {len(built.reached)} collections")
    print("\n".join(lines))
    print(f"damaged copy read first by odb.get: {run.first_read} of {total.injected}; "
          f"full restores: {run.restored_commits} commits in {run.restore_trials} trials")
    print("injections by detail: " + ", ".join(f"{k} {n}" for k, n in sorted(run.details.items())))


# -- S4 -----------------------------------------------------------------------------------------


def test_s4_one_corruption_on_one_volume(built: Built) -> None:
    store = built.store
    assert len(built.in_pack) >= 20 and set(built.volumes) == {"default", "second"}
    clean = scrub(store)  # false positives on an untouched store
    assert clean.clean and clean.problems == [], [p.message for p in clean.problems]
    assert wrong_copies(built, ("", "")) == []
    rng = random.Random(SEED + 1)
    kinds = [kind for kind in INJECTORS for _ in range(PER_KIND)]
    rng.shuffle(kinds)
    per_kind: Counter[str] = Counter()
    names = sorted(built.volumes)
    packs = sorted(built.in_pack)
    run = Run()
    start = time.perf_counter()
    for number, kind in enumerate(kinds):
        volume = names[per_kind[kind] % len(names)]  # each kind evenly over the volumes
        per_kind[kind] += 1
        trial(built, run, number, kind, volume, rng.choice(packs), rng)
    print_table(run, built, time.perf_counter() - start)
    total = len(kinds)
    assert run.failures == [], "\n".join(run.failures[:20])
    for kind, tally in run.tallies.items():
        assert (tally.injected, tally.detected, tally.served, tally.repaired) == \
            (PER_KIND,) * 4, kind
        assert tally.spread == tally.false_positives == 0, kind
    assert 0 < run.first_read < total and run.restored_commits > 0
    assert scrub(store).clean


# -- S18 ----------------------------------------------------------------------------------------


def test_s18_subsets_cover_every_copy_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    source = tmp_path / "source"
    source.mkdir()
    files = max(2, S18_MIB // 8)
    for i in range(files):  # mostly incompressible, so the volumes hold about S18_MIB
        (source / f"big{i:03}.bin").write_bytes(rng.randbytes(S18_MIB * MIB // files))
    for i in range(50):
        (source / f"small{i:02}.txt").write_bytes(_text(rng, rng.randint(1, 30 * KIB)))
    store = Store.init(str(tmp_path / "store"), pack_size=4 * MIB if TORTURE else 128 * KIB,
                       chunk_params=None if TORTURE else CHUNKS)
    try:
        write_tree(store, str(source), processes=False)
        shutil.rmtree(source)
        volume_add(store, "second", str(tmp_path / "second"))
        copies = {(ref.name, row.pack.hex) for ref in store.volumes()
                  for row in store.odb.index.packs()}
        total_bytes = sum(row.size for row in store.odb.index.packs()) * 2
        assert len(copies) >= 20

        start = time.perf_counter()
        full = scrub(store)
        seconds = time.perf_counter() - start
        assert full.clean and full.problems == []
        assert (full.packs_checked, full.bytes_checked) == (len(copies), total_bytes)

        # A clean store: every part is clean, and together they read every byte once.
        parts = [scrub(store, subset=(n, 5)) for n in range(1, 6)]
        assert all(part.clean and part.problems == [] for part in parts)
        assert sum(part.packs_checked for part in parts) == len(copies)
        assert sum(part.bytes_checked for part in parts) == total_bytes

        # Every copy damaged: each part names exactly the copies it read.
        roots = {ref.name: Path(ref.backend.root) for ref in store.volumes()}
        for volume, pack in copies:
            with open(roots[volume] / pack_name(Oid.from_hex(pack)), "ab") as f:
                f.write(b"!")
        named: Counter[tuple[str, str]] = Counter()
        mismatches = 0
        for n in range(1, 6):
            part = scrub(store, subset=(n, 5))
            found = {(p.volume, p.pack) for p in part.problems if p.kind == BAD}
            mismatches += part.packs_checked != len(found)
            mismatches += sum(1 for _v, pack in found if int(pack[:8], 16) % 5 != n - 1)
            mismatches += sum(1 for p in part.problems if p.kind != BAD)
            named.update(found)
        mismatches += sum(count - 1 for count in named.values()) + len(set(named) - copies)
        coverage = len(set(named) & copies) / len(copies)
        print(f"\nS18 scrub --subset 1/5..5/5: {len(copies)} pack copies on 2 volumes, "
              f"{total_bytes / MIB:.1f} MiB; coverage {100 * coverage:.1f}%, mismatches "
              f"{mismatches}; full scrub {total_bytes / MIB / seconds:.1f} MiB/s "
              f"({seconds:.2f} s)")
        assert coverage == 1.0 and mismatches == 0
    finally:
        store.close()
        for name in ("store", "second"):  # about 600 MiB with VST_TORTURE=1
            shutil.rmtree(tmp_path / name, ignore_errors=True)


# -- regressions --------------------------------------------------------------------------------


def test_get_kind_is_not_fooled_by_one_damaged_copy(tmp_path: Path) -> None:
    """get_kind used to believe the type byte of the copy it read first, which no hash
    covers (one bit flip turns a blob (1) into a tree (3)); since df7c94d it verifies the
    whole record, and S4's served check asks it too."""
    store = Store.init(str(tmp_path / "store"))
    try:
        with store.odb.writer() as writer:
            blob = writer.put(ObjectType.BLOB, b"a file's content\n" * 100)
        volume_add(store, "second", str(tmp_path / "second"))
        odb = store.odb
        location = odb.locate(blob)
        names = {ref.volume_id: ref for ref in store.volumes()}
        first = names[odb.index.pack_volumes(location.pack)[0]]  # the copy read first
        path = Path(first.backend.root) / pack_name(location.pack)
        data = bytearray(path.read_bytes())
        data[location.offset + 32] ^= 0b10  # the record's type byte: blob (1) -> tree (3)
        path.write_bytes(data)
        assert odb.get(blob) == (ObjectType.BLOB, b"a file's content\n" * 100)  # falls back
        assert not scrub(store).clean
        assert odb.get_kind(blob) == ObjectType.BLOB  # not TREE, from the damaged copy
    finally:
        store.close()
