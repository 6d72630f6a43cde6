"""Does a commit's memory stay flat as the store grows? (issue 7)

    python -m bench.scale [--objects N] [--scale S] [--json OUT]

Two new stores: (a) empty, (b) holding N small unique blobs (default 1,000,000), written
through vst's own API with one writer into one unencrypted collection. Into each, the same
working copy (the "tree" data set at the given scale, hard-linked) is committed as a new
encrypted collection (the default: `vst --store S init DIR -c NAME`, then `vst -C DIR commit`),
then `vst status` is run in it; both timed from a cold page cache, with their peak RSS. Issue
7's target: (b)'s commit peak RSS at most (a)'s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import datasets, run, tools, workflow

MiB = 1 << 20
COLLECTION = "bench"
FILLER = "filler"  # the unencrypted collection the N blobs are written into
DEFAULT_OBJECTS = 1_000_000
FLAT = 1.0  # issue 7: commit peak RSS into the big store <= this many times the empty one's


@dataclass
class Row:
    setup: str  # "empty" or "big"
    filler: int  # blobs written into the store before the commit
    objects: int = 0  # objects in the store's index after the commit and status
    build_s: float = 0.0  # writing the filler blobs (untimed by the commit's figures)
    commit_wall_s: float = 0.0
    commit_peak_rss: int = 0
    status_wall_s: float = 0.0
    status_peak_rss: int = 0
    index_bytes: int = 0  # index.sqlite (and its -wal, if one was left) after the status
    error: str = ""
    note: str = ""  # something unexpected in what vst did; the figures still stand


def build_store(path: Path, objects: int) -> float:
    """A new store at `path` holding `objects` small unique blobs in the unencrypted
    collection FILLER (none for 0); returns the seconds it took to write them."""
    from vst.objects.types import ObjectType
    from vst.store import Store

    store = Store.init(str(path))
    try:
        if not objects:
            return 0.0
        store.create_collection(FILLER)
        start = time.perf_counter()
        # One writer: its packs are indexed in batches, as one big first commit's would be.
        with store.writer(FILLER) as writer:
            for n in range(objects):
                writer.put(ObjectType.BLOB, b"vst bench scale filler %d\n" % n)
        return time.perf_counter() - start
    finally:
        store.close()


def index_objects(store: Path) -> int:
    from vst.objects.index import ObjectIndex

    index = ObjectIndex(str(store / "index.sqlite"), read_only=True)
    try:
        return index.count()[0]
    finally:
        index.close()


def index_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.glob("index.sqlite*")
               if p.name in ("index.sqlite", "index.sqlite-wal"))


def measure(setup: str, filler: int, dataset: datasets.Dataset, folder: Path,
            log: bool = True) -> tuple[Row, bool]:
    """Build the store, make the working copy (untimed), then time a cold `commit` and a
    cold `status`. Returns the row and whether both really started from a cold cache."""
    row = Row(setup, filler)
    store, wc = folder / "store", folder / "wc"
    vst = tools.Vst(folder / "scratch")  # its own config folder: the key is made untimed
    vst.scratch.mkdir(parents=True)
    vst.repo = store
    dropped = True
    try:
        if log:
            print(f"{setup}: writing {filler} objects ...", file=sys.stderr, flush=True)
        row.build_s = build_store(store, filler)
        workflow.link_copy(dataset.path, wc)
        vst.init_working_copy(wc, COLLECTION)
        if "keyring =" not in (store / "collections" / f"{COLLECTION}.toml").read_text():
            raise tools.ToolError("vst init made an unencrypted collection")
        if log:
            print(f"{setup}: commit ...", file=sys.stderr, flush=True)
        dropped = tools.drop_caches()
        vst.processes.clear()
        vst.commit(wc)
        row.commit_wall_s, row.commit_peak_rss = _figures(vst)
        if not vst.last_id:
            row.note = "vst commit made no commit"
        if log:
            print(f"{setup}: status ...", file=sys.stderr, flush=True)
        dropped = tools.drop_caches() and dropped
        vst.processes.clear()
        status = vst.status(wc)
        row.status_wall_s, row.status_peak_rss = _figures(vst)
        if status.stdout.strip():
            lines = status.stdout.strip().splitlines()
            row.note = f"status after the commit lists {len(lines)} changes: {lines[0]}"
        row.objects = index_objects(store)
        row.index_bytes = index_bytes(store)
    except tools.ToolError as e:
        row.error = str(e)
    return row, dropped


def _figures(vst: tools.Vst) -> tuple[float, int]:
    return (sum(p.wall_s for p in vst.processes), max(p.peak_rss for p in vst.processes))


def ratio(rows: list[Row]) -> float | None:
    """The big store's commit peak RSS over the empty store's."""
    by_setup = {r.setup: r for r in rows if not r.error}
    empty, big = by_setup.get("empty"), by_setup.get("big")
    if empty is None or big is None or not empty.commit_peak_rss:
        return None
    return big.commit_peak_rss / empty.commit_peak_rss


def met(value: float | None) -> bool | None:
    # Judged on the ratio as printed (two decimals): ru_maxrss moves by a few pages from
    # run to run, which must not decide the verdict.
    return None if value is None else round(value, 2) <= FLAT


def report(summary: dict, rows: list[Row]) -> str:
    lines = [
        f"vst store-size benchmark (issue 7), tree at scale {summary['scale']:g} "
        f"({summary['files']} files, {summary['nbytes'] / run.MB:.1f} MB), "
        + ("cold cache (page cache dropped before each command)" if summary["cold_cache"]
           else "warm cache (could not drop the page cache)"),
        f"vst: {summary['version']}; encrypted collection committed into each store",
        "",
        f"{'store':<6} {'objects':>10} {'commit s':>9} {'commit RSS MiB':>15} "
        f"{'status s':>9} {'status RSS MiB':>15} {'index MiB':>10}",
    ]
    for r in rows:
        if r.error:
            lines.append(f"{r.setup:<6} {r.filler:>10} {r.error}")
            continue
        lines.append(f"{r.setup:<6} {r.objects:>10} {r.commit_wall_s:>9.3f} "
                     f"{r.commit_peak_rss / MiB:>15.1f} {r.status_wall_s:>9.3f} "
                     f"{r.status_peak_rss / MiB:>15.1f} {r.index_bytes / MiB:>10.2f}")
        if r.note:
            lines.append(f"{'':<6} note: {r.note}")
    big = next((r for r in rows if r.setup == "big" and not r.error), None)
    if big is not None:
        rate = big.filler / big.build_s if big.build_s else 0
        lines += ["", f"building the big store: {big.filler} blobs in {big.build_s:.1f} s "
                  f"({rate:,.0f} objects/s, one writer, unencrypted)"]
    value = summary["rss_ratio"]
    if value is not None:
        verdict = {True: "met", False: "NOT MET"}[bool(summary["met"])]
        lines += ["", f"commit peak RSS, big / empty: {value:.2f}x  target <= {FLAT:.1f}x "
                  f"(flat): {verdict}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=DEFAULT_OBJECTS, metavar="N",
                        help=f"objects in the big store (default {DEFAULT_OBJECTS:,})")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the tree's file count (e.g. 0.01)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.objects < 1:
        parser.error("--objects must be at least 1")

    work = datasets.bench_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    dataset = datasets.ensure("tree", args.scale)
    top = Path(tempfile.mkdtemp(prefix="scale-", dir=work)).resolve()
    rows: list[Row] = []
    cold_cache = True
    files = 0
    try:
        for setup, filler in (("empty", 0), ("big", args.objects)):
            folder = top / setup
            row, dropped = measure(setup, filler, dataset, folder)
            rows.append(row)
            cold_cache = cold_cache and dropped
            if not files:
                files = len(workflow.listing(folder / "wc"))
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    value = ratio(rows)
    summary = {"scale": args.scale, "objects": args.objects, "cold_cache": cold_cache,
               "version": run._version(tools.Vst(work / "vst-scratch")),
               "files": files, "nbytes": dataset.nbytes, "rss_ratio": value,
               "target": f"<= {FLAT:.1f}x (flat)", "met": met(value)}
    print(report(summary, rows))
    if args.json:
        out = [asdict(r) for r in rows]
        args.json.write_text(json.dumps({**summary, "rows": out}, indent=2) + "\n")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
