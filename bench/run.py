"""Run vst, restic, borg and git side by side on the same data and print one table.

    python -m bench.run [--scale S] [--tools vst,restic,borg,git] [--datasets big,text,tree]
                        [--json OUT] [--chart PNG]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import chart, datasets, tools
from bench.datasets import Dataset

MB = 1_000_000  # throughput is in MB/s (10^6 bytes), sizes in MiB


@dataclass
class Result:
    dataset: str
    tool: str
    nbytes: int
    wall_s: float = 0.0
    peak_rss: int = 0
    repo_bytes: int = 0
    cold_cache: bool = False
    error: str = ""  # set instead of the figures when the tool is missing or failed

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.wall_s / MB


def repo_path(tool: tools.Tool, dataset: Dataset, work: Path) -> Path:
    return work / f"{tool.name}-{dataset.name}"


def prepare(tool: tools.Tool, dataset: Dataset, work: Path) -> bool:
    """Give `tool` a new, empty repository for `dataset`, then empty the page cache.

    Not timed. Returns whether the cache could be dropped (False: the run is warm).
    """
    clean_up(tool, dataset, work)
    tool.scratch.mkdir(parents=True)
    tool.init(repo_path(tool, dataset, work))
    tool.processes.clear()
    return tools.drop_caches()


def result_of(tool: tools.Tool, dataset: Dataset, cold_cache: bool) -> Result:
    """The figures of the backup that `tool` just ran."""
    # The tool's own processes only (git runs two), without this harness's overhead.
    wall = sum(p.wall_s for p in tool.processes)
    peak_rss = max(p.peak_rss for p in tool.processes)
    return Result(dataset.name, tool.name, dataset.nbytes, wall, peak_rss,
                  tools.disk_usage(tool.repo), cold_cache)


def measure(tool: tools.Tool, dataset: Dataset, work: Path) -> Result:
    """One cold backup of `dataset` into a new repository; a missing or failing tool gives a
    row that says so."""
    if tool.binary() is None:
        return Result(dataset.name, tool.name, dataset.nbytes, error=f"{tool.name}: not installed")
    try:
        cold_cache = prepare(tool, dataset, work)
        tool.backup(dataset.path)
        return result_of(tool, dataset, cold_cache)
    except tools.ToolError as e:
        return Result(dataset.name, tool.name, dataset.nbytes, error=str(e))
    finally:
        clean_up(tool, dataset, work)


def clean_up(tool: tools.Tool, dataset: Dataset, work: Path) -> None:
    """Free the disk: a full-scale run would otherwise keep about 8 GB of repositories."""
    shutil.rmtree(repo_path(tool, dataset, work), ignore_errors=True)
    shutil.rmtree(tool.scratch, ignore_errors=True)


def ratios(results: list[Result]) -> list[dict[str, object]]:
    """vst / peer on each data set: throughput > 1 means vst is faster; peak RSS and repo
    size > 1 mean vst uses more."""
    done = {(r.dataset, r.tool): r for r in results if not r.error}
    rows = []
    for (name, tool), peer in done.items():
        vst = done.get((name, "vst"))
        if vst and tool != "vst":
            rows.append({"dataset": name, "peer": tool,
                         "throughput": vst.mb_per_s / peer.mb_per_s,
                         "peak_rss": vst.peak_rss / peer.peak_rss,
                         "repo_size": vst.repo_bytes / peer.repo_bytes})
    return rows


def disk_write_bytes(scale: float) -> int:
    # Below ~64 MiB the figure measures fsync latency and the page cache, not the disk.
    return max(64 << 20, round((1 << 30) * scale))


def report(summary: dict, results: list[Result]) -> str:
    """The human-readable table."""
    lines = [
        f"vst side-by-side benchmark, scale {summary['scale']:g}, "
        + ("cold cache (page cache dropped before each run)" if summary["cold_cache"]
           else "warm cache (could not drop the page cache)"),
        "tools: " + "; ".join(summary["versions"].values()),
        f"disk: new {summary['disk_write_bytes'] >> 20} MiB file, write + fsync: "
        f"{summary['disk_write_mb_s']:.1f} MB/s",
        "",
        f"{'dataset':<8} {'MB':>8}  {'tool':<7} {'wall s':>8} {'MB/s':>8} "
        f"{'peak RSS MiB':>13} {'repo MiB':>9}",
    ]
    for r in results:
        head = f"{r.dataset:<8} {r.nbytes / MB:>8.1f}  {r.tool:<7}"
        if r.error:
            lines.append(f"{head} {r.error}")
        else:
            lines.append(f"{head} {r.wall_s:>8.2f} {r.mb_per_s:>8.1f} "
                         f"{r.peak_rss / (1 << 20):>13.1f} {r.repo_bytes / (1 << 20):>9.1f}")
    if summary["ratios"]:
        lines += ["", "vst / peer (throughput > 1: vst faster; RSS and repo < 1: vst smaller):"]
        lines += [f"{q['dataset']:<8} vst/{q['peer']:<7} throughput {q['throughput']:.2f}x  "
                  f"peak RSS {q['peak_rss']:.2f}x  repo {q['repo_size']:.2f}x"
                  for q in summary["ratios"]]
    if summary["startup_ms"]:
        lines += ["", "vst startup, best of 10: " + ", ".join(
            f"{label} {ms:.1f} ms" if isinstance(ms, float) else f"{label}: {ms}"
            for label, ms in summary["startup_ms"].items())]
    return "\n".join(lines)


def throughput_groups(results: list[Result]) -> list[tuple[str, list[tuple[str, float | None]]]]:
    """MB/s per tool per data set, in the table's order, for `chart.bar_chart`; None where the
    tool is missing or failed."""
    groups: dict[str, list[tuple[str, float | None]]] = {}
    for r in results:
        groups.setdefault(r.dataset, []).append((r.tool, None if r.error else r.mb_per_s))
    return list(groups.items())


def chart_title(summary: dict) -> str:
    cache = "cold cache" if summary["cold_cache"] else "warm cache"
    return f"First backup throughput, scale {summary['scale']:g}, {cache}"


def _names(text: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = set(names) - set(allowed)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(sorted(unknown))}")
    return names


def data_arguments(parser: argparse.ArgumentParser, default: Sequence[str]) -> None:
    """--scale, --datasets and --json, which every benchmark takes alike."""
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every data set size and file count (e.g. 0.01)")
    parser.add_argument("--datasets", default=",".join(default),
                        type=lambda s: _names(s, datasets.NAMES))
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    data_arguments(parser, datasets.NAMES)
    parser.add_argument("--tools", default=",".join(tools.BY_NAME),
                        type=lambda s: _names(s, list(tools.BY_NAME)))
    parser.add_argument("--chart", type=Path, metavar="PNG",
                        help="also write a bar chart of MB/s per tool and data set here")
    args = parser.parse_args(argv)

    work = datasets.bench_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    data = [datasets.ensure(name, args.scale) for name in args.datasets]
    runners: list[tools.Tool] = [tools.BY_NAME[name](work / f"{name}-scratch") for name in args.tools]

    cold_cache = tools.drop_caches()  # probed once too, for a run where every tool failed
    results = []
    for dataset in data:
        for tool in runners:
            print(f"{tool.name} on {dataset.name} ...", file=sys.stderr, flush=True)
            results.append(measure(tool, dataset, work))
    disk_bytes = disk_write_bytes(args.scale)
    summary = {
        "scale": args.scale,
        "cold_cache": cold_cache and all(r.cold_cache for r in results if not r.error),
        "versions": {t.name: _version(t) for t in runners},
        "disk_write_bytes": disk_bytes,
        "disk_write_mb_s": tools.disk_write_rate(work, disk_bytes) / MB,
        "ratios": ratios(results),
        "startup_ms": _startup_ms(runners),
    }
    print(report(summary, results))
    if args.json:
        rows = [{**asdict(r), "mb_per_s": None if r.error else r.mb_per_s} for r in results]
        args.json.write_text(json.dumps({**summary, "results": rows}, indent=2) + "\n")
    if args.chart:
        args.chart.write_bytes(chart.bar_chart(throughput_groups(results), chart_title(summary),
                                               "MB/s"))
    return 1 if any(r.error and "not installed" not in r.error for r in results) else 0


def _startup_ms(runners: list[tools.Tool]) -> dict[str, float | str]:
    vst = next((t for t in runners if isinstance(t, tools.Vst) and t.binary()), None)
    if vst is None:
        return {}
    try:
        return dict(vst.startup_ms())
    except tools.ToolError as e:
        return {"error": str(e)}


def _version(tool: tools.Tool) -> str:
    if tool.binary() is None:
        return f"{tool.name}: not installed"
    try:
        return tool.version()
    except tools.ToolError as e:
        return str(e)


if __name__ == "__main__":
    sys.exit(main())
