"""`vst volume remove` and `vst volume lost`: taking a volume out of a store, through the CLI,
on a store with local volumes."""

from __future__ import annotations

import json
import os
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest
from clirun import Ran, vst_run


def ok(*args: str) -> str:
    ran = vst_run(*args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


def record(ran: Ran) -> dict[str, Any]:
    [line] = ran.out.decode().splitlines()
    result: dict[str, Any] = json.loads(line)
    return result


def volume_ids(store: Path) -> dict[str, str]:
    config = tomllib.loads((store / "config.toml").read_text())
    return {name: table["id"] for name, table in config["volumes"].items()}


def copies(store: Path) -> set[tuple[str, str]]:
    """(pack hex, volume id) for every copy the index records."""
    with sqlite3.connect(store / "index.sqlite") as db:
        return {(pack.hex(), volume)
                for pack, volume in db.execute("SELECT pack, volume FROM pack_copies")}


def forget_copy(store: Path, pack_hex: str, volume_id: str) -> None:
    db = sqlite3.connect(store / "index.sqlite")
    try:
        db.execute("DELETE FROM pack_copies WHERE pack = ? AND volume = ?",
                   (bytes.fromhex(pack_hex), volume_id))
        db.commit()
    finally:
        db.close()


def pack_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "packs").rglob("*") if p.is_file()}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def volume_cmd(store: Path, *args: str) -> Ran:
    return vst_run("--store", str(store), "--json", "volume", *args)


@pytest.fixture
def two(env: dict[str, str], tmp_path: Path, make_tree: Any) -> tuple[Path, Path, Path]:
    """A store with a commit, on its default volume and on 'disk' (same packs)."""
    store, work, disk = tmp_path / "store", tmp_path / "work", tmp_path / "disk"
    ok("store", "init", str(store))
    make_tree(work, {"a.txt": "hello\n", "sub": {"b.bin": os.urandom(50_000)}})
    ok("--store", str(store), "init", str(work), "-c", "docs")
    ok("-C", str(work), "commit", "-m", "one")
    ok("--store", str(store), "volume", "add", "disk", str(disk))
    assert pack_files(disk) == pack_files(store / "volumes" / "default")
    return store, work, disk


def test_remove_forgets_the_volume_and_leaves_its_files(two: tuple[Path, Path, Path],
                                                        tmp_path: Path) -> None:
    store, work, disk = two
    disk_id = volume_ids(store)["disk"]
    assert any(volume == disk_id for _pack, volume in copies(store))
    before = snapshot(disk)

    ran = volume_cmd(store, "remove", "disk")
    assert ran.code == 0, ran.err
    done = record(ran)
    assert done["type"] == "volume_remove" and done["name"] == "disk"
    assert done["id"] == disk_id and done["copies"] == len(pack_files(disk))
    assert volume_ids(store).keys() == {"default"}
    assert all(volume != disk_id for _pack, volume in copies(store))
    assert snapshot(disk) == before  # nothing on the volume was touched
    mirror = store / "volumes" / "default" / "meta" / "config.toml"
    assert mirror.read_bytes() == (store / "config.toml").read_bytes()

    human = vst_run("--store", str(store), "volume", "list")
    assert human.code == 0 and "disk" not in human.out.decode()
    # The store works without it: a commit lands on the default volume only, and clones.
    (work / "c.txt").write_text("later\n")
    ok("-C", str(work), "commit", "-m", "two")
    assert snapshot(disk) == before  # the new packs did not go to the removed volume
    clone = tmp_path / "clone"
    ok("--store", str(store), "clone", "docs", str(clone))
    assert (clone / "c.txt").read_text() == "later\n"
    assert (clone / "sub" / "b.bin").read_bytes() == (work / "sub" / "b.bin").read_bytes()
    ok("--store", str(store), "scrub")

    again = vst_run("--store", str(store), "volume", "remove", "disk")
    assert again.code == 17, again.err


@pytest.mark.parametrize("damage", ["forgotten", "deleted", "truncated"])
def test_remove_of_the_only_holder_is_refused(two: tuple[Path, Path, Path],
                                              damage: str) -> None:
    """Only 'default' has the pack: the index knows it (forgotten), or the index still
    names 'disk' but the file there is gone or short (confirmed on the volume)."""
    store, _work, disk = two
    ids = volume_ids(store)
    name = sorted(pack_files(disk))[0]
    [path] = [p for p in (disk / "packs").rglob(name)]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-1])
    else:
        path.unlink()
    if damage == "forgotten":
        forget_copy(store, name, ids["disk"])
    config, index = (store / "config.toml").read_bytes(), copies(store)

    ran = volume_cmd(store, "remove", "default")
    assert ran.code == 5, ran.err
    assert "only copy of 1 pack" in ran.err and name in ran.err
    assert (store / "config.toml").read_bytes() == config
    assert copies(store) == index
    # The volume whose copies are all confirmed elsewhere can still go.
    assert volume_cmd(store, "remove", "disk").code == 0


def test_lost_with_every_pack_elsewhere(two: tuple[Path, Path, Path], tmp_path: Path) -> None:
    store, _work, _disk = two
    ok("--store", str(store), "volume", "add", "spare", str(tmp_path / "spare"))
    ids = volume_ids(store)
    # One pack never reached 'spare': after 'disk' is lost it has one copy of two.
    first = sorted(pack_files(tmp_path / "spare"))[0]
    forget_copy(store, first, ids["spare"])
    for path in (tmp_path / "spare" / "packs").rglob(first):
        path.unlink()

    ran = volume_cmd(store, "lost", "disk")
    assert ran.code == 0, ran.err
    done = record(ran)
    assert done["type"] == "volume_lost" and done["lost"] == 0
    assert done["under_replicated"] == 1 and done["copies"] >= 1
    assert volume_ids(store).keys() == {"default", "spare"}
    assert all(volume != ids["disk"] for _pack, volume in copies(store))
    clone = tmp_path / "clone"
    ok("--store", str(store), "clone", "docs", str(clone))
    assert (clone / "a.txt").read_text() == "hello\n"
    human = vst_run("--store", str(store), "volume", "lost", "spare")
    assert human.code == 0 and "0 packs on no volume" in human.out.decode()


def test_lost_of_the_only_holder_exits_3(two: tuple[Path, Path, Path]) -> None:
    store, _work, disk = two
    ids = volume_ids(store)
    names = sorted(pack_files(disk))
    for name in names:
        forget_copy(store, name, ids["default"])

    ran = volume_cmd(store, "lost", "disk")
    assert ran.code == 3, ran.err
    done = record(ran)
    assert done["lost"] == len(names) and done["under_replicated"] == 0
    assert f"{len(names)} pack" in ran.err and "no volume" in ran.err
    assert json.loads(ran.err_lines[-1])["code"] == 3
    assert volume_ids(store).keys() == {"default"}
    # The store still opens, and knows the objects are gone.
    ok("--store", str(store), "volume", "list")
    assert vst_run("--store", str(store), "collection", "list").code == 13
    fsck = vst_run("--store", str(store), "fsck")
    assert fsck.code == 1 and "missing commit" in fsck.out.decode(), fsck.err


def test_the_last_volume_cannot_go(env: dict[str, str], tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("store", "init", str(store))
    config = (store / "config.toml").read_bytes()
    for verb in ("remove", "lost"):
        ran = vst_run("--store", str(store), "volume", verb, "default")
        assert ran.code == 5, (verb, ran.err)
        assert "last volume" in ran.err
    assert (store / "config.toml").read_bytes() == config
    assert vst_run("--store", str(store), "volume", "lost", "nope").code == 17
