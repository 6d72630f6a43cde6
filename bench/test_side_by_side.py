"""pytest-benchmark entry point: the measurements of `python -m bench.run`, one round each.

    pytest bench/ --benchmark-only                      # full scale, as `make bench`
    VST_BENCH_SCALE=0.01 pytest bench/ --benchmark-only # a quick run

pytest-benchmark's own time includes this harness's overhead (a few ms per command); the
figures that compare the tools are in each entry's extra_info.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest

from bench import datasets, run, tools

SCALE = float(os.environ.get("VST_BENCH_SCALE", "1"))
# Peers first: vst's entry reports its ratios to the peers measured before it.
ORDER = [*(peer.name for peer in tools.PEERS), "vst"]
_results: dict[tuple[str, str], run.Result] = {}
ToolT = TypeVar("ToolT", bound=tools.Tool)


@cache
def _dataset(name: str) -> datasets.Dataset:
    return datasets.ensure(name, SCALE)


@pytest.fixture(scope="session")
def work() -> Path:
    path = datasets.bench_root() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _runner(kind: type[ToolT], work: Path) -> ToolT:
    tool = kind(work / f"{kind.name}-scratch")
    if tool.binary() is None:
        pytest.skip(f"{kind.name}: not installed")
    return tool


@pytest.mark.parametrize(("dataset_name", "tool_name"),
                         [(d, t) for d in datasets.NAMES for t in ORDER],
                         ids=[f"{d}-{t}" for d in datasets.NAMES for t in ORDER])
def test_backup(benchmark, work: Path, dataset_name: str, tool_name: str) -> None:
    tool = _runner(tools.BY_NAME[tool_name], work)
    dataset = _dataset(dataset_name)
    cold_cache = []
    try:
        benchmark.pedantic(tool.backup, args=(dataset.path,), rounds=1, iterations=1,
                           setup=lambda: cold_cache.append(run.prepare(tool, dataset, work)))
        result = run.result_of(tool, dataset, cold_cache[-1])
    finally:
        run.clean_up(tool, dataset, work)
    _results[dataset_name, tool_name] = result
    benchmark.extra_info.update(
        dataset_bytes=result.nbytes, wall_s=result.wall_s, mb_per_s=result.mb_per_s,
        peak_rss_mib=result.peak_rss / (1 << 20), repo_mib=result.repo_bytes / (1 << 20),
        cold_cache=result.cold_cache)
    for ratio in run.ratios(list(_results.values())):
        if tool_name == "vst" and ratio["dataset"] == dataset_name:
            for figure in ("throughput", "peak_rss", "repo_size"):
                benchmark.extra_info[f"vst/{ratio['peer']} {figure}"] = ratio[figure]


def test_vst_startup(benchmark, work: Path) -> None:
    vst = _runner(tools.Vst, work)
    best_ms = benchmark.pedantic(vst.startup_ms, rounds=1, iterations=1)
    benchmark.extra_info.update({f"{label} best of 10 ms": ms for label, ms in best_ms.items()})


def test_disk_fsync_write(benchmark, work: Path) -> None:
    nbytes = run.disk_write_bytes(SCALE)
    rate = benchmark.pedantic(tools.disk_write_rate, args=(work, nbytes), rounds=1, iterations=1)
    benchmark.extra_info.update(bytes=nbytes, mb_per_s=rate / run.MB)
