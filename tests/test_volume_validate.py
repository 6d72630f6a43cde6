"""`vst volume validate`: every check passes on an honest local volume and on SeaweedFS, and
each way a backend can lie about its promises is caught by some check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import vst_run
from s3server import REGION, S3Server

from vst.errors import NotFound
from vst.fsio import read_file
from vst.porcelain.volume import Check, validate_backend
from vst.remotes.local import LocalVolume
from vst.remotes.s3 import S3Volume
from vst.remotes.volume import Volume, VolumeInfo

CHECKS = ["read-after-write", "overwrite", "conditional-write", "range-read", "list",
          "list-after-delete", "delete", "large-file"]
SMALL_BIG = 256 * 1024 + 3  # the store_file probe's size on local wrappers: quick


def failed(checks: list[Check]) -> dict[str, str]:
    return {check.name: check.reason for check in checks if not check.ok}


# -- honest backends ------------------------------------------------------------------------

def test_all_checks_pass_on_a_local_volume(tmp_path: Path) -> None:
    volume = LocalVolume(str(tmp_path))
    checks = validate_backend(volume)
    assert [check.name for check in checks] == CHECKS
    assert failed(checks) == {}
    assert all(check.reason and "\n" not in check.reason for check in checks)
    assert list(volume.list("validate/")) == []  # cleaned up
    assert not (tmp_path / "validate").exists()


@pytest.mark.service
def test_all_checks_pass_on_seaweedfs(s3_server: S3Server, tmp_path: Path) -> None:
    # A low multipart threshold, so the large-file probe makes a real multipart upload.
    volume = S3Volume(f"s3://{s3_server.bucket}/{tmp_path.name}",
                      endpoint_url=s3_server.endpoint_url, region=REGION,
                      access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                      multipart_threshold=5 * 1024 * 1024)
    checks = validate_backend(volume)
    assert [check.name for check in checks] == CHECKS
    assert failed(checks) == {}
    assert any("5242897-byte" in check.reason for check in checks)  # threshold + 17
    assert list(volume.list("validate/")) == []


# -- lying backends -------------------------------------------------------------------------

class Honest(Volume):
    """Passes every call to a local volume; the liars below each break one promise."""

    def __init__(self, inner: Volume) -> None:
        self.inner = inner
        self.url = inner.url

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        return self.inner.load(name, offset, size)

    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        return self.inner.store(name, data, overwrite=overwrite)

    def store_file(self, name: str, path: str, *, take: bool = False) -> bool:
        return self.inner.store_file(name, path, take=take)

    def size(self, name: str) -> int:
        return self.inner.size(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def info(self) -> VolumeInfo:
        return self.inner.info()


class IgnoresConditional(Honest):
    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        return self.inner.store(name, data, overwrite=True)


class StaleAfterOverwrite(Honest):
    """Serves the first version written under a name (an eventually consistent cache)."""

    def __init__(self, inner: Volume) -> None:
        super().__init__(inner)
        self.first: dict[str, bytes] = {}

    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        self.first.setdefault(name, bytes(data))
        return self.inner.store(name, data, overwrite=overwrite)

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        data = self.inner.load(name, offset, size)
        old = self.first.get(name)
        return data if old is None else old[offset:None if size is None else offset + size]

    def delete(self, name: str) -> None:
        self.first.pop(name, None)
        self.inner.delete(name)


class IgnoresRanges(Honest):
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        return self.inner.load(name)


class Truncates(Honest):
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        data = self.inner.load(name, offset, size)
        return data[:len(data) // 2] if offset == 0 and size is None else data


class ListOmits(Honest):
    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(self.inner.list(prefix))[1:])


class ListShowsDeleted(Honest):
    def __init__(self, inner: Volume) -> None:
        super().__init__(inner)
        self.deleted: set[str] = set()

    def delete(self, name: str) -> None:
        self.deleted.add(name)
        self.inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[str]:
        names = set(self.inner.list(prefix))
        return iter(names | {name for name in self.deleted if name.startswith(prefix)})


class DeleteDoesNothing(Honest):
    def delete(self, name: str) -> None:
        pass


class LoadAfterDelete(Honest):
    """Deletes, but loads keep being served from a cache of what was read."""

    def __init__(self, inner: Volume) -> None:
        super().__init__(inner)
        self.cache: dict[str, bytes] = {}

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        try:
            self.cache[name] = self.inner.load(name)
        except NotFound:
            if name not in self.cache:
                raise
        data = self.cache[name]
        return data[offset:None if size is None else offset + size]


class StoreFileTruncates(Honest):
    def store_file(self, name: str, path: str, *, take: bool = False) -> bool:
        return self.inner.store(name, read_file(path)[:-1], overwrite=False)


LIARS: dict[type[Honest], str] = {
    IgnoresConditional: "conditional-write", StaleAfterOverwrite: "overwrite",
    IgnoresRanges: "range-read", Truncates: "read-after-write", ListOmits: "list",
    ListShowsDeleted: "list-after-delete", DeleteDoesNothing: "delete",
    LoadAfterDelete: "delete", StoreFileTruncates: "large-file",
}


def test_the_honest_wrapper_passes(tmp_path: Path) -> None:
    assert failed(validate_backend(Honest(LocalVolume(str(tmp_path))),
                                   big_size=SMALL_BIG)) == {}


@pytest.mark.parametrize("liar", list(LIARS), ids=lambda liar: liar.__name__)
def test_each_lying_mode_is_caught_by_its_check(liar: type[Honest], tmp_path: Path) -> None:
    problems = failed(validate_backend(liar(LocalVolume(str(tmp_path))), big_size=SMALL_BIG))
    assert LIARS[liar] in problems, problems
    assert all(reason and "\n" not in reason for reason in problems.values())


def test_lying_modes_detected_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    detected = 0
    for liar in LIARS:
        root = tmp_path / liar.__name__
        root.mkdir()
        if failed(validate_backend(liar(LocalVolume(str(root))), big_size=SMALL_BIG)):
            detected += 1
    with capsys.disabled():
        print(f"\nlying modes detected: {detected}/{len(LIARS)}")
    assert detected == len(LIARS) == 9


# -- the command --------------------------------------------------------------------------

def test_cli_validates_a_configured_volume(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert vst_run("store", "init", str(store)).code == 0
    ran = vst_run("--store", str(store), "volume", "validate", "default")
    assert ran.code == 0, ran.err
    lines = ran.out.decode().splitlines()
    assert lines == [f"{name}\tok" for name in CHECKS]
    assert "8 checks, all passed" in ran.err

    ran = vst_run("--store", str(store), "--json", "volume", "validate", "default")
    assert ran.code == 0, ran.err
    records = [json.loads(line) for line in ran.out.decode().splitlines()]
    assert [r["check"] for r in records[:-1]] == CHECKS
    assert all(r["type"] == "volume_check" and r["volume"] == "default" and r["ok"] is True
               and r["reason"] for r in records[:-1])
    assert records[-1] == {"type": "volume_validate", "volume": "default", "checks": 8,
                           "failed": 0}
    assert not (store / "volumes" / "default" / "validate").exists()


def test_cli_exit_codes_for_unknown_and_unreachable_volumes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert vst_run("store", "init", str(store)).code == 0
    ran = vst_run("--store", str(store), "volume", "validate", "nope")
    assert ran.code == 17 and "no volume named 'nope'" in ran.err
    assert vst_run("--store", str(store), "volume", "validate", "a/b").code == 2
    shutil.rmtree(store / "volumes" / "default")
    ran = vst_run("--store", str(store), "volume", "validate", "default")
    assert ran.code == 20, ran.err
    assert not (store / "volumes" / "default").exists()  # nothing was written
