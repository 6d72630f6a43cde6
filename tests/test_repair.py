"""vst repair: every kind of damage to one copy is rewritten from the good copy, the good
copies are never touched, and a pack with no good copy left is reported with the objects and
collections it costs, never "repaired" from a bad copy (RELIABILITY S4: 0 spread)."""

from __future__ import annotations

import json
import random
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import vst_run
from conftest import make_tree

from vst.objects.chunking import ChunkParams
from vst.objects.commit import Commit, Signature
from vst.objects.odb import pack_name
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.affected import DIR, FILE, AffectedPath
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.write_tree import write_tree
from vst.porcelain.repair import repair
from vst.porcelain.scrub import scrub
from vst.porcelain.volume import volume_add
from vst.store import Store

SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)


@pytest.fixture
def mirrored(tmp_path: Path) -> Iterator[Store]:
    """A store whose collection 'photos' has one commit of 40 files, in about ten packs,
    on two local volumes."""
    store = Store.init(str(tmp_path / "store"), pack_size=64 * 1024)
    rng = random.Random(11)
    files = tmp_path / "files"
    files.mkdir()
    for i in range(40):
        (files / f"f{i:02}.bin").write_bytes(rng.randbytes(12 * 1024))
    tree = write_tree(store, str(files), processes=False)
    commit = commit_tree(store, tree, [], b"photos", author=SIG, committer=SIG)
    store.create_collection("photos")
    store.update_ref("photos", commit, None, committer=SIG, message="commit")
    volume_add(store, "second", str(tmp_path / "second"))
    yield store
    store.close()


def copies(store: Store) -> dict[tuple[str, str], Path]:
    """(volume, pack hex) -> the file of that copy."""
    found = {}
    for ref in store.volumes():
        for row in store.odb.index.packs():
            found[ref.name, row.pack.hex] = Path(ref.backend.root) / pack_name(row.pack)
    return found


