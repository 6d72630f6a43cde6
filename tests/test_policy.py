"""Replication policies: where commits put packs, what a volume that is down costs, how
``vst replicate`` makes it up, and what ``drop`` asks before it deletes (issue 4)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import Ran, open_keyed, vst_run

from vst.objects.odb import pack_name
from vst.objects.oid import Oid
from vst.store import Store


def vst(root: Path, *args: str) -> Ran:
    return vst_run("-C", str(root), *args)


def ok(root: Path, *args: str) -> str:
    ran = vst(root, *args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


@pytest.fixture
def setup(tmp_path: Path, env: dict[str, str], make_tree: Callable[..., Path]) -> Path:
    """A store with volumes default, b and c, and a working copy 'w' of collection w."""
    store = tmp_path / "store"
    assert vst_run("store", "init", str(store)).code == 0
    for name in ("b", "c"):
        assert vst_run("--store", str(store), "volume", "add", name,
                       str(tmp_path / name)).code == 0
    root = make_tree(tmp_path / "w", {"big.bin": os.urandom(300_000), "a.txt": "alpha\n"})
    assert vst_run("-C", str(root), "init", "--store", str(store)).code == 0
    return root


def packs_on(volume: Path) -> set[str]:
    return {p.name for p in (volume / "packs").glob("*/*")} if (volume / "packs").exists() \
        else set()


def open_store(root: Path) -> Store:
    return open_keyed(str(root.parent / "store"))


def head(root: Path) -> str:
    return ok(root, "rev-parse", "HEAD").strip()


def test_the_default_policy_is_every_volume(setup: Path) -> None:
    listed = ok(setup, "policy", "list")
    assert listed.startswith("default\t3 of b,c,default (built in: every volume)\tw")
    ok(setup, "commit", "-m", "one")
    volumes = [setup.parent / "b", setup.parent / "c", setup.parent / "store/volumes/default"]
    held = [packs_on(v) for v in volumes]
    assert held[0] and held[0] == held[1] == held[2]


def test_policy_set_checks_and_lists(setup: Path) -> None:
    assert vst(setup, "policy", "set", "p", "--volumes", "b,nope").code == 2
    assert vst(setup, "policy", "set", "p", "--volumes", "b,c", "--copies", "3").code == 2
    assert vst(setup, "policy", "set", "p", "--volumes", "b,b").code == 2
    assert vst(setup, "policy", "set", "../x", "--volumes", "b").code == 2
    ok(setup, "policy", "set", "p", "--volumes", "c,b")
    assert "p\t2 of c,b\t-" in ok(setup, "policy", "list")
    ran = vst(setup, "collection", "set-policy", "w", "nope")
    assert ran.code == 17 and "no policy named 'nope'" in ran.err
    ok(setup, "collection", "set-policy", "w", "p")
    assert "p\t2 of c,b\tw" in ok(setup, "policy", "list")
    ran = vst(setup, "policy", "remove", "p")
    assert ran.code == 5 and "used by collection 'w'" in ran.err
    ok(setup, "collection", "set-policy", "w", "default")
    ok(setup, "policy", "remove", "p")
    assert "p\t" not in ok(setup, "policy", "list")
    # Policies and the collection's choice are mirrored to the volumes.
    ok(setup, "policy", "set", "q", "--volumes", "b")
    ok(setup, "collection", "set-policy", "w", "q")
    meta = setup.parent / "c" / "meta"
    assert "[policies.q]" in (meta / "config.toml").read_text()
    assert 'policy = "q"' in (meta / "collections" / "w.toml").read_text()


def test_commit_writes_copies_to_the_first_volumes_of_the_policy(setup: Path) -> None:
    ok(setup, "policy", "set", "one", "--volumes", "c,b,default", "--copies", "1")
    ok(setup, "collection", "set-policy", "w", "one")
    ok(setup, "commit", "-m", "one")
    assert packs_on(setup.parent / "c")
    assert not packs_on(setup.parent / "b")
    assert not packs_on(setup.parent / "store/volumes/default")


def test_a_volume_down_at_commit_leaves_a_deficit_that_replicate_makes_up(setup: Path) -> None:
    ok(setup, "policy", "set", "two", "--volumes", "default,b")
    ok(setup, "collection", "set-policy", "w", "two")
    b = setup.parent / "b"
    b.rename(setup.parent / "b.away")
    ran = vst(setup, "commit", "-m", "while b is away")
    assert ran.code == 0, ran.err
    assert "volume 'b' is unavailable" in ran.err
    assert "fewer than the 2 copies policy 'two' asks (volumes out: 'b')" in ran.err
    assert "fewer than the 2 copies policy 'two' asks" in ok(setup, "status")
    assert "under-replicated" in ok(setup, "collection", "list")
    # drop will not delete the only copy while the policy asks for two.
    ran = vst(setup.parent, "drop", str(setup))
    assert ran.code == 5 and "fewer than the 2 copies" in ran.err and setup.exists()
    ran = vst(setup, "replicate")
    assert ran.code == 3 and "volumes out: 'b'" in ran.err
    (setup.parent / "b.away").rename(b)
    assert "would copy" in vst(setup, "replicate", "--dry-run").err
    assert not packs_on(b)  # a dry run copies nothing
    ran = vst(setup, "replicate")
    assert ran.code == 0, ran.err
    assert packs_on(b) == packs_on(setup.parent / "store/volumes/default")
    assert "fewer than" not in ok(setup, "status")
    assert "under-replicated" not in ok(setup, "collection", "list")
    # The refs written while b was away reached b's mirror too.
    assert (b / "meta" / "refs" / "w").read_text().strip() == head(setup)
    ran = vst(setup.parent, "drop", str(setup))
    assert ran.code == 0, ran.err
    assert not setup.exists()


def test_commit_fails_when_no_volume_of_the_policy_is_up(setup: Path) -> None:
    ok(setup, "policy", "set", "bonly", "--volumes", "b")
    ok(setup, "collection", "set-policy", "w", "bonly")
    (setup.parent / "b").rename(setup.parent / "b.away")
    ran = vst(setup, "commit", "-m", "nowhere to go")
    assert ran.code == 20 and "no volume of policy 'bonly' is available" in ran.err
    assert vst(setup, "rev-parse", "HEAD").code != 0  # the ref did not move


def test_reused_objects_are_brought_to_the_new_collections_policy(
        setup: Path, tmp_path: Path, make_tree: Callable[..., Path]) -> None:
    ok(setup, "policy", "set", "local", "--volumes", "default")
    ok(setup, "collection", "set-policy", "w", "local")
    ok(setup, "commit", "-m", "one")
    b = tmp_path / "b"
    assert not packs_on(b)
    other = tmp_path / "other"
    shutil.copytree(setup, other, ignore=shutil.ignore_patterns(".vst"))
    ok(other, "init", "--store", str(tmp_path / "store"))
    ok(other, "policy", "set", "safe", "--volumes", "default,b")
    ok(other, "collection", "set-policy", "other", "safe")
    ran = vst(other, "commit", "-m", "same files")
    assert ran.code == 0 and "fewer than" not in ran.err
    store = open_store(setup)
    try:
        index = store.odb.index
        b_id = next(s.volume_id for s in store.volume_specs() if s.name == "b")
        commit = store.read_ref("other")
        assert commit is not None
        reached = index.packs_of(_objects(store, commit))
        assert reached and all(b_id in index.pack_copies([p])[p] for p in reached)
    finally:
        store.close()


def _objects(store: Store, commit: Oid) -> set[Oid]:
    from vst.plumbing.reachable import reachable

    return {oid for oid, _ in reachable(store, [commit])}


def test_replicate_refills_a_volume_replaced_by_an_empty_one(setup: Path, tmp_path: Path) -> None:
    ok(setup, "commit", "-m", "one")
    b = tmp_path / "b"
    before = packs_on(b)
    shutil.rmtree(b / "packs")
    ran = vst(setup, "replicate")
    assert ran.code == 0, ran.err
    assert "not on its volume; forgotten, and copied again" in ran.err
    assert packs_on(b) == before
    assert "copied 0 packs" in vst(setup, "replicate").err  # the index now agrees


def test_a_damaged_copy_is_never_spread_by_replicate(setup: Path, tmp_path: Path) -> None:
    ok(setup, "policy", "set", "local", "--volumes", "default")
    ok(setup, "collection", "set-policy", "w", "local")
    ok(setup, "commit", "-m", "one")
    default = tmp_path / "store" / "volumes" / "default"
    for pack in sorted(default.glob("packs/*/*")):
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0x40
        pack.write_bytes(bytes(data))
    ok(setup, "policy", "set", "local", "--volumes", "default,b")
    ran = vst(setup, "replicate", "w")
    assert ran.code == 3 and "does not match its name" in ran.err
    assert not packs_on(tmp_path / "b")


def test_reads_fall_back_and_name_the_bad_copy(setup: Path, tmp_path: Path) -> None:
    ok(setup, "commit", "-m", "one")
    damaged = []
    for volume in ("b", "c"):  # only default keeps good copies
        for pack in sorted((tmp_path / volume).glob("packs/*/*")):
            data = bytearray(pack.read_bytes())
            data[40] ^= 0x01  # inside the first record
            pack.write_bytes(bytes(data))
            damaged.append((volume, pack.name))
    out = tmp_path / "restored"
    ran = vst(setup, "restore", "--to", str(out), ".")
    assert ran.code == 0, ran.err
    assert (out / "big.bin").read_bytes() == (setup / "big.bin").read_bytes()
    assert (out / "a.txt").read_bytes() == b"alpha\n"
    warnings = [line for line in ran.err_lines if "read from volume" in line]
    assert warnings and all("read from volume 'default' instead (run 'vst repair')" in line
                            for line in warnings)
    named = {(volume, pack) for volume, pack in damaged for line in warnings
             if f"pack {pack} on volume '{volume}'" in line}
    assert ("b", damaged[0][1]) in named
    assert len(warnings) == len(named)  # once per pack and volume, not per object


def test_restores_go_on_while_a_volume_is_unavailable(setup: Path, tmp_path: Path) -> None:
    ok(setup, "commit", "-m", "one")
    b = tmp_path / "b"
    b.rename(tmp_path / "b.away")
    shutil.rmtree(tmp_path / "store" / "volumes" / "default")  # and the local disk died
    (tmp_path / "store" / "volumes" / "default").mkdir()
    out = tmp_path / "restored"
    ran = vst(setup, "restore", "--to", str(out), ".")
    assert ran.code == 0, ran.err
    assert (out / "big.bin").read_bytes() == (setup / "big.bin").read_bytes()
    assert "volume 'b' is unavailable" in ran.err


def test_volume_remove_takes_the_volume_out_of_policies(setup: Path) -> None:
    ok(setup, "policy", "set", "both", "--volumes", "b,c")
    ok(setup, "policy", "set", "bonly", "--volumes", "b")
    ran = vst(setup, "volume", "lost", "b")
    assert ran.code == 5 and "only volume of policy 'bonly'" in ran.err
    ok(setup, "policy", "remove", "bonly")
    ran = vst(setup, "volume", "lost", "b")
    assert "policy 'both' now keeps 1 copy, on 'c'" in ran.err
    assert "both\t1 of c\t-" in ok(setup, "policy", "list")


def test_lost_volume_then_replicate_restores_the_policy(setup: Path, tmp_path: Path) -> None:
    ok(setup, "policy", "set", "two", "--volumes", "b,c,default", "--copies", "2")
    ok(setup, "collection", "set-policy", "w", "two")
    ok(setup, "commit", "-m", "one")
    assert not packs_on(tmp_path / "store/volumes/default")
    shutil.rmtree(tmp_path / "b")  # the disk died
    vst(setup, "volume", "lost", "b")
    assert "under-replicated" in ok(setup, "collection", "list")
    ran = vst(setup, "replicate")
    assert ran.code == 0, ran.err
    assert packs_on(tmp_path / "c") == packs_on(tmp_path / "store/volumes/default")
    assert "under-replicated" not in ok(setup, "collection", "list")


def test_replicate_json_and_unknown_collection(setup: Path) -> None:
    ok(setup, "commit", "-m", "one")
    ran = vst_run("-C", str(setup), "--json", "replicate")
    assert ran.code == 0
    last = ran.out.decode().strip().splitlines()[-1]
    assert '"type": "replicate"' in last and '"short": 0' in last
    ran = vst(setup, "replicate", "nope")
    assert ran.code == 17


def test_pack_names_stay_out_of_the_walk(setup: Path) -> None:
    """``pack_name`` is what replicate compares with a volume's listing."""
    ok(setup, "commit", "-m", "one")
    store = open_store(setup)
    try:
        row = store.odb.index.packs()[0]
        assert pack_name(row.pack) in set(store.volumes()[0].backend.list("packs/"))
    finally:
        store.close()


