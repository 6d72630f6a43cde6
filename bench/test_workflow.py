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


@pytest.mark.parametrize("keep", [False, True], ids=["deleting", "keeping-to-the-end"])
def test_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    if keep:  # as a data set of many files does: nothing deleted before the end of its run
        monkeypatch.setattr(workflow, "MANY_FILES", 0)
    # A bench root of its own (the tiny data sets take a second to make): what the run
    # leaves behind is then plain to see, and a real run going on at the same time is safe.
    monkeypatch.setenv("VST_BENCH_DIR", str(tmp_path / "bench"))
    installed = [name for name, kind in workflow.TOOLS.items()
                 if kind(tmp_path / "probe").binary()]
    if "vst" not in installed:
        pytest.skip("vst: not installed")
    out = tmp_path / "workflow.json"
    code = workflow.main(["--scale", str(SCALE), "--tools", ",".join(installed), "--verify",
                          "--repeat", "2", "--json", str(out),
                          "--chart", str(tmp_path / "chart.png")])
    table = capsys.readouterr().out
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert [r for r in rows if r["error"] or r["note"]] == []
    assert code == 0
    assert {(r["dataset"], r["step"], r["tool"], r["action"], r["cache"])
            for r in rows} == expected_rows(installed)
    assert all(r["wall_s"] > 0 and r["peak_rss"] > 0 for r in rows)
    for r in rows:  # --repeat 2: first backups (not git's) and restores, the fastest run
        repeated = r["step"] == "restore" or (r["step"] == "first" and r["tool"] != "git")
        assert len(r["runs"]) == (2 if repeated else 1), r
        assert r["wall_s"] == min(r["runs"]), r
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    for r in rows:
        if r["tool"] == "vst":
            assert r["target"] and (r["met"] is not None or "restic" not in installed), r
        assert (r["repo_bytes"] > 0) == (r["step"] == "first"), r  # each repository's size
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


def test_targets_are_the_performance_issues() -> None:
    def row(dataset: str, step: str, tool: str, wall_s: float, repo: int = 0,
            cache: str = "cold") -> workflow.Row:
        return workflow.Row(dataset, step, tool, "x", cache, 1000 * workflow.MB, wall_s,
                            repo_bytes=repo)

    rows = [row("big", "first", "vst", 2.0), row("big", "first", "restic", 5.0),
            row("big", "first", "borg", 4.0),
            row("text", "first", "vst", 1.0, repo=108), row("text", "first", "restic", 3.0,
                                                            repo=100),
            row("text", "first", "borg", 2.0, repo=200),
            row("tree", "first", "vst", 2.0), row("tree", "first", "restic", 4.0),
            row("tree", "first", "borg", 9.0),
            row("big", "unchanged", "vst", 0.31), row("tree", "unchanged", "vst", 0.69),
            row("tree", "mutated", "vst", 1.0), row("tree", "mutated", "restic", 2.1),
            row("tree", "restore", "vst", 2.0), row("tree", "restore", "restic", 3.9)]
    workflow.judge(rows, disk_mb_s=1000.0)
    verdicts = {(r.dataset, r.step): (r.target, r.met) for r in rows if r.tool == "vst"}
    # 500 MB/s: under 90% of the disk (900), but over 3x the best peer, borg (750)? No.
    assert verdicts["big", "first"] == (">= 3x borg (750 MB/s)", False)
    # 1000 MB/s is 2x borg, the best peer; the repository is within 10% of restic's.
    assert verdicts["text", "first"] == (">= 2x borg MB/s, repo <= 1.1x restic's", True)
    assert verdicts["tree", "first"] == (">= 2x restic MB/s", True)
    assert verdicts["big", "unchanged"] == ("<= 0.3 s", False)
    assert verdicts["tree", "unchanged"] == ("<= 0.7 s", True)
    assert verdicts["tree", "mutated"] == ("<= 0.5x restic time", True)
    assert verdicts["tree", "restore"] == (">= 2x restic MB/s", False)
    # With a slow disk the disk's share is the lower bar; a bigger repository fails the text.
    rows[0].met = rows[3].met = None
    rows[3].repo_bytes = 111
    workflow.judge(rows, disk_mb_s=500.0)
    assert (rows[0].target, rows[0].met) == (">= 90% disk (450 MB/s)", True)
    assert rows[3].met is False

