"""The daily-loop harness (`python -m bench.workflow`) end to end at a tiny scale, plus its
1% change. Fast: a few seconds of data, well under a minute in all.

    .venv/bin/pytest -q bench/test_workflow.py

A peer that is not installed is left out of the run (its rows are not expected).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import datasets, workflow

SCALE = float(os.environ.get("VST_BENCH_SCALE", "0.002"))


def expected_rows(installed: list[str]) -> set[tuple[str, str, str, str, str]]:
    """(dataset, step, tool, command, cache) of every row a run with `installed` must make."""
    vst = [("first", "commit", "cold"), ("unchanged", "status", "cold"),
           ("unchanged", "status", "warm"), ("unchanged", "commit", "cold"),
           ("unchanged", "commit", "warm"), ("mutated", "commit", "cold"),
           ("restore", "clone", "cold"), ("restore", "restore --to", "cold")]
    per_tool = {
        "vst": vst, "vst-plain": vst,
        "restic": [("first", "backup", "cold"), ("unchanged", "backup", "cold"),
                   ("unchanged", "backup", "warm"), ("mutated", "backup", "cold"),
                   ("restore", "restore", "cold")],
        "borg": [("first", "create", "cold"), ("restore", "extract", "cold")],
        "git": [("first", "add + commit", "cold"), ("unchanged", "status", "cold"),
                ("unchanged", "status", "warm")],
    }
    return {(d, step, tool, action, cache) for d in datasets.NAMES for tool in installed
            for step, action, cache in per_tool[tool]}


def test_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A bench root of its own (the tiny data sets take a second to make): what the run
    # leaves behind is then plain to see, and a real run going on at the same time is safe.
    monkeypatch.setenv("VST_BENCH_DIR", str(tmp_path / "bench"))
    installed = [name for name, kind in workflow.TOOLS.items()
                 if kind(tmp_path / "probe").binary()]
    if "vst" not in installed:
        pytest.skip("vst: not installed")
    out = tmp_path / "workflow.json"
    code = workflow.main(["--scale", str(SCALE), "--tools", ",".join(installed), "--verify",
                          "--json", str(out)])
    table = capsys.readouterr().out
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert [r for r in rows if r["error"] or r["note"]] == []
    assert code == 0
    assert {(r["dataset"], r["step"], r["tool"], r["action"], r["cache"])
            for r in rows} == expected_rows(installed)
    assert all(r["wall_s"] > 0 and r["peak_rss"] > 0 for r in rows)
    for r in rows:
        if r["tool"] == "vst" and (r["step"] != "unchanged" or r["dataset"] == "tree"):
            assert r["target"] and (r["met"] is not None or "restic" not in installed), r
        if r["tool"] == "vst-plain":
            assert not r["target"] and r["met"] is None, r  # the targets are the encrypted's
    if "restic" in installed:
        # Every vst row has a restic row to compare with, at the same step and cache.
        assert len(figures["ratios"]) == sum(r["tool"] == "vst" for r in rows)
    # Every vst row beside its vst-plain row; the 10% target on first commit and restores.
    encryption = figures["encryption"]
    assert len(encryption) == sum(r["tool"] == "vst" for r in rows)
    for q in encryption:
        plain, encrypted = (next(r for r in rows if r["tool"] == tool and
                                 all(r[k] == q[k] for k in ("dataset", "step", "action",
                                                            "cache")))
                            for tool in ("vst-plain", "vst"))
        assert q["speed"] == pytest.approx(plain["wall_s"] / encrypted["wall_s"])
        assert (q["met"] is not None) == (q["step"] in ("first", "restore")), q
    assert "vst (encrypted) / vst-plain" in table
    assert figures["datasets"]["tree"]["files"] == max(1, round(datasets.TREE_FILES * SCALE))
    for name in datasets.NAMES:
        assert f"{name}: " in table
    assert "targets met:" in table
    assert list((tmp_path / "bench" / "runs").iterdir()) == [], "left behind"


def test_mutate_changes_one_percent_by_rename(tmp_path: Path) -> None:
    for name in ("big", "tree"):
        dataset = datasets.ensure(name, SCALE)
        wc = tmp_path / name
        files = workflow.link_copy(dataset.path, wc)
        before = {p: (wc / p).read_bytes() for p in workflow.listing(wc)}
        assert len(before) == files
        changed = workflow.mutate(wc, dataset)
        after = {p: (wc / p).read_bytes() for p in workflow.listing(wc)}
        assert {p: len(b) for p, b in after.items()} == {p: len(b) for p, b in before.items()}
        differing = sum(sum(x != y for x, y in zip(before[p], after[p], strict=True))
                        for p in before)
        # Random new bytes equal the old ones 1 time in 256.
        assert 0.9 * changed < differing <= changed
        assert changed >= 0.005 * dataset.nbytes if name == "big" else changed > 0
        # The data cache still holds the original bytes.
        root = dataset.path.parent if dataset.path.is_file() else dataset.path
        for rel in before:
            if after[rel] != before[rel]:
                assert (root / rel).read_bytes() == before[rel]
        assert not list(wc.rglob("*bench-tmp"))
