"""What only the S3 backend has: error translation, multipart uploads, paginated listings,
URL parsing and the lazy import of boto3. The shared behaviour is in test_volume_contract.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3server import REGION, S3Server

from vst.errors import AccessDenied, NotFound, UsageError, VolumeUnreachable
from vst.remotes.s3 import S3Volume, parse_s3_url

service = pytest.mark.service


def make_volume(server: S3Server, prefix: str, **kwargs: object) -> S3Volume:
    options: dict[str, object] = {"endpoint_url": server.endpoint_url, "region": REGION,
                                  "access_key": server.access_key,
                                  "secret_key": server.secret_key}
    options.update(kwargs)
    return S3Volume(f"s3://{server.bucket}/{prefix}", **options)  # type: ignore[arg-type]


@pytest.fixture
def prefix(tmp_path: Path) -> str:
    return tmp_path.name


@service
def test_wrong_credentials_are_access_denied(s3_server: S3Server, prefix: str) -> None:
    make_volume(s3_server, prefix).store("meta/x", b"x")
    wrong = make_volume(s3_server, prefix, secret_key="not-the-secret")
    for attempt in (lambda: wrong.store("meta/y", b"y"), lambda: wrong.load("meta/x"),
                    lambda: wrong.size("meta/x"), lambda: list(wrong.list("")),
                    wrong.info):
        with pytest.raises(AccessDenied, match="access denied"):
            attempt()


@service
def test_a_missing_bucket_is_unreachable_and_says_so(s3_server: S3Server) -> None:
    gone = S3Volume("s3://no-such-bucket-here/p", endpoint_url=s3_server.endpoint_url,
                    region=REGION, access_key=s3_server.access_key,
                    secret_key=s3_server.secret_key)
    # HEAD answers a bare 404 for a missing bucket: it must not pass for a missing name.
    for attempt in (gone.info, lambda: gone.size("packs/aa/1"),
                    lambda: gone.exists("packs/aa/1"), lambda: gone.load("packs/aa/1"),
                    lambda: gone.store("packs/aa/1", b"x", overwrite=False),
                    lambda: gone.delete("packs/aa/1")):
        with pytest.raises(VolumeUnreachable, match="bucket 'no-such-bucket-here' does not exist"):
            attempt()


def test_a_closed_port_is_unreachable_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = S3Volume("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}", region=REGION,
                      access_key="k", secret_key="s")
    started = time.monotonic()
    with pytest.raises(VolumeUnreachable, match="cannot reach"):
        closed.load("packs/aa/1")
    with pytest.raises(VolumeUnreachable):
        closed.store("packs/aa/1", b"x")
    assert time.monotonic() - started < 15  # botocore's few retries, not minutes


@service
def test_a_large_file_goes_up_in_parts_and_round_trips(s3_server: S3Server, prefix: str,
                                                       tmp_path: Path) -> None:
    threshold = 5 * 1024 * 1024  # S3's smallest part
    volume = make_volume(s3_server, prefix, multipart_threshold=threshold)
    data = os.urandom(2 * threshold + 12345)
    source = tmp_path / "spool"
    source.write_bytes(data)
    assert volume.store_file("packs/ab/big", str(source)) is True
    assert volume.size("packs/ab/big") == len(data)
    assert volume.load("packs/ab/big") == data
    assert volume.load("packs/ab/big", threshold - 10, 20) == data[threshold - 10:threshold + 10]
    # A multipart object's ETag ends in "-<parts>": proof it did not go up in one PUT.
    etag = volume._client.head_object(Bucket=s3_server.bucket, Key=f"{prefix}/packs/ab/big")["ETag"]
    assert etag.strip('"').endswith("-3")
    source.write_bytes(b"other bytes " * threshold)
    assert volume.store_file("packs/ab/big", str(source)) is False  # never overwrites
    assert volume.load("packs/ab/big") == data


@service
def test_listing_follows_pages(s3_server: S3Server, prefix: str) -> None:
    volume = make_volume(s3_server, prefix, list_page_size=3)
    names = [f"packs/{i:02x}/{i}" for i in range(11)] + ["meta/config.toml"]
    for name in names:
        volume.store(name, b"")
    assert sorted(volume.list("")) == sorted(names)
    assert sorted(volume.list("packs/")) == sorted(names[:-1])


@service
def test_names_are_relative_to_the_prefix(s3_server: S3Server, prefix: str) -> None:
    outer = make_volume(s3_server, prefix)
    inner = make_volume(s3_server, f"{prefix}/inner")
    inner.store("packs/aa/1", b"1")
    assert list(inner.list("")) == ["packs/aa/1"]
    assert list(outer.list("")) == ["inner/packs/aa/1"]
    assert outer.load("inner/packs/aa/1") == b"1"
    with pytest.raises(NotFound):
        inner.load("inner/packs/aa/1")


def test_urls_are_checked() -> None:
    assert parse_s3_url("s3://bkt/a/b/") == ("bkt", "a/b")
    assert parse_s3_url("s3://bkt") == ("bkt", "")
    for bad in ("bkt/a", "s3://", "s3://Bad_Bucket/a", "s3://bkt/../a", "s3://bkt/a//b"):
        with pytest.raises(UsageError):
            parse_s3_url(bad)


def test_boto3_is_imported_only_when_an_s3_volume_is_made() -> None:
    code = (
        "import sys\n"
        "import vst.remotes, vst.remotes.local, vst.remotes.s3\n"
        "from vst.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
        "print('loaded:', loaded, file=sys.stderr)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "Usage" in ran.stdout  # the help really ran
