"""Policies, scrub, repair and replicate with a real S3 volume (SeaweedFS on 127.0.0.1):
a damaged local copy is found, served from S3 and rewritten from it; an S3 endpoint that
is down costs a deficit, not a commit, and `vst replicate` makes it up once it is back."""

from __future__ import annotations

import os
import socket
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from clirun import Ran, vst_run
from s3server import REGION, S3Server

from vst.remotes.s3 import S3Volume

pytestmark = pytest.mark.service


@pytest.fixture
def setup(s3_server: S3Server, env: dict[str, str], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch, make_tree: Callable[..., Path]) -> tuple[Path, str]:
    """A working copy 'w' whose store has volumes default and s3 (a fresh prefix), and its
    collection following policy both = [default, s3]."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    store = tmp_path / "store"
    assert vst_run("store", "init", str(store)).code == 0
    prefix = f"policy-{uuid.uuid4().hex[:8]}"
    url = f"s3://{s3_server.bucket}/{prefix}"
    ran = vst_run("--store", str(store), "volume", "add", "s3", url, "--endpoint-url",
                  s3_server.endpoint_url, "--region", REGION)
    assert ran.code == 0, ran.err
    root = make_tree(tmp_path / "w", {"big.bin": os.urandom(2_500_000), "a.txt": "alpha\n",
                                      "sub": {"b.txt": "beta\n"}})
    ok(root, "init", "--store", str(store))
    ok(root, "policy", "set", "both", "--volumes", "default,s3")
    ok(root, "collection", "set-policy", "w", "both")
    return root, prefix


def vst(root: Path, *args: str) -> Ran:
    return vst_run("-C", str(root), *args)


def ok(root: Path, *args: str) -> str:
    ran = vst(root, *args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


def s3_volume(server: S3Server, prefix: str) -> S3Volume:
    return S3Volume(f"s3://{server.bucket}/{prefix}", endpoint_url=server.endpoint_url,
                    region=REGION, access_key=server.access_key, secret_key=server.secret_key)


def local_packs(root: Path) -> list[Path]:
    return sorted((root.parent / "store" / "volumes" / "default").glob("packs/*/*"))


def test_a_bad_local_copy_is_found_served_from_s3_and_repaired(
        setup: tuple[Path, str], s3_server: S3Server, tmp_path: Path) -> None:
    root, prefix = setup
    ok(root, "commit", "-m", "one")
    s3 = s3_volume(s3_server, prefix)
    packs = local_packs(root)
    assert {f"packs/{p.parent.name}/{p.name}" for p in packs} == set(s3.list("packs/"))
    victim = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x10
    victim.write_bytes(bytes(data))

    ran = vst(root, "scrub")
    assert ran.code == 1 and victim.name in ran.err and "'default'" in ran.err
    restored = tmp_path / "restored"
    ran = vst(root, "restore", "--to", str(restored), ".")
    assert ran.code == 0, ran.err
    assert (restored / "big.bin").read_bytes() == (root / "big.bin").read_bytes()
    assert "read from volume 's3' instead" in ran.err
    ran = vst(root, "repair")
    assert ran.code == 0, ran.err
    assert victim.read_bytes() != bytes(data)
    assert vst(root, "scrub").code == 0


def test_a_bad_s3_copy_is_found_by_scrub_and_repaired_from_the_local_one(
        setup: tuple[Path, str], s3_server: S3Server) -> None:
    root, prefix = setup
    ok(root, "commit", "-m", "one")
    s3 = s3_volume(s3_server, prefix)
    name = sorted(s3.list("packs/"))[0]
    good = s3.load(name)
    s3.store(name, good[:-100])  # truncated
    ran = vst(root, "scrub", "--volume", "s3")
    assert ran.code == 1 and name.rsplit("/", 1)[1] in ran.err
    assert vst(root, "repair", "--volume", "s3").code == 0
    assert s3.load(name) == good
    assert vst(root, "scrub", "--volume", "s3").code == 0


def test_an_s3_endpoint_that_is_down_costs_a_deficit_not_a_commit(
        setup: tuple[Path, str], s3_server: S3Server, tmp_path: Path) -> None:
    root, prefix = setup
    ok(root, "commit", "-m", "one")
    config_path = root.parent / "store" / "config.toml"
    config = tomllib.loads(config_path.read_text())
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config["volumes"]["s3"]["endpoint_url"] = closed
    config_path.write_text(tomli_w.dumps(config))

    (root / "new.txt").write_text("written while S3 was down\n")
    ran = vst(root, "commit", "-m", "two")
    assert ran.code == 0, ran.err
    assert "volume 's3' is unavailable" in ran.err and "run 'vst replicate'" in ran.err
    restored = tmp_path / "restored"
    assert vst(root, "restore", "--to", str(restored), ".").code == 0
    assert (restored / "new.txt").read_text() == "written while S3 was down\n"
    assert vst(root, "replicate").code == 3

    config["volumes"]["s3"]["endpoint_url"] = s3_server.endpoint_url
    config_path.write_text(tomli_w.dumps(config))
    ran = vst(root, "replicate")
    assert ran.code == 0, ran.err
    s3 = s3_volume(s3_server, prefix)
    assert {f"packs/{p.parent.name}/{p.name}" for p in local_packs(root)} == \
        set(s3.list("packs/"))
    head = ok(root, "rev-parse", "HEAD").strip()
    assert s3.load("meta/refs/w").decode().strip() == head
    assert "fewer than" not in ok(root, "status")


def test_reads_try_local_disks_before_s3(s3_server: S3Server, env: dict[str, str],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         make_tree: Callable[..., Path]) -> None:
    """An S3 volume named to sort before the local one is still read after it: a damaged
    S3 copy is never touched while the local copy is good."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    store = tmp_path / "store"
    assert vst_run("store", "init", str(store)).code == 0
    prefix = f"order-{uuid.uuid4().hex[:8]}"
    ran = vst_run("--store", str(store), "volume", "add", "archive",
                  f"s3://{s3_server.bucket}/{prefix}", "--endpoint-url",
                  s3_server.endpoint_url, "--region", REGION)
    assert ran.code == 0, ran.err
    root = make_tree(tmp_path / "w", {"big.bin": os.urandom(1_500_000)})
    ok(root, "init", "--store", str(store))
    ok(root, "commit", "-m", "one")
    s3 = s3_volume(s3_server, prefix)
    for name in s3.list("packs/"):
        s3.store(name, b"garbage")
    ran = vst(root, "restore", "--to", str(tmp_path / "out"), ".")
    assert ran.code == 0, ran.err
    assert "warning" not in ran.err  # the S3 copies were not read
    assert (tmp_path / "out" / "big.bin").read_bytes() == (root / "big.bin").read_bytes()