def test_index_rebuild_keeps_the_counts_and_needs_every_volume(setup: Path,
                                                               tmp_path: Path) -> None:
    ok(setup, "policy", "set", "two", "--volumes", "default,b")
    ok(setup, "collection", "set-policy", "w", "two")
    (tmp_path / "b").rename(tmp_path / "b.away")
    ok(setup, "commit", "-m", "while b is away")
    ran = vst(setup, "index", "rebuild")
    assert ran.code == 20 and "while volume 'b' is unavailable" in ran.err
    (tmp_path / "b.away").rename(tmp_path / "b")
    (tmp_path / "store" / "index.sqlite").unlink()
    ok(setup, "index", "rebuild")
    # Which packs the collection uses came back from a walk of its history.
    assert "under-replicated" in ok(setup, "collection", "list")


def test_status_json_and_volume_lost_counts_by_policy(setup: Path, tmp_path: Path) -> None:
    import json

    ok(setup, "policy", "set", "one", "--volumes", "b,c", "--copies", "1")
    ok(setup, "collection", "set-policy", "w", "one")
    ok(setup, "commit", "-m", "one")
    ran = vst_run("-C", str(setup), "--json", "status")
    record = json.loads(ran.out.decode().strip().splitlines()[-1])
    assert record["policy"] == "one" and record["under_replicated_packs"] == 0
    # c holds nothing of w (one copy, on b first): losing it leaves nothing short.
    ran = vst_run("-C", str(setup), "--json", "volume", "lost", "c")
    record = json.loads(ran.out.decode().strip().splitlines()[-1])
    assert record["lost"] == 0 and record["under_replicated"] == 0, record
    # A refused loss says nothing about policies it did not change.
    ok(setup, "policy", "set", "both", "--volumes", "default,b")
    ok(setup, "policy", "set", "bonly", "--volumes", "b")
    ran = vst(setup, "volume", "lost", "b")
    assert ran.code == 5 and "now keeps" not in ran.err