def snapshot(paths: Iterator[Path] | list[Path]) -> dict[Path, tuple[bytes, int, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in paths}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(data)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _zero(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[1000:5096] = bytes(4096)
    path.write_bytes(data)


def _delete(path: Path) -> None:
    path.unlink()


DAMAGE: list[Callable[[Path], None]] = [_flip, _truncate, _zero, _delete]


def damage_one_copy_each(store: Store) -> tuple[set[tuple[str, str]], list[Path]]:
    """Damage one copy of most packs, alternating volumes and kinds (the last one swapped
    for another pack); returns the damaged copies and the paths of the intact ones."""
    paths = copies(store)
    packs = sorted({pack for _volume, pack in paths})
    assert len(packs) >= 8
    damaged = set()
    for i, pack in enumerate(packs[:-2]):
        volume = ("default", "second")[i % 2]
        DAMAGE[i % len(DAMAGE)](paths[volume, pack])
        damaged.add((volume, pack))
    swapped = paths["default", packs[-2]]
    swapped.write_bytes(paths["default", packs[-1]].read_bytes())
    damaged.add(("default", packs[-2]))
    return damaged, [p for key, p in paths.items() if key not in damaged]


def test_repair_rewrites_each_damaged_copy_from_the_good_one(mirrored: Store) -> None:
    before = {key: p.read_bytes() for key, p in copies(mirrored).items()}
    damaged, intact = damage_one_copy_each(mirrored)
    good = snapshot(intact)
    found = scrub(mirrored)
    assert {(p.volume, p.pack) for p in found.problems} == damaged
    result = repair(mirrored)
    assert result.complete and result.unrepairable == []
    assert {(r.volume, r.pack) for r in result.repaired} == damaged
    assert all(r.source != r.volume for r in result.repaired)
    assert {r.kind for r in result.repaired} == {"bad", "missing"}
    assert scrub(mirrored).clean
    assert snapshot(intact) == good  # the sources were only read
    assert {key: p.read_bytes() for key, p in copies(mirrored).items()} == before
    volumes = {ref.name: ref.volume_id for ref in mirrored.volumes()}
    for row in mirrored.odb.index.packs():
        assert set(row.volumes) == set(volumes.values())
    again = repair(mirrored)
    assert again.repaired == [] and again.problems == []


def test_a_pack_with_no_good_copy_is_unrepairable_and_never_spread(mirrored: Store) -> None:
    paths = copies(mirrored)
    head = mirrored.read_ref("photos")
    assert head is not None
    tree = mirrored.odb.read_commit(head).tree
    blob = mirrored.odb.read_tree(tree).entries[0].oid
    lost = mirrored.odb.index.lookup(blob).pack.hex
    _flip(paths["default", lost])
    _zero(paths["second", lost])
    other = next(pack for _volume, pack in sorted(paths) if pack != lost)
    _truncate(paths["second", other])
    both_bad = snapshot([paths["default", lost], paths["second", lost]])
    intact = [p for key, p in paths.items() if key not in
              {("default", lost), ("second", lost), ("second", other)}]
    good = snapshot(intact)

    ran = vst_run("--store", mirrored.path, "repair")
    assert ran.code == 3, ran.err
    assert f"error: pack {lost} cannot be repaired" in ran.err
    assert "reached from photos" in ran.err
    # S4: no bad copy was copied over another, nor over a good one.
    assert snapshot([paths["default", lost], paths["second", lost]]) == both_bad
    assert snapshot(intact) == good
    result = scrub(mirrored)
    assert {(p.volume, p.pack) for p in result.problems} == {("default", lost),
                                                             ("second", lost)}

    outcome = repair(mirrored)
    [unrepairable] = outcome.unrepairable
    assert unrepairable.pack == lost
    assert unrepairable.volumes == ("default", "second")
    assert set(unrepairable.tried) == {"default", "second"}
    assert "content does not match its name" in unrepairable.reason
    assert blob.hex in unrepairable.objects
    assert unrepairable.collections == ("photos",)


def test_dry_run_writes_nothing(mirrored: Store) -> None:
    damaged, _intact = damage_one_copy_each(mirrored)
    paths = copies(mirrored)
    volumes_root = [Path(ref.backend.root) for ref in mirrored.volumes()]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for root in volumes_root
              for p in root.rglob("*") if p.is_file()}
    index_before = mirrored.odb.index.packs()
    ran = vst_run("--store", mirrored.path, "--json", "repair", "--dry-run")
    assert ran.code == 0, ran.err
    records = [json.loads(line) for line in ran.out.decode().splitlines()]
    assert {(r["volume"], r["pack"]) for r in records if r["type"] == "repaired"} == damaged
    assert records[-1] == {"type": "repair", "dry_run": True, "repaired": len(damaged),
                           "unrepairable": 0, "problems": records[-1]["problems"]}
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for root in volumes_root
             for p in root.rglob("*") if p.is_file()}
    assert after == before and mirrored.odb.index.packs() == index_before
    assert not scrub(mirrored).clean
    assert all(paths[key].exists() or key in damaged for key in paths)


def test_cli_volume_and_exit_codes(mirrored: Store) -> None:
    ran = vst_run("--store", mirrored.path, "repair")
    assert ran.code == 0, ran.err
    assert ran.err_lines[-1] == "repaired 0 pack copies (0 bytes)"
    paths = copies(mirrored)
    pack = sorted(paths)[0][1]
    _delete(paths["default", pack])
    _flip(paths["second", pack])
    # Only the second volume: its copy cannot come from the deleted one.
    ran = vst_run("--store", mirrored.path, "repair", "--volume", "second")
    assert ran.code == 3
    assert f"pack {pack} on volume 'default': missing" in ran.err
    ran = vst_run("--store", mirrored.path, "repair", "--volume", "nope")
    assert ran.code == 17


# -- what an unrepairable pack costs: (collection, commit, path) over whole histories --------

BIG = random.Random(5).randbytes(48 * 1024)  # about a dozen chunks with the small params


def _lose(store: Store, oid: Oid) -> str:
    """Damage every copy of the pack holding ``oid``; returns the pack's hex id."""
    location = store.odb.index.lookup(oid)
    assert location is not None
    for (_volume, pack), path in copies(store).items():
        if pack == location.pack.hex:
            _flip(path)
    return location.pack.hex


