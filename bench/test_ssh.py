"""The SSH benchmark (`python -m bench.ssh`) end to end at a tiny scale against a real sshd,
and one pytest-benchmark entry per data set. About 20 s at the default scale.

    .venv/bin/pytest -q bench/test_ssh.py
    VST_BENCH_SCALE=1 .venv/bin/pytest bench/test_ssh.py --benchmark-only   # full scale

Each entry's own time is of the whole comparison (set-up included, four timed commands);
the figures (MB/s, ssh/local, round trips, peak RSS) are in its extra_info. Needs OpenSSH's
sshd, ssh and ssh-keygen: skipped without them, failed when VST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import datasets, ssh, tools

SCALE = float(os.environ.get("VST_BENCH_SCALE", "0.002"))
sshserver = ssh._sshserver()


def need_sshd(tmp: Path) -> None:
    message = ""
    if sshserver.find_sshd() is None:
        message = "OpenSSH's sshd, ssh or ssh-keygen is not installed"
    elif tools.Vst(tmp / "probe").binary() is None:
        message = "vst: not installed"
    if message and os.environ.get("VST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and VST_REQUIRE_SERVICES=1", pytrace=False)
    if message:
        pytest.skip(message)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("sshd")
    need_sshd(base)
    server = sshserver.start_sshd(base)
    try:
        yield server
    finally:
        server.stop()


def test_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    need_sshd(tmp_path)
    monkeypatch.setenv("VST_BENCH_DIR", str(tmp_path / "bench"))
    out = tmp_path / "ssh.json"
    code = ssh.main(["--scale", str(SCALE), "--json", str(out)])
    table = capsys.readouterr().out
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert [r for r in rows if r["error"] or r["note"]] == []
    assert code == 0
    assert {(r["dataset"], r["action"], r["via"]) for r in rows} == \
        {(d, a, v) for d in ssh.DATASETS for a in ssh.ACTIONS for v in ssh.VIAS}
    assert all(r["wall_s"] > 0 and r["peak_rss"] > 0 and r["mb_per_s"] for r in rows)
    for r in rows:
        if r["via"] == "ssh":
            # The commit asked the server at least for the collection, a pack and the ref.
            assert r["round_trips"] >= 3
            assert r["server_cpu_s"] > 0 and r["ratio"] > 0 and r["target"]
        else:
            assert r["round_trips"] is None and r["server_cpu_s"] is None
            assert r["ratio"] is None and not r["target"]
    tree = figures["datasets"]["tree"]
    assert tree["files"] == max(1, round(datasets.TREE_FILES * SCALE))
    assert "cipher " in figures["ssh"] and "unknown" not in figures["ssh"]
    assert "round trips of one first commit over SSH" in table and "targets met:" in table
    assert f"tree     {tree['files']} files: " in table
    assert list((tmp_path / "bench" / "runs").iterdir()) == [], "left behind"


def test_ratios_targets_and_the_table() -> None:
    rows = [ssh.Row("big", "commit", "local", "cold", 200 * ssh.MB, wall_s=1.0),
            ssh.Row("big", "commit", "ssh", "cold", 200 * ssh.MB, wall_s=1.25,
                    server_cpu_s=0.5, round_trips=40, files=1),
            ssh.Row("big", "clone", "local", "cold", 200 * ssh.MB, wall_s=1.0),
            ssh.Row("big", "clone", "ssh", "cold", 200 * ssh.MB, wall_s=2.0, round_trips=9),
            ssh.Row("tree", "commit", "local", "cold", 100, error="vst: exit 4: boom"),
            ssh.Row("tree", "commit", "ssh", "cold", 100, wall_s=1.0, round_trips=7)]
    ssh.judge(rows)
    assert [r.ratio for r in rows] == [None, pytest.approx(0.8), None, pytest.approx(0.5),
                                       None, None]
    assert [r.met for r in rows] == [None, True, None, False, None, None]
    summary = {"scale": 1.0, "cold_cache": True, "version": "vst 0", "ssh": "OpenSSH",
               "cpus": 2}
    table = ssh.report(summary, rows)
    assert ">= 0.7x local: met" in table and ">= 0.7x local: NOT MET" in table
    assert "tree     commit  local  vst: exit 4: boom" in table
    assert "big      1 files: 40 round trips" in table
    assert "tree     0 files: 7 round trips" in table
    assert table.endswith("targets met: 1 of 2")


def test_the_json_record_is_found_among_other_lines() -> None:
    out = ('{"type": "progress", "bytes_done": 1}\nnot json\n'
           '{"type": "commit", "id": "ab", "round_trips": 5}\n')
    assert ssh._record(out, "commit") == {"type": "commit", "id": "ab", "round_trips": 5}
    with pytest.raises(tools.ToolError, match="no 'clone' JSON record"):
        ssh._record(out, "clone")


@pytest.mark.parametrize("dataset_name", ssh.DATASETS)
def test_ssh_against_local(benchmark: Any, sshd: Any, dataset_name: str) -> None:
    work = datasets.bench_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ssh-", dir=work)).resolve()
    try:
        bench = ssh.Bench(datasets.ensure(dataset_name, SCALE), folder, sshd)
        rows = benchmark.pedantic(bench.run, rounds=1, iterations=1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ssh.judge(rows)
    benchmark.extra_info.update(dataset_bytes=bench.dataset.nbytes, files=bench.files,
                                cold_cache=bench.dropped)
    for r in rows:
        label = f"{r.action} {r.via}"
        benchmark.extra_info.update({f"{label} MB/s": r.mb_per_s, f"{label} wall s": r.wall_s,
                                     f"{label} peak RSS MiB": r.peak_rss / (1 << 20)})
        if r.via == "ssh":
            benchmark.extra_info.update({f"{r.action} ssh/local": r.ratio,
                                         f"{label} round trips": r.round_trips,
                                         f"{label} server CPU s": r.server_cpu_s})
    assert [r.error for r in rows if r.error] == []
    assert all(r.round_trips for r in rows if r.via == "ssh")
