"""`vst volume add|list` with a real S3 volume (SeaweedFS on 127.0.0.1), and a local one.

Credentials reach boto3 through its usual chain (the environment here): vst is never given
them and never writes them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from clirun import Ran, vst_run
from s3server import REGION, S3Server

from vst.remotes.s3 import S3Volume

service = pytest.mark.service


@pytest.fixture
def s3_env(s3_server: S3Server, env: dict[str, str],
           monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


def ok(*args: str) -> str:
    ran = vst_run(*args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


def records(ran: Ran) -> list[dict[str, Any]]:
    assert ran.code == 0, ran.err
    return [json.loads(line) for line in ran.out.decode().splitlines()]


def s3_url(server: S3Server, prefix: str) -> str:
    return f"s3://{server.bucket}/{prefix}"


def add_s3(store: Path, name: str, server: S3Server, prefix: str, *extra: str) -> Ran:
    return vst_run("--store", str(store), "--json", "volume", "add", name,
                   s3_url(server, prefix), "--endpoint-url", server.endpoint_url,
                   "--region", REGION, *extra)


def s3_packs(server: S3Server, prefix: str) -> set[str]:
    volume = S3Volume(s3_url(server, prefix), endpoint_url=server.endpoint_url, region=REGION,
                      access_key=server.access_key, secret_key=server.secret_key)
    return set(volume.list("packs/"))


def local_packs(store: Path) -> set[str]:
    root = store / "volumes" / "default"
    return {str(p.relative_to(root)) for p in (root / "packs").rglob("*") if p.is_file()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@service
def test_an_s3_volume_gets_everything_and_serves_reads(s3_env: S3Server, tmp_path: Path,
                                                       make_tree: Any) -> None:
    server, prefix = s3_env, f"{tmp_path.name}-main"
    store, work = tmp_path / "store", tmp_path / "work"
    ok("store", "init", str(store))
    make_tree(work, {"a.txt": "first file\n", "sub": {"b.bin": os.urandom(300_000)}})
    ok("--store", str(store), "init", str(work), "-c", "docs")
    ok("-C", str(work), "commit", "-m", "one")
    before = local_packs(store)
    assert before

    [added] = records(add_s3(store, "cloud", server, prefix))
    assert added["type"] == "volume_add" and added["kind"] == "s3"
    assert added["url"] == s3_url(server, prefix) and added["packs"] == len(before)
    assert s3_packs(server, prefix) == before  # everything the store had, at once
    config = (store / "config.toml").read_text()
    assert "[volumes.cloud]" in config and server.endpoint_url in config
    assert server.secret_key not in config and server.access_key not in config

    # A new commit writes its packs to both volumes.
    (work / "c.txt").write_text("a later file\n")
    ok("-C", str(work), "commit", "-m", "two")
    assert local_packs(store) > before
    assert s3_packs(server, prefix) == local_packs(store)

    listed = {r["name"]: r for r in records(vst_run("--store", str(store), "--json",
                                                    "volume", "list"))}
    assert set(listed) == {"default", "cloud"}
    assert listed["default"]["kind"] == "local" and listed["cloud"]["kind"] == "s3"
    for record in listed.values():
        assert record["type"] == "volume" and record["reachable"] is True
        assert record["packs"] == len(local_packs(store)) and record["bytes"] > 0
        assert record["problem"] is None
    assert listed["default"]["bytes"] == listed["cloud"]["bytes"]

    # Every byte comes back from S3 once the local volume has lost its packs.
    shutil.rmtree(store / "volumes" / "default" / "packs")
    clone = tmp_path / "clone"
    ok("--store", str(store), "clone", "docs", str(clone))
    for name in ("a.txt", "c.txt", "sub/b.bin"):
        assert (clone / name).read_bytes() == (work / name).read_bytes()

    human = ok("--store", str(store), "volume", "list")
    assert human.splitlines()[0].startswith("cloud\ts3\t")


@service
def test_a_volume_of_another_store_is_refused(s3_env: S3Server, tmp_path: Path) -> None:
    server, prefix = s3_env, f"{tmp_path.name}-taken"
    first, second = tmp_path / "first", tmp_path / "second"
    ok("store", "init", str(first))
    ok("store", "init", str(second))
    assert records(add_s3(first, "cloud", server, prefix))[0]["packs"] == 0
    config = (second / "config.toml").read_bytes()
    ran = add_s3(second, "cloud", server, prefix)
    assert ran.code == 24, ran.err
    assert "volume of another store" in ran.err
    assert (second / "config.toml").read_bytes() == config
    # ...and the same store cannot add it twice under another name.
    ran = add_s3(first, "again", server, prefix)
    assert ran.code == 18, ran.err


@service
def test_an_interrupted_add_can_be_run_again(s3_env: S3Server, tmp_path: Path,
                                             make_tree: Any) -> None:
    """A descriptor this store wrote, without the config entry that would follow it, is
    taken over: the add resumes instead of refusing its own half-done volume, and sends
    only what is not there yet."""
    server, prefix = s3_env, f"{tmp_path.name}-resume"
    store, work = tmp_path / "store", tmp_path / "work"
    ok("store", "init", str(store))
    make_tree(work, {"a.txt": "resumed\n"})
    ok("--store", str(store), "init", str(work), "-c", "docs")
    ok("-C", str(work), "commit", "-m", "one")
    assert records(add_s3(store, "cloud", server, prefix))[0]["packs"] == len(local_packs(store))
    config = store / "config.toml"
    config.write_text(config.read_text().split("[volumes.cloud]")[0])
    # Forget which packs the index saw go up (as a crash before its batch was recorded).
    ok("--store", str(store), "index", "rebuild")
    again = records(add_s3(store, "cloud", server, prefix))
    assert again[0]["type"] == "volume_add" and again[0]["packs"] == 0
    shutil.rmtree(store / "volumes" / "default" / "packs")
    ok("--store", str(store), "clone", "docs", str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "a.txt").read_text() == "resumed\n"


def test_an_unreachable_endpoint_is_a_clear_error(env: dict[str, str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = tmp_path / "store"
    ok("store", "init", str(store))
    config = (store / "config.toml").read_bytes()
    ran = vst_run("--store", str(store), "volume", "add", "cloud", "s3://bucket/p",
                  "--endpoint-url", f"http://127.0.0.1:{free_port()}", "--region", REGION)
    assert ran.code == 20, ran.err
    assert ran.err.startswith("vst: error: ") and "cannot reach" in ran.err
    assert "Traceback" not in ran.err
    assert (store / "config.toml").read_bytes() == config


@service
def test_a_store_with_an_unreachable_volume_opens_and_lists_it(s3_env: S3Server,
                                                               tmp_path: Path) -> None:
    server, prefix = s3_env, f"{tmp_path.name}-gone"
    store = tmp_path / "store"
    ok("store", "init", str(store))
    assert add_s3(store, "cloud", server, prefix).code == 0
    config = store / "config.toml"
    dead = f"http://127.0.0.1:{free_port()}"
    config.write_text(config.read_text().replace(server.endpoint_url, dead))
    ok("--store", str(store), "collection", "list")
    listed = {r["name"]: r for r in records(vst_run("--store", str(store), "--json",
                                                    "volume", "list"))}
    assert listed["default"]["reachable"] is True
    cloud = listed["cloud"]
    assert cloud["reachable"] is False and cloud["packs"] is None
    assert cloud["endpoint_url"] == dead and "cannot reach" in cloud["problem"]
    human = ok("--store", str(store), "volume", "list")
    assert "\tunreachable\t" in human


def test_a_local_volume_is_added_and_checked(env: dict[str, str], tmp_path: Path,
                                             make_tree: Any) -> None:
    store, work, disk = tmp_path / "store", tmp_path / "work", tmp_path / "disk"
    ok("store", "init", str(store))
    make_tree(work, {"a.txt": "hello\n"})
    ok("--store", str(store), "init", str(work), "-c", "docs")
    ok("-C", str(work), "commit", "-m", "one")
    [added] = records(vst_run("--store", str(store), "--json", "volume", "add", "disk",
                              str(disk)))
    assert added["kind"] == "local" and added["url"] == str(disk) and added["packs"] >= 1
    assert (disk / "volume.toml").is_file()
    assert (disk / "meta" / "refs" / "docs").read_bytes() == (store / "refs" / "docs").read_bytes()
    assert (disk / "meta" / "config.toml").read_bytes() == (store / "config.toml").read_bytes()
    held = {p.relative_to(disk) for p in (disk / "packs").rglob("*") if p.is_file()}
    assert {str(p) for p in held} == local_packs(store)

    for args, code in ((["disk", str(tmp_path / "other")], 18),  # the name is taken
                       (["bad/name", str(tmp_path / "x")], 2),
                       (["x", str(tmp_path / "no" / "such" / "dir")], 20),
                       (["x", str(disk), "--region", "eu"], 2),
                       (["x", "ftp://host/dir"], 2)):
        ran = vst_run("--store", str(store), "volume", "add", *args)
        assert ran.code == code, (args, ran.err)
