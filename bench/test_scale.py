"""The store-size benchmark (`python -m bench.scale`) end to end at a tiny scale: 2,000
filler objects and a 200-file tree, a few seconds.

    .venv/bin/pytest -q bench/test_scale.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import datasets, scale, tools

OBJECTS = 2000
SCALE = 0.004  # 200 files


def test_both_stores_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    if tools.Vst(tmp_path / "probe").binary() is None:
        pytest.skip("vst: not installed")
    monkeypatch.setenv("VST_BENCH_DIR", str(tmp_path / "bench"))
    out = tmp_path / "scale.json"
    code = scale.main(["--objects", str(OBJECTS), "--scale", str(SCALE), "--json", str(out)])
    table = capsys.readouterr().out
    figures = json.loads(out.read_text())
    rows = {r["setup"]: r for r in figures["rows"]}
    assert [r for r in rows.values() if r["error"] or r["note"]] == []
    assert code == 0
    assert list(rows) == ["empty", "big"]
    empty, big = rows["empty"], rows["big"]
    files = max(1, round(datasets.TREE_FILES * SCALE))
    assert figures["files"] == files
    # The commit stored the tree's objects in both; the big store has the filler on top.
    assert empty["filler"] == 0 and empty["objects"] > 0
    assert big["filler"] == OBJECTS and big["objects"] == empty["objects"] + OBJECTS
    assert big["build_s"] > 0
    for r in rows.values():
        assert r["commit_wall_s"] > 0 and r["status_wall_s"] > 0
        assert r["commit_peak_rss"] > 10 << 20 and r["status_peak_rss"] > 10 << 20
        assert r["index_bytes"] > 0
    assert big["index_bytes"] > empty["index_bytes"]
    assert figures["rss_ratio"] == big["commit_peak_rss"] / empty["commit_peak_rss"]
    assert figures["met"] == (round(figures["rss_ratio"], 2) <= 1.0)
    assert figures["target"] == "<= 1.0x (flat)"
    assert figures["objects"] == OBJECTS
    lines = table.splitlines()
    assert any(line.split()[:2] == ["empty", str(empty["objects"])] for line in lines)
    assert any(line.split()[:2] == ["big", str(big["objects"])] for line in lines)
    assert f"building the big store: {OBJECTS} blobs in " in table
    assert "commit peak RSS, big / empty: " in table and "target <= 1.0x (flat)" in table
    assert list((tmp_path / "bench" / "runs").iterdir()) == [], "left behind"


def test_ratio_and_verdict() -> None:
    rows = [scale.Row("empty", 0, commit_peak_rss=100 << 20),
            scale.Row("big", 5, commit_peak_rss=103 << 20)]
    assert scale.ratio(rows) == pytest.approx(1.03)
    assert scale.met(scale.ratio(rows)) is False
    assert scale.met(1.004) is True  # a few pages of noise
    assert scale.ratio([rows[0]]) is None and scale.met(None) is None
    rows[1].error = "vst commit failed"
    assert scale.ratio(rows) is None


def test_build_store_counts(tmp_path: Path) -> None:
    seconds = scale.build_store(tmp_path / "store", 300)
    assert seconds > 0
    assert scale.index_objects(tmp_path / "store") == 300
    assert os.path.isfile(tmp_path / "store" / "collections" / f"{scale.FILLER}.toml")
