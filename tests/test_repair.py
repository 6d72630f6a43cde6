"""vst repair: every kind of damage to one copy is rewritten from the good copy, the good
copies are never touched, and a pack with no good copy left is reported with the objects and
collections it costs, never "repaired" from a bad copy (RELIABILITY S4: 0 spread)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import vst_run

from vst.objects.commit import Signature
from vst.objects.odb import pack_name
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
