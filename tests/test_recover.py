"""`vst recover --from VOLUME STORE_PATH`: a lost store directory rebuilt from one of its
volumes (invariant 5), from a local directory and from S3 (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import Ran, open_keyed, user_keys, vst_run
from s3server import REGION, S3Server
from test_cli import assert_one_line_error

from vst.errors import VstError
from vst.fsio import FileSystem
from vst.objects.oid import Oid
from vst.porcelain.recover import REACHABLE, RECREATED, UNREACHABLE, recover
from vst.porcelain.restore import restore
from vst.porcelain.volume import volume_add
from vst.store import Store

service = pytest.mark.service

History = dict[str, list[tuple[Oid, dict[str, bytes]]]]
# Two collections, three versions each: a new file, a big file (a chunk list), a change
# and a deletion, so commits, trees, chunk lists and blobs all have to come back.
VERSIONS: dict[str, list[dict[str, bytes | None]]] = {
    "docs": [{"a.txt": b"first\n", "sub/b.txt": b"bee\n"},
             {"big.bin": os.urandom(3_000_000)},
             {"a.txt": b"second\n", "sub/b.txt": None}],
    "photos": [{"p1.jpg": os.urandom(5000)},
               {"p2.jpg": os.urandom(7000), "album/p3.jpg": os.urandom(100)},
               {"p1.jpg": None, "album/p3.jpg": b"edited"}],
}


def ok(*args: str) -> Ran:
    ran = vst_run(*args)
    assert ran.code == 0, ran.err
    return ran


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vst" not in p.relative_to(root).parts}


def commit_version(store: Path, work: Path, name: str, number: int, history: History) -> None:
    if number == 0:
        ok("--store", str(store), "init", str(work), "-c", name)
    for path, data in VERSIONS[name][number].items():
        target = work / path
        if data is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    record = json.loads(ok("--json", "-C", str(work), "commit", "-m", f"v{number}").out)
    history.setdefault(name, []).append((Oid.from_hex(record["id"]), files(work)))


def build_store(tmp_path: Path, *volumes: Callable[[Store], object]) -> tuple[Path, History]:
    """A store with two collections: one version of each, then the volumes added, then
    two more versions (so packs reach the volumes both by copy and by commit)."""
    store, history = tmp_path / "store", {}
    ok("store", "init", str(store))
    for name in VERSIONS:
        commit_version(store, tmp_path / f"work-{name}", name, 0, history)
    opened = open_keyed(str(store))
    try:
        for add in volumes:
            add(opened)
    finally:
        opened.close()
    for number in (1, 2):
        for name in VERSIONS:
            commit_version(store, tmp_path / f"work-{name}", name, number, history)
    return store, history


def local(tmp_path: Path, name: str) -> Callable[[Store], object]:
    return lambda store: volume_add(store, name, str(tmp_path / name))


def lose(store: Path) -> dict[str, bytes]:
    """Delete the store directory; return its reflogs."""
    logs = {p.name: p.read_bytes() for p in (store / "logs").iterdir()}
    assert set(logs) == set(VERSIONS)
    shutil.rmtree(store)
    return logs


def check_restores(store_path: Path, history: History, tmp_path: Path) -> None:
    store = open_keyed(str(store_path))
    try:
        assert store.collection_names() == sorted(history)
        for name, versions in history.items():
            assert store.read_ref(name) == versions[-1][0]
            assert [e.new for e in store.reflog(name)] == [oid for oid, _ in versions]
            for number, (commit, snapshot) in enumerate(versions):
                target = tmp_path / "restored" / f"{name}-{number}"
                restore(store, commit, str(target), [])
                assert files(target) == snapshot, (name, number)
    finally:
        store.close()


def volume_table(store: Path) -> dict[str, Any]:
    volumes: dict[str, Any] = tomllib.loads((store / "config.toml").read_text())["volumes"]
    return volumes


def recover_json(*args: str) -> tuple[Ran, dict[str, Any]]:
    ran = vst_run("--json", "recover", *args)
    return ran, json.loads(ran.out.decode())


def test_recover_from_a_local_volume_brings_every_commit_back(tmp_path: Path, env: Any) -> None:
    store, history = build_store(tmp_path, local(tmp_path, "disk1"), local(tmp_path, "disk2"))
    config_before = (store / "config.toml").read_bytes()
    logs = lose(store)

    ran, record = recover_json("--from", str(tmp_path / "disk2"), str(store))
    assert ran.code == 0, ran.err
    assert record["type"] == "recover" and record["path"] == str(store)
    assert record["incomplete"] == [] and record["packs"] > 0
    states = {v["name"]: (v["state"], v["source"]) for v in record["volumes"]}
    assert states == {"default": ("recreated", False), "disk1": ("reachable", False),
                      "disk2": ("reachable", True)}
    assert "'default' lay inside the store and is gone: recreated it empty" in ran.err
    assert {c["name"]: (c["head"], c["complete"]) for c in record["collections"]} == {
        name: (versions[-1][0].hex, True) for name, versions in history.items()}

    # The config as it was (the embedded volume still relative), the reflogs byte for byte,
    # the directories of a new store, the embedded volume with its descriptor.
    assert (store / "config.toml").read_bytes() == config_before
    assert {p.name: p.read_bytes() for p in (store / "logs").iterdir()} == logs
    for sub in ("collections", "refs", "logs", "locks", "keys", "hooks", "tmp"):
        assert (store / sub).is_dir()
    assert (store / "volumes" / "default" / "volume.toml").is_file()
    assert not list(tmp_path.glob(".store.vst-recover*"))
    check_restores(store, history, tmp_path)
    assert "no problems" in ok("--store", str(store), "fsck").err

    # The store works on: a new commit reaches every volume, the recreated one too.
    (tmp_path / "work-docs" / "later.txt").write_bytes(b"after the recovery\n")
    ok("-C", str(tmp_path / "work-docs"), "commit", "-m", "later")
    assert list((store / "volumes" / "default" / "packs").rglob("*"))
    # ...and 'vst replicate' copies the old packs back to the recreated volume.
    ok("--store", str(store), "replicate")
    default = {p.name for p in (store / "volumes" / "default" / "packs").glob("*/*")}
    disk1 = {p.name for p in (tmp_path / "disk1" / "packs").glob("*/*")}
    assert default == disk1


def test_a_moved_disk_is_renamed_in_the_config_and_a_lost_one_is_kept(
        tmp_path: Path, env: Any) -> None:
    store, history = build_store(tmp_path, local(tmp_path, "disk1"), local(tmp_path, "disk2"))
    lose(store)
    moved = tmp_path / "mnt" / "usb"
    moved.parent.mkdir()
    (tmp_path / "disk2").rename(moved)
    shutil.rmtree(tmp_path / "disk1")

    ran = vst_run("recover", "--from", str(moved), str(store))
    assert ran.code == 0, ran.err
    assert "volume 'disk1' is unreachable, kept in the config" in ran.err
    assert f"volume disk2 ({moved}): reachable, recovered from, was {tmp_path / 'disk2'}" \
        in ran.err
    assert "collection docs" in ran.err and ": complete" in ran.err
    volumes = volume_table(store)
    assert volumes["disk2"]["url"] == str(moved)
    assert volumes["disk1"]["url"] == str(tmp_path / "disk1")  # kept, for when it is back
    assert volumes["default"]["url"] == "volumes/default"
    # The volume's own mirror names its new place too.
    assert tomllib.loads((moved / "meta" / "config.toml").read_text())["volumes"] == volumes
    check_restores(store, history, tmp_path)


def test_the_function_reports_each_volume(tmp_path: Path, env: Any) -> None:
    store, _ = build_store(tmp_path, local(tmp_path, "disk1"), local(tmp_path, "disk2"))
    lose(store)
    (tmp_path / "disk1" / "volume.toml").write_text(
        '[volume]\nformat = 1\nid = "someone-else"\nstore = "another"\n')
    warnings: list[str] = []
    indexed: list[int] = []
    result = recover(str(store), str(tmp_path / "disk2"), key_source=user_keys(), warn=warnings.append,
                     on_bytes=indexed.append)
    by_name = {v.name: v for v in result.volumes}
    assert by_name["default"].state == RECREATED and by_name["default"].packs == 0
    assert by_name["disk2"].state == REACHABLE and by_name["disk2"].source
    assert by_name["disk2"].packs == result.packs == len(indexed)
    assert by_name["disk1"].state == UNREACHABLE
    assert by_name["disk1"].problem and "belongs to another store" in by_name["disk1"].problem
    assert any("'disk1' is unreachable" in w for w in warnings)
    assert not result.incomplete and all(c.objects > 0 for c in result.collections)


@pytest.fixture
def s3_env(s3_server: S3Server, env: dict[str, str],
           monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@service
def test_recover_from_an_s3_volume(s3_env: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3_env.bucket}/{tmp_path.name}-recover"

    def add_s3(store: Store) -> object:
        return volume_add(store, "cloud", url, endpoint_url=s3_env.endpoint_url,
                          region=REGION)

    store, history = build_store(tmp_path, add_s3)
    logs = lose(store)
    ran, record = recover_json("--from", url, "--endpoint-url", s3_env.endpoint_url,
                               "--region", REGION, str(store))
    assert ran.code == 0, ran.err
    states = {v["name"]: (v["state"], v["source"], v["previous_url"])
              for v in record["volumes"]}
    assert states == {"default": ("recreated", False, None),
                      "cloud": ("reachable", True, None)}
    volumes = volume_table(store)
    assert volumes["cloud"] == {"url": url, "id": volumes["cloud"]["id"],
                                "endpoint_url": s3_env.endpoint_url, "region": REGION}
    assert {p.name: p.read_bytes() for p in (store / "logs").iterdir()} == logs
    check_restores(store, history, tmp_path)


def test_refusals(tmp_path: Path, env: Any) -> None:
    store, _ = build_store(tmp_path, local(tmp_path, "disk"))
    disk = tmp_path / "disk"

    def refused(target: Path, source: Path | str, code: int, message: str,
                *extra: str) -> None:
        ran = vst_run("recover", "--from", str(source), *extra, str(target))
        assert ran.code == code, ran.err
        assert message in ran.err_lines[0], ran.err
        assert_one_line_error(ran)

    before = files(store)
    refused(store, disk, 5, "already exists and is not an empty directory")
    assert files(store) == before  # nothing touched
    (tmp_path / "file").write_bytes(b"x")
    refused(tmp_path / "file", disk, 5, "already exists and is not an empty directory")
    target = tmp_path / "new"
    refused(target, tmp_path / "nowhere", 20, "not reachable")
    refused(target, tmp_path / "work-docs", 24, "is not a vst volume (no volume.toml)")
    refused(target, disk, 2, "--region only apply to s3:// volumes", "--region", "x")

    # A volume whose metadata was never written, or belongs to another store.
    bare = tmp_path / "bare"
    shutil.copytree(disk, bare)
    shutil.rmtree(bare / "meta")
    refused(target, bare, 10, "holds no store metadata (no meta/config.toml)")
    other = tmp_path / "other"
    ok("store", "init", str(other))
    shutil.copy(other / "volumes" / "default" / "volume.toml", bare / "volume.toml")
    shutil.copytree(disk / "meta", bare / "meta")
    refused(target, bare, 24, "belongs to store")
    assert not target.exists()
    assert not list(tmp_path.glob(".*.vst-recover"))


class FailingRename(FileSystem):
    """Fails the rename that would put the recovered store in place."""

    def __init__(self, final: Path) -> None:
        self.final = str(final)

    def _rename(self, src: str, dst: str) -> None:
        if dst == self.final:
            raise OSError(5, "Input/output error")
        super()._rename(src, dst)


def test_an_interrupted_recover_leaves_nothing_and_can_be_run_again(
        tmp_path: Path, env: Any) -> None:
    store, history = build_store(tmp_path, local(tmp_path, "disk"))
    lose(store)
    store.mkdir()  # an empty directory is a fine target, and stays one
    with pytest.raises(VstError, match="cannot move the recovered store into"):
        recover(str(store), str(tmp_path / "disk"), key_source=user_keys(),
                fs=FailingRename(store))
    assert list(store.iterdir()) == []
    assert not (tmp_path / ".store.vst-recover").exists()

    # A crash (no clean-up) leaves the build directory behind: the next run starts over.
    leftover = tmp_path / ".store.vst-recover"
    (leftover / "refs").mkdir(parents=True)
    (leftover / "refs" / "half").write_bytes(b"torn")
    warnings: list[str] = []
    result = recover(str(store), str(tmp_path / "disk"), key_source=user_keys(),
                     warn=warnings.append)
    assert any("left by an interrupted recover" in w for w in warnings)
    assert not leftover.exists() and not (store / "refs" / "half").exists()
    assert not result.incomplete
    check_restores(store, history, tmp_path)


def test_packs_missing_from_the_source_exit_3_naming_the_collection(
        tmp_path: Path, env: Any) -> None:
    store = tmp_path / "store"
    disk = tmp_path / "disk"
    history: History = {}
    ok("store", "init", str(store))
    for name in VERSIONS:
        commit_version(store, tmp_path / f"work-{name}", name, 0, history)
    opened = open_keyed(str(store))
    volume_add(opened, "disk", str(disk))
    opened.close()
    before = set((disk / "packs").rglob("*"))
    commit_version(store, tmp_path / "work-photos", "photos", 1, history)
    photos_only = [p for p in set((disk / "packs").rglob("*")) - before if p.is_file()]
    assert photos_only
    shutil.rmtree(store)
    for pack in photos_only:
        pack.unlink()

    ran, record = recover_json("--from", str(disk), str(store))
    assert ran.code == 3, ran.err
    assert "vst: error: recovered the store, but some objects of collection 'photos' are " \
        "on no reachable volume" in ran.err_lines
    assert json.loads(ran.err_lines[-1])["code"] == 3
    assert record["incomplete"] == ["photos"]
    by_name = {c["name"]: c for c in record["collections"]}
    assert by_name["docs"]["complete"] and by_name["docs"]["missing"] == 0
    assert not by_name["photos"]["complete"] and by_name["photos"]["missing"] >= 1
    assert by_name["photos"]["head"] == history["photos"][-1][0].hex
    # The store is there all the same, and what it has restores.
    assert (store / "config.toml").is_file()
    check = open_keyed(str(store))
    try:
        commit, snapshot = history["docs"][0]
        restore(check, commit, str(tmp_path / "docs-back"), [])
        assert files(tmp_path / "docs-back") == snapshot
    finally:
        check.close()
    human = vst_run("recover", "--from", str(disk), str(tmp_path / "again"))
    assert human.code == 3
    assert "collection photos" in human.err and "missing" in human.err
