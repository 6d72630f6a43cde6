"""The volume contract, written once and run against every backend.

Every behaviour vst relies on from a volume (vst/remotes/volume.py) is checked here; a new
backend (S3, SSH) joins by adding a factory to BACKENDS, and must pass unchanged.

A factory gets a fresh directory and the test's request, so a backend that needs a service
can ask for its fixture (``request.getfixturevalue``); UNREACHABLE makes a volume of each
backend whose storage is not there (an unplugged disk, a bucket that does not exist).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vst.errors import NotFound, UsageError, VolumeUnreachable
from vst.remotes.local import LocalVolume
from vst.remotes.volume import Volume

Factory = Callable[[Path, pytest.FixtureRequest], Volume]


def s3_volume(root: Path, request: pytest.FixtureRequest, bucket: str | None = None) -> Volume:
    from vst.remotes.s3 import S3Volume

    server = request.getfixturevalue("s3_server")
    # One prefix per test (its tmp_path's unique name) in the session's shared bucket.
    return S3Volume(f"s3://{bucket or server.bucket}/{root.parent.name}",
                    endpoint_url=server.endpoint_url, region="us-east-1",
                    access_key=server.access_key, secret_key=server.secret_key)


BACKENDS: dict[str, Factory] = {
    "local": lambda root, request: LocalVolume(str(root)),
    "s3": s3_volume,
}

UNREACHABLE: dict[str, Factory] = {
    "local": lambda root, request: LocalVolume(str(root / "unplugged")),
    "s3": lambda root, request: s3_volume(root, request, bucket="no-such-bucket"),
}

NEEDS_SERVICE = {"s3"}


def _backend_params() -> list[object]:
    return [pytest.param(name, marks=[pytest.mark.service] if name in NEEDS_SERVICE else [])
            for name in sorted(BACKENDS)]


@pytest.fixture(params=_backend_params())
def volume(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Volume]:
    root = tmp_path / "volume"
    root.mkdir()
    yield BACKENDS[request.param](root, request)


@pytest.fixture(params=_backend_params())
def unreachable_volume(request: pytest.FixtureRequest, tmp_path: Path) -> Volume:
    return UNREACHABLE[request.param](tmp_path, request)


def test_store_then_load_whole_and_ranges(volume: Volume) -> None:
    data = os.urandom(10_000)
    assert volume.store("packs/ab/x", data) is True
    assert volume.load("packs/ab/x") == data
    assert volume.load("packs/ab/x", 100, 50) == data[100:150]
    assert volume.load("packs/ab/x", 9_990, 100) == data[9_990:]  # short only at the end
    assert volume.load("packs/ab/x", 20_000, 10) == b""
    assert volume.size("packs/ab/x") == len(data)
    assert volume.exists("packs/ab/x")


def test_store_overwrites_or_keeps(volume: Volume) -> None:
    volume.store("meta/refs/c", b"one")
    volume.store("meta/refs/c", b"two")
    assert volume.load("meta/refs/c") == b"two"
    assert volume.store("meta/refs/c", b"three", overwrite=False) is False
    assert volume.load("meta/refs/c") == b"two"


def test_store_file_copies_or_adopts(volume: Volume, tmp_path: Path) -> None:
    source = tmp_path / "spool"
    source.write_bytes(b"pack bytes")
    assert volume.store_file("packs/cd/y", str(source)) is True
    source.write_bytes(b"changed afterwards")  # a copy must not follow the source
    assert volume.load("packs/cd/y") == b"pack bytes"
    source.write_bytes(b"adopted")
    assert volume.store_file("packs/cd/z", str(source), take=True) is True
    assert volume.load("packs/cd/z") == b"adopted"
    assert volume.store_file("packs/cd/z", str(source), take=True) is False


def test_missing_names(volume: Volume) -> None:
    with pytest.raises(NotFound):
        volume.load("packs/00/missing")
    with pytest.raises(NotFound):
        volume.size("packs/00/missing")
    assert not volume.exists("packs/00/missing")
    volume.delete("packs/00/missing")  # deleting what is not there is not an error


def test_delete(volume: Volume) -> None:
    volume.store("packs/ef/w", b"x")
    volume.delete("packs/ef/w")
    assert not volume.exists("packs/ef/w")


def test_list_by_prefix_skips_temporaries(volume: Volume) -> None:
    for name in ("packs/aa/1", "packs/bb/2", "meta/config.toml"):
        volume.store(name, b"x")
    assert sorted(volume.list("packs/")) == ["packs/aa/1", "packs/bb/2"]
    assert sorted(volume.list("")) == ["meta/config.toml", "packs/aa/1", "packs/bb/2"]
    assert list(volume.list("nothing/")) == []


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", ".hidden", "a/./b", "a/../b",
                                  "", "a/", "sp ace"])
def test_names_are_checked(volume: Volume, name: str) -> None:
    with pytest.raises(UsageError):
        volume.store(name, b"x")
    with pytest.raises(UsageError):
        volume.load(name)


def test_info(volume: Volume) -> None:
    info = volume.info()
    assert info.url == volume.url
    assert info.free_bytes is None or info.free_bytes > 0


def test_an_unreachable_volume_says_so(unreachable_volume: Volume) -> None:
    gone = unreachable_volume
    with pytest.raises(VolumeUnreachable):
        gone.load("packs/aa/1")
    with pytest.raises(VolumeUnreachable):
        gone.store("packs/aa/1", b"x")
    with pytest.raises(VolumeUnreachable):
        list(gone.list("packs/"))