def _commit(store: Store, directory: Path, parents: list[Oid]) -> Oid:
    tree = write_tree(store, str(directory), processes=False)
    return commit_tree(store, tree, parents, b"snapshot", author=SIG, committer=SIG)


def _point(store: Store, collection: str, commit: Oid) -> None:
    store.create_collection(collection)
    store.update_ref(collection, commit, None, committer=SIG, message="commit")


@pytest.fixture
def histories(tmp_path: Path) -> Iterator[tuple[Store, dict[str, Oid]]]:
    """Collection 'photos': c1, c2, c3, each with the chunked big.bin, albums/ and
    notes.txt (changed each time) and 25 files many/mNN.txt; 'archive': one commit with the
    same big.bin. Staged first, each in packs of their own: one chunk of big.bin ('piece'),
    the albums/ tree, and the 25 small files. Two volumes."""
    store = Store.init(str(tmp_path / "store"), pack_size=64 * 1024,
                       chunk_params=ChunkParams(min=1024, avg=2048, max=8192))
    scratch = Store.init(str(tmp_path / "scratch"),
                         chunk_params=ChunkParams(min=1024, avg=2048, max=8192))
    big = write_tree(scratch, str(make_tree(tmp_path / "s", {"big.bin": BIG})),
                     processes=False)
    chunks = scratch.odb.read_tree(big).entries[0].oid
    chunk = scratch.odb.read_chunk_list(chunks).chunks[2].oid
    # A file of exactly one chunk's bytes is stored as that chunk: the same blob.
    piece = scratch.odb.get(chunk)[1]
    scratch.close()
    work = make_tree(tmp_path / "photos", {
        "big.bin": BIG, "notes.txt": "1", "albums": {"a.txt": "A", "b.txt": "B"},
        "many": {f"m{i:02}.txt": f"many {i}" for i in range(25)}})
    ids = {"chunk": chunk,
           "piece": write_tree(store, str(make_tree(tmp_path / "p", {"piece": piece})),
                               processes=False),
           "albums": write_tree(store, str(work / "albums"), processes=False),
           "many": write_tree(store, str(make_tree(tmp_path / "m", {
               f"m{i:02}.txt": f"many {i}" for i in range(25)})), processes=False)}
    ids["c1"] = _commit(store, work, [])
    (work / "notes.txt").write_text("2")
    ids["c2"] = _commit(store, work, [ids["c1"]])
    (work / "notes.txt").write_text("3")
    ids["c3"] = _commit(store, work, [ids["c2"]])
    _point(store, "photos", ids["c3"])
    ids["a1"] = _commit(store, make_tree(tmp_path / "archive", {"big.bin": BIG, "x": "x"}),
                        [])
    _point(store, "archive", ids["a1"])
    volume_add(store, "second", str(tmp_path / "second"))
    yield store, ids
    store.close()


def test_a_lost_chunk_is_reported_with_every_commit_and_path_it_costs(
        histories: tuple[Store, dict[str, Oid]]) -> None:
    store, ids = histories
    chunk = ids["chunk"]
    assert store.odb.index.lookup(chunk).pack != store.odb.index.lookup(ids["c1"]).pack
    pack = _lose(store, chunk)
    [unrepairable] = repair(store).unrepairable
    assert unrepairable.pack == pack
    assert unrepairable.collections == ("archive", "photos")
    assert unrepairable.affected == (
        AffectedPath("archive", ids["a1"], b"big.bin", FILE, (chunk,)),
        AffectedPath("photos", ids["c3"], b"big.bin", FILE, (chunk,)),
        AffectedPath("photos", ids["c2"], b"big.bin", FILE, (chunk,)),
        AffectedPath("photos", ids["c1"], b"big.bin", FILE, (chunk,)))

    ran = vst_run("--store", store.path, "repair")
    assert ran.code == 3
    assert f"  archive: big.bin (file, in 1 commit, latest {ids['a1'].short()})" in ran.err
    assert f"  photos: big.bin (file, in 3 commits, latest {ids['c3'].short()})" in ran.err
    ran = vst_run("--store", store.path, "--json", "repair")
    records = [json.loads(line) for line in ran.out.decode().splitlines()]
    assert [r for r in records if r["type"] == "affected"] == [
        {"type": "affected", "pack": pack, "collection": collection, "commit": commit.hex,
         "path": "big.bin", "what": "file", "objects": [chunk.hex]}
        for collection, commit in [("archive", ids["a1"]), ("photos", ids["c3"]),
                                   ("photos", ids["c2"]), ("photos", ids["c1"])]]
    [summary] = [r for r in records if r["type"] == "unrepairable"]
    assert summary["affected"] == 4 and summary["collections"] == ["archive", "photos"]


def test_a_lost_tree_is_reported_as_its_directory(
        histories: tuple[Store, dict[str, Oid]]) -> None:
    store, ids = histories
    albums = ids["albums"]
    pack = _lose(store, albums)
    [unrepairable] = repair(store).unrepairable
    assert unrepairable.pack == pack
    # Its files are in the lost pack too, but cannot be named without the tree.
    assert unrepairable.affected == tuple(
        AffectedPath("photos", ids[c], b"albums", DIR, (albums,)) for c in ("c3", "c2", "c1"))
    assert unrepairable.collections == ("photos",)
    ran = vst_run("--store", store.path, "repair")
    assert f"  photos: albums/ (dir, in 3 commits, latest {ids['c3'].short()})" in ran.err


def test_the_terminal_shows_20_paths_and_json_all_of_them(
        histories: tuple[Store, dict[str, Oid]]) -> None:
    store, ids = histories
    pack = _lose(store, ids["many"])
    ran = vst_run("--store", store.path, "repair")
    assert ran.code == 3
    shown = [line for line in ran.err_lines if line.startswith("  photos: many/")]
    assert len(shown) == 20
    assert "  and 5 more (see --json)" in ran.err_lines
    ran = vst_run("--store", store.path, "--json", "repair")
    affected = [json.loads(line) for line in ran.out.decode().splitlines()
                if json.loads(line)["type"] == "affected"]
    assert len(affected) == 75 and {r["pack"] for r in affected} == {pack}
    assert {r["path"] for r in affected} == {f"many/m{i:02}.txt" for i in range(25)}


def test_a_long_history_reads_each_tree_once(histories: tuple[Store, dict[str, Oid]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """200 commits, each with its own root tree holding the same photos/ subtree: each
    commit and tree is read once, and the shared subtree's insides not again."""
    store, ids = histories
    shared = store.odb.read_commit(ids["c1"]).tree
    parent: list[Oid] = []
    roots = []
    with store.odb.writer() as writer:
        for i in range(200):
            note = writer.put(ObjectType.BLOB, b"%d" % i)
            root = writer.put(ObjectType.TREE, Tree.from_entries([
                TreeEntry(b"n", stat.S_IFREG | 0o644, ObjectType.BLOB, note, len(b"%d" % i)),
                TreeEntry(b"photos", stat.S_IFDIR | 0o755, ObjectType.TREE, shared)]).encode())
            roots.append(root)
            # commit_tree would look for the parent, still in the writer: put it directly.
            parent = [writer.put(ObjectType.COMMIT, Commit(root, tuple(parent), SIG, SIG,
                                                           b"%d" % i).encode())]
    store.update_ref("photos", parent[0], ids["c3"], committer=SIG, message="long")
    store.update_ref("archive", parent[0], ids["a1"], committer=SIG, message="long")
    _lose(store, ids["chunk"])
    reads: Counter[Oid] = Counter()
    real_get = store.odb.get

    def counting_get(oid: Oid) -> tuple[ObjectType, bytes]:
        reads[oid] += 1
        result: tuple[ObjectType, bytes] = real_get(oid)
        return result

    monkeypatch.setattr(store.odb, "get", counting_get)
    [unrepairable] = repair(store).unrepairable
    assert len(unrepairable.affected) == 2 * 200
    assert {r.path for r in unrepairable.affected} == {b"photos/big.bin"}
    assert all(reads[root] == 1 for root in roots) and reads[shared] == 1
    assert max(reads.values()) == 1
    # 200 commits, 200 roots, the shared tree, its two subtrees and big.bin's chunk list.
    assert sum(reads.values()) == 200 + 200 + 1 + 2 + 1
