"""The daily working-copy loop: vst beside restic (borg and git where cheap), one table per
data set.

    python -m bench.workflow [--scale S] [--tools vst,vst-plain,restic,borg,git]
                             [--datasets big,text,tree] [--json OUT] [--verify]
                             [--repeat N] [--chart PNG]

Each data set becomes a working copy (hard links to the cached data, so nothing vst writes
lands in the cache) that every tool backs up in turn:

1. first commit / first backup;
2. again with nothing changed (also `vst status`, `git status`), cold and warm cache;
3. after 1% of the data changed (new files renamed over the old: the cache is never written);
4. restore of the latest version into an empty folder.

With --repeat N, each first backup (but git's, which takes half a minute) and each restore
runs N times, into a new repository or folder each time, and its row is the fastest run:
on a virtual disk one run can take twice as long as the next, whichever tool it is.

"vst" is a default, encrypted collection; "vst-plain" the same loop on an unencrypted one
(`vst init --no-encrypt`) in a working copy of its own, so the cost of encryption shows as
the ratio of the two. The peers are compared with the encrypted "vst".
"""

from __future__ import annotations

import argparse
import filecmp
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bench import chart, datasets, run, tools
from bench.datasets import Dataset

MB = run.MB
MiB = 1 << 20
STEPS = {"first": "1 first backup", "unchanged": "2 no change", "mutated": "3 after 1% change",
         "restore": "4 restore latest"}
COLLECTION = "bench"
MUTATED_SHARE = 0.01
REGIONS = 16  # scattered changed regions in a big file's new version
# The performance issue's targets for vst (encrypted, default settings).
FIRST_SPEEDUP = 2.0  # first commit: this many times the best peer's throughput (text) or
#                      restic's (tree); the text's repository within REPO_SHARE of restic's
BIG_SPEEDUP = 3.0  # first commit of the big file: this many times the best peer's...
DISK_SHARE = 0.9  # ...or this share of the disk's fsync write rate, whichever is lower
REPO_SHARE = 1.1
MANY_FILES = 1000  # a data set with more files keeps everything it wrote to the end of its run
UNCHANGED_MAX_S = {"big": 0.3, "text": 0.3, "tree": 0.7}  # no-change commit and status
MUTATED_TIME_RATIO = 0.5  # commit after a 1% change: at most this share of restic's time
RESTORE_SPEEDUP = 2.0  # clone and restore: this many times restic's throughput
ENCRYPTED_SHARE = 0.9  # encrypted commit and restore: this share of unencrypted throughput
PEERS = ("restic", "borg", "git")


class PlainVst(tools.Vst):
    """vst with its collection unencrypted: the figures encryption's cost is judged by."""

    name = "vst-plain"

    def init_working_copy(self, folder: Path, collection: str) -> None:
        self._run("--store", self.repo, "-C", folder, "init", "--no-encrypt", "-c", collection)


# The runners this benchmark knows, in the order of the tables' rows.
TOOLS: dict[str, type[tools.Tool]] = {"vst": tools.Vst, PlainVst.name: PlainVst,
                                      **{t.name: t for t in tools.PEERS}}
VSTS = ("vst", PlainVst.name)  # each with its own store, working copy and config folder


@dataclass
class Row:
    dataset: str
    step: str  # a key of STEPS
    tool: str
    action: str  # what was timed: "commit", "status", "backup", "clone", ...
    cache: str  # "cold" (page cache dropped first) or "warm" (right after the cold run)
    nbytes: int  # bytes moved, for MB/s; 0 where a rate means nothing
    wall_s: float = 0.0
    peak_rss: int = 0
    repo_bytes: int = 0  # after a first backup: the repository's size on disk
    runs: list[float] = field(default_factory=list)  # every run's wall s (--repeat)
    error: str = ""  # set instead of the figures when the tool is missing or failed
    note: str = ""  # something unexpected in what the tool did, the figures still stand
    target: str = ""
    met: bool | None = None  # None: no target, or nothing to judge it by

    @property
    def mb_per_s(self) -> float | None:
        return self.nbytes / self.wall_s / MB if self.nbytes and self.wall_s else None


# Run untimed on what the timed step returned: "" or what looked wrong.
Check = Callable[[Any], str]


class DatasetRun:
    """The four steps on one data set, in a folder of its own that is deleted at the end."""

    def __init__(self, dataset: Dataset, folder: Path, runners: dict[str, tools.Tool],
                 verify: bool, repeat: int = 1) -> None:
        self.dataset, self.folder, self.verify = dataset, folder, verify
        self.repeat = repeat
        self.wc = folder / "wc"  # vst's, and the one the peers back up
        self.tools = runners
        self.rows: list[Row] = []
        self.broken: dict[str, str] = {}  # tool name -> why its remaining steps cannot run
        self.dropped = True  # every cold step really started with an empty page cache
        self.files = 0
        self.changed = 0  # bytes changed by step 3
        # Where there are many files, nothing is deleted before the end of the run: ext4
        # without a journal skips inodes freed in the last minute (five while their table is
        # unwritten) when it allocates, so each tool's restore would pay for the deletion of
        # the one before (20% of a restore's CPU right after 50,000 deletions here). Set
        # once the files are counted.
        self.keep_until_end = False

    def run(self) -> list[Row]:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files = link_copy(self.dataset.path, self.wc)
        self.keep_until_end = self.files > MANY_FILES
        # A working copy has one store (in its .vst/), so vst-plain gets a second one. The
        # 1% change is the same in both: it is drawn from seeds, not from the clock.
        if PlainVst.name in self.tools:
            link_copy(self.dataset.path, self.copy(PlainVst.name))
        for name, tool in self.tools.items():
            if tool.binary() is None:
                self.broken[name] = f"{name}: not installed"
            tool.exclude = (".vst",)
        self.first()
        self.unchanged()
        self.changed = mutate(self.wc, self.dataset)
        if PlainVst.name in self.tools:
            mutate(self.copy(PlainVst.name), self.dataset)
        self.mutated()
        self.restore()
        return self.rows

    # --- the steps -------------------------------------------------------------------------

    def first(self) -> None:
        n = self.dataset.nbytes
        for name in VSTS:
            self.first_vst(name)
        restic = self.setup("restic", "backup")
        if restic and not self.measure("first", restic, "backup",
                                       lambda: restic.backup(self.wc), n,
                                       again=lambda: self.renew(restic)):
            self.broken["restic"] = "the first backup failed"
        # borg and git are measured here and their repositories deleted at once, to keep the
        # disk free: borg's restore is of this first backup (the same size as the latest).
        if borg := self.setup("borg", "create"):
            if self.measure("first", borg, "create", lambda: borg.backup(self.wc), n,
                            again=lambda: self.renew(borg)):
                self.measure_restore(borg, "extract", borg.restore)
            self.discard(borg)
        if git := self.setup("git", "add + commit"):
            assert isinstance(git, tools.Git)
            if self.measure("first", git, "add + commit", lambda: git.backup(self.wc), n):
                for cache in ("cold", "warm"):
                    self.measure("unchanged", git, "status", lambda: git.status(self.wc), 0,
                                 cache=cache, check=self.no_output)
            self.discard(git)

    def unchanged(self) -> None:
        for vst, wc in self.vsts():
            self.unchanged_vst(vst, wc)
        if restic := self.ready("restic"):
            for cache in ("cold", "warm"):
                self.measure("unchanged", restic, "backup", lambda: restic.backup(self.wc), 0,
                             cache=cache)

    def mutated(self) -> None:
        for vst, wc in self.vsts():
            self.mutated_vst(vst, wc)
        if restic := self.ready("restic"):
            self.measure("mutated", restic, "backup", lambda: restic.backup(self.wc), 0)

    def restore(self) -> None:
        for vst, _ in self.vsts():
            self.restore_vst(vst)
        if restic := self.ready("restic"):
            self.measure_restore(restic, "restore", restic.restore)

    # Each vst runner's part of the steps, on its own working copy.

    def first_vst(self, name: str) -> None:
        if vst := self.setup(name, "commit", self.init_vst):
            assert isinstance(vst, tools.Vst)
            wc = self.copy(name)

            def again() -> None:  # a new store, and the folder a new working copy of it
                shutil.rmtree(wc / ".vst")
                self.renew(vst, self.init_vst)

            if not self.measure("first", vst, "commit", lambda: vst.commit(wc),
                                self.dataset.nbytes, again=again,
                                check=lambda _: "" if vst.last_id else "printed no commit id"):
                self.broken[name] = "the first commit failed"  # the later steps need it

    def unchanged_vst(self, vst: tools.Vst, wc: Path) -> None:
        for cache in ("cold", "warm"):
            self.measure("unchanged", vst, "status", lambda: vst.status(wc), 0,
                         cache=cache, check=self.no_output)
        for cache in ("cold", "warm"):
            self.measure("unchanged", vst, "commit", lambda: vst.commit(wc), 0,
                         cache=cache, check=lambda _: f"made commit {vst.last_id[:12]}"
                         if vst.last_id else "")

    def mutated_vst(self, vst: tools.Vst, wc: Path) -> None:
        self.measure("mutated", vst, "commit", lambda: vst.commit(wc), 0,
                     check=lambda _: "" if vst.last_id else "made no commit")

    def restore_vst(self, vst: tools.Vst) -> None:
        self.measure_restore(vst, "clone", lambda target: vst.clone(COLLECTION, target),
                             working_copy=True)
        self.measure_restore(vst, "restore --to",
                             lambda target: vst.restore_collection(COLLECTION, target))

    def measure_restore(self, tool: tools.Tool, action: str, restore: Callable[[Path], Any],
                        working_copy: bool = False) -> None:
        """Time `restore` into a new folder (each run its own: deleting one just before
        the next run would slow that run's file creations), each checked; then delete
        them, unless the data set has many files (`keep_until_end`)."""
        targets = iter(self.folder / f"restore-{tool.name}-{action.split()[0]}-{n}"
                       for n in itertools.count())
        target = next(targets)

        def again() -> None:
            nonlocal target
            target = next(targets)

        try:
            # A peer's restore returns where under the target the files came back.
            self.measure("restore", tool, action, lambda: restore(target), self.dataset.nbytes,
                         again=again, check=lambda restored: self.compare(
                             restored if isinstance(restored, Path) else target, working_copy))
        finally:
            if not self.keep_until_end:
                for old in self.folder.glob(f"restore-{tool.name}-{action.split()[0]}-*"):
                    shutil.rmtree(old, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------

    def repo(self, tool: tools.Tool) -> Path:
        return self.folder / f"{tool.name}-repo"

    def copy(self, name: str) -> Path:
        """The working copy that the runner `name` commits."""
        return self.folder / "wc-plain" if name == PlainVst.name else self.wc

    def vsts(self) -> Iterator[tuple[tools.Vst, Path]]:
        """Each vst runner still able to go on, with its working copy."""
        for name in VSTS:
            if vst := self.ready(name):
                assert isinstance(vst, tools.Vst)
                yield vst, self.copy(name)

    def init_vst(self, vst: tools.Tool) -> None:
        """A new store, and the working copy made a working copy of a new collection in it,
        encrypted or not as the runner says. For "vst" this also makes the user's key, so no
        timed command pays for making one."""
        assert isinstance(vst, tools.Vst)
        vst.init(self.repo(vst))
        vst.init_working_copy(self.copy(vst.name), COLLECTION)
        config = (self.repo(vst) / "collections" / f"{COLLECTION}.toml").read_text()
        keys = list((vst.scratch / "xdg-config" / "vst" / "keys").glob("*.toml"))
        encrypted = "keyring =" in config
        if encrypted != (vst.name == "vst") or (encrypted and not keys):
            raise tools.ToolError(f"{vst.name}: init made the collection "
                                  f"{'encrypted' if encrypted else 'unencrypted'}"
                                  f"{' without a key file' if encrypted and not keys else ''}")

    def ready(self, name: str) -> tools.Tool | None:
        """The runner `name` if it was asked for, is installed and has not failed."""
        if name not in self.tools:
            return None
        return None if name in self.broken else self.tools[name]

    def setup(self, name: str, action: str,
              init: Callable[[tools.Tool], None] | None = None) -> tools.Tool | None:
        """Give `name` a new repository (not timed); None, and a row that says why, if the
        tool is missing or that fails."""
        tool = self.ready(name)
        if tool is None:
            if name in self.broken:
                self.rows.append(Row(self.dataset.name, "first", name, action, "cold",
                                     self.dataset.nbytes, error=self.broken[name]))
            return None
        try:
            tool.scratch.mkdir(parents=True, exist_ok=True)
            if init is None:
                tool.init(self.repo(tool))
            else:
                init(tool)
        except tools.ToolError as e:
            self.broken[name] = str(e)
            self.rows.append(Row(self.dataset.name, "first", name, "init", "cold", 0,
                                 error=str(e)))
            return None
        return tool

    def measure(self, step: str, tool: tools.Tool, action: str, timed: Callable[[], Any],
                nbytes: int, *, cache: str = "cold", check: Check | None = None,
                again: Callable[[], None] | None = None) -> bool:
        """Time one step of `tool` (its own processes only) and add its row; False if the
        tool failed. `check` then looks at what `timed` returned, untimed. With `again`
        (which sets the next run up, untimed) the step runs --repeat times and the row is
        the fastest run's, with every run's time in `runs` and the first note any run's
        check made."""
        row = Row(self.dataset.name, step, tool.name, action, cache, nbytes)
        self.rows.append(row)
        for run_number in range(self.repeat if again is not None else 1):
            print(f"{self.dataset.name}: {tool.name} {action} ({STEPS[step]}, {cache})"
                  f"{f' run {run_number + 1}' if run_number else ''} ...",
                  file=sys.stderr, flush=True)
            try:
                if run_number:
                    assert again is not None
                    again()
                if cache == "cold":
                    self.dropped = tools.drop_caches() and self.dropped
                tool.processes.clear()
                result = timed()
            except tools.ToolError as e:
                row.error = str(e)
                return False
            wall_s = sum(p.wall_s for p in tool.processes)
            row.runs.append(wall_s)
            # Every run is checked; what one got wrong stands whichever run was faster.
            row.note = row.note or (check(result) if check else "")
            if run_number and wall_s >= row.wall_s:
                continue
            row.wall_s = wall_s
            row.peak_rss = max(p.peak_rss for p in tool.processes)
            if step == "first" and self.repo(tool).exists():  # untimed
                row.repo_bytes = tools.disk_usage(self.repo(tool))
        return True

    def renew(self, tool: tools.Tool, init: Callable[[tools.Tool], None] | None = None
              ) -> None:
        """A new, empty repository for another first backup (untimed)."""
        shutil.rmtree(self.repo(tool))
        if init is None:
            tool.init(self.repo(tool))
        else:
            init(tool)

    def discard(self, tool: tools.Tool, *others: str) -> None:
        """Delete a peer's repository and scratch files once its steps are done (at the end
        of the run if the data set has many files: see `keep_until_end`)."""
        if self.keep_until_end:
            return
        for path in (self.repo(tool), tool.scratch, *(self.folder / o for o in others)):
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def no_output(proc: tools.Process) -> str:
        """For a status with nothing changed: "" when it listed nothing."""
        out = proc.stdout.strip()
        return f"status listed changes: {out.splitlines()[0]} ..." if out else ""

    def compare(self, restored: Path, working_copy: bool = False) -> str:
        """"" when `restored` holds the working copy's files (sizes; bytes with --verify), and
        its .vst/ only if it is a working copy too."""
        want, got = listing(self.wc), listing(restored, skip_vst=working_copy)
        if want != got:
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            differ = sorted(p for p in want.keys() & got.keys() if want[p] != got[p])
            return (f"restored tree differs: {len(missing)} missing, {len(extra)} extra, "
                    f"{len(differ)} of another size "
                    f"(e.g. {(missing + extra + differ)[0]})")
        if self.verify:
            differ = [p for p in want if not filecmp.cmp(self.wc / p, restored / p,
                                                          shallow=False)]
            if differ:
                return f"restored bytes differ in {len(differ)} files (e.g. {differ[0]})"
        return ""


def listing(root: Path, skip_vst: bool = True) -> dict[str, int]:
    """Relative path -> size of every file under `root`, a working copy's .vst/ left out."""
    out = {}
    for folder, dirs, files in os.walk(root):
        if skip_vst and folder == str(root) and ".vst" in dirs:
            dirs.remove(".vst")
        for name in files:
            path = Path(folder, name)
            out[str(path.relative_to(root))] = path.lstat().st_size
    return out


def link_copy(src: Path, dest: Path) -> int:
    """A new folder `dest` of hard links to `src`'s files (a file `src` goes in as
    dest/<its name>), like `cp -al`; returns the number of files."""
    dest.mkdir(parents=True)
    if src.is_file():
        os.link(src, dest / src.name)
        return 1
    count = 0
    for folder, dirs, files in os.walk(src):
        out = dest / Path(folder).relative_to(src)
        for name in dirs:
            (out / name).mkdir()
        for name in files:
            os.link(Path(folder, name), out / name)
        count += len(files)
    return count


# --- the 1% change --------------------------------------------------------------------------


def mutate(wc: Path, dataset: Dataset) -> int:
    """Change 1% of the data set's bytes in working copy `wc`; return how many changed.

    A tree gets 1% of its files rewritten with new random bytes of the same size; a single
    file gets a new version with 1% of its bytes changed in REGIONS scattered places. Either
    way each new file is written under a temporary name and renamed over the old one, so the
    hard-linked original in the data cache is never written.
    """
    rng = random.Random(f"mutate/{dataset.name}")
    if dataset.path.is_file():
        return _change_regions(wc / dataset.path.name, rng, dataset.name == "text")
    files = sorted(listing(wc))
    changed = 0
    for rel in rng.sample(files, max(1, round(len(files) * MUTATED_SHARE))):
        size = (wc / rel).stat().st_size
        new = _take(datasets.random_chunks(f"mutate/{rel}", max(1, size)), size)
        _replace(wc / rel, _writer(new))
        changed += size
    return changed


def _change_regions(path: Path, rng: random.Random, text: bool) -> int:
    size = path.stat().st_size
    region = max(1, round(size * MUTATED_SHARE / REGIONS))
    span = size // REGIONS  # one region somewhere in each sixteenth of the file
    offsets = [i * span + rng.randrange(max(1, span - region)) for i in range(REGIONS)]
    stream = (datasets.text_chunks if text else datasets.random_chunks)(
        f"mutate/{path.name}", max(64, region))

    def write(f: BinaryIO) -> None:
        with open(path, "rb") as src:
            shutil.copyfileobj(src, f, datasets.WRITE_CHUNK)
        for offset in offsets:
            f.seek(offset)
            f.write(_take(stream, min(region, size - offset)))

    _replace(path, write)
    return sum(min(region, size - offset) for offset in offsets)


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    temporary = path.with_name(f".{path.name}.bench-tmp")
    with open(temporary, "w+b") as f:
        write(f)
    os.replace(temporary, path)


def _writer(data: bytes) -> Callable[[BinaryIO], object]:
    return lambda f: f.write(data)


def _take(chunks: Iterator[bytes], n: int) -> bytes:
    """The next `n` bytes of an endless stream of chunks (the rest of a chunk is dropped)."""
    parts, have = [], 0
    while have < n:
        part = next(chunks)
        parts.append(part)
        have += len(part)
    return b"".join(parts)[:n]


# --- targets, ratios and the report ---------------------------------------------------------


def find(rows: list[Row], dataset: str, step: str, tool: str, cache: str = "cold",
         action: str | None = None) -> Row | None:
    for r in rows:
        if (r.dataset, r.step, r.tool, r.cache) == (dataset, step, tool, cache) and \
                not r.error and action in (None, r.action):
            return r
    return None


def judge(rows: list[Row], disk_mb_s: float) -> None:
    """Fill in each vst row's target and whether it is met (None: no peer figure)."""
    for r in rows:
        if r.tool != "vst" or r.error:
            continue
        restic = find(rows, r.dataset, r.step, "restic", r.cache)
        if r.step == "first":
            peers = [p for p in (find(rows, r.dataset, "first", name) for name in PEERS) if p]
            best = max(peers, key=_rate, default=None)
            if r.dataset == "big":
                want = DISK_SHARE * disk_mb_s
                r.target = f">= {DISK_SHARE:.0%} disk ({want:.0f} MB/s)"
                if best is not None and BIG_SPEEDUP * _rate(best) < want:
                    want = BIG_SPEEDUP * _rate(best)
                    r.target = f">= {BIG_SPEEDUP:g}x {best.tool} ({want:.0f} MB/s)"
                r.met = _rate(r) >= want
            elif r.dataset == "tree":
                r.target = f">= {FIRST_SPEEDUP:g}x restic MB/s"
                r.met = None if restic is None else _rate(r) >= FIRST_SPEEDUP * _rate(restic)
            else:
                r.target = (f">= {FIRST_SPEEDUP:g}x {best.tool if best else 'the best peer'} "
                            f"MB/s, repo <= {REPO_SHARE:g}x restic's")
                r.met = None if best is None or restic is None else (
                    _rate(r) >= FIRST_SPEEDUP * _rate(best)
                    and r.repo_bytes <= REPO_SHARE * restic.repo_bytes)
        elif r.step == "unchanged" and r.dataset in UNCHANGED_MAX_S:
            most = UNCHANGED_MAX_S[r.dataset]
            r.target, r.met = f"<= {most:g} s", r.wall_s <= most
        elif r.step == "mutated":
            r.target = f"<= {MUTATED_TIME_RATIO:g}x restic time"
            r.met = None if restic is None else r.wall_s <= MUTATED_TIME_RATIO * restic.wall_s
        elif r.step == "restore":
            r.target = f">= {RESTORE_SPEEDUP:g}x restic MB/s"
            r.met = None if restic is None else _rate(r) >= RESTORE_SPEEDUP * _rate(restic)


def _rate(row: Row) -> float:
    return row.mb_per_s or 0.0


def encryption(rows: list[Row]) -> list[dict[str, object]]:
    """vst (encrypted) beside vst-plain for each vst row that has a vst-plain row of the same
    step, command and cache. speed = plain time / encrypted time, which for the same bytes is
    encrypted MB/s / plain MB/s; the target (>= ENCRYPTED_SHARE) is judged where a rate is
    measured: first commit, clone and restore."""
    out = []
    for r in rows:
        plain = find(rows, r.dataset, r.step, PlainVst.name, r.cache, r.action)
        if r.tool == "vst" and not r.error and plain is not None:
            speed = plain.wall_s / r.wall_s
            judged = bool(r.nbytes)
            out.append({"dataset": r.dataset, "step": r.step, "action": r.action,
                        "cache": r.cache, "speed": speed,
                        "peak_rss": r.peak_rss / plain.peak_rss,
                        "target": f">= {ENCRYPTED_SHARE:g}" if judged else "",
                        "met": speed >= ENCRYPTED_SHARE if judged else None})
    return out


def ratios(rows: list[Row]) -> list[dict[str, object]]:
    """vst / restic for each vst row that has a restic row at the same step and cache:
    time < 1 means vst is faster, peak RSS < 1 that it is smaller (the target)."""
    out = []
    for r in rows:
        restic = find(rows, r.dataset, r.step, "restic", r.cache)
        if r.tool == "vst" and not r.error and restic is not None:
            rss = r.peak_rss / restic.peak_rss
            out.append({"dataset": r.dataset, "step": r.step, "action": r.action,
                        "cache": r.cache, "time": r.wall_s / restic.wall_s, "peak_rss": rss,
                        "rss_met": rss < 1})
    return out


def throughput_groups(rows: list[Row]) -> list[tuple[str, list[tuple[str, float | None]]]]:
    """MB/s of each first backup and restore, one group per data set and step, one bar per
    tool (vst's clone, not its restore --to: what a user restores with most): for
    `chart.bar_chart`; None where the tool failed."""
    groups: dict[str, list[tuple[str, float | None]]] = {}
    for r in sorted(rows, key=lambda r: (r.dataset != "big", r.dataset, _order(r))):
        if r.step in ("first", "restore") and r.action != "restore --to":
            label = f"{r.dataset} {'backup' if r.step == 'first' else 'restore'}"
            groups.setdefault(label, []).append((r.tool, None if r.error else r.mb_per_s))
    return list(groups.items())


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: "no figure to compare"}[met]


def _order(row: Row) -> tuple[int, int]:
    """Step by step, vst first (rows of one tool and step stay in the order they ran)."""
    return list(STEPS).index(row.step), list(TOOLS).index(row.tool)


def report(summary: dict, rows: list[Row]) -> str:
    lines = [
        f"vst daily-loop benchmark, scale {summary['scale']:g}, "
        + ("cold rows: page cache dropped first; warm rows: right after the cold one"
           if summary["cold_cache"] else "warm cache throughout (could not drop the page cache)"),
        "tools: " + "; ".join(dict.fromkeys(summary["versions"].values())),
        f"disk: new {summary['disk_write_bytes'] >> 20} MiB file, write + fsync: "
        f"{summary['disk_write_mb_s']:.1f} MB/s",
    ]
    for name, info in summary["datasets"].items():
        lines += ["", f"{name}: {info['nbytes'] / MB:.1f} MB in {info['files']} files, "
                      f"1% change: {info['changed_bytes'] / MB:.3f} MB",
                  f"{'step':<18} {'tool':<9} {'command':<13} {'cache':<5} {'wall s':>8} "
                  f"{'MB/s':>8} {'RSS MiB':>8} {'repo MiB':>8}  target"]
        for r in sorted((r for r in rows if r.dataset == name), key=_order):
            head = f"{STEPS[r.step]:<18} {r.tool:<9} {r.action:<13} {r.cache:<5}"
            if r.error:
                lines.append(f"{head} {r.error}")
                continue
            rate = f"{r.mb_per_s:>8.1f}" if r.mb_per_s else f"{'-':>8}"
            target = f"  {r.target}: {_verdict(r.met)}" if r.target else ""
            repo = f"{r.repo_bytes / MiB:>8.1f}" if r.repo_bytes else f"{'':>8}"
            lines.append(f"{head} {r.wall_s:>8.3f} {rate} {r.peak_rss / MiB:>8.1f} {repo}"
                         f"{target}")
            if len(r.runs) > 1:
                lines.append(f"{'':<18} fastest of {len(r.runs)} runs: "
                             + ", ".join(f"{wall:.3f}" for wall in r.runs) + " s")
            if r.note:
                lines.append(f"{'':<18} note: {r.note}")
    if summary["ratios"]:
        lines += ["", "vst / restic (time < 1: vst faster; peak RSS < 1: vst smaller, the "
                      "target):"]
        lines += [f"{q['dataset']:<6} {STEPS[q['step']]:<18} {q['action']:<13} "
                  f"{q['cache']:<5} time {q['time']:>6.2f}x  peak RSS {q['peak_rss']:>5.2f}x"
                  f"  RSS below restic's: {_verdict(q['rss_met'])}" for q in summary["ratios"]]
    if summary["encryption"]:
        lines += ["", "vst (encrypted) / vst-plain (speed = plain time / encrypted time, the "
                      "MB/s ratio; > 1: encrypted faster):"]
        lines += [f"{q['dataset']:<6} {STEPS[q['step']]:<18} {q['action']:<13} "
                  f"{q['cache']:<5} speed {q['speed']:>5.2f}  peak RSS {q['peak_rss']:>5.2f}x"
                  + (f"  {q['target']}: {_verdict(q['met'])}" if q["target"] else "")
                  for q in summary["encryption"]]
    judged = [r.met for r in rows if r.met is not None] + \
        [q["rss_met"] for q in summary["ratios"]] + \
        [q["met"] for q in summary["encryption"] if q["met"] is not None]
    lines += ["", f"targets met: {sum(map(bool, judged))} of {len(judged)}"]
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflow",
                                     description=__doc__.split("\n")[0])
    run.data_arguments(parser, datasets.NAMES)
    parser.add_argument("--tools", default=",".join(TOOLS),
                        type=lambda s: run._names(s, list(TOOLS)))
    parser.add_argument("--verify", action="store_true",
                        help="compare restored bytes too, not only names and sizes (not timed)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each first backup (not git's) and restore N times and "
                             "keep the fastest")
    parser.add_argument("--chart", type=Path, metavar="PNG",
                        help="also write a chart of first-backup and restore MB/s per tool "
                             "and data set here")
    args = parser.parse_args(argv)

    work = datasets.bench_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    cold_cache = tools.drop_caches()
    infos = {}
    for name in args.datasets:
        dataset = datasets.ensure(name, args.scale)
        # A folder of its own: two runs at once (a test and a real run) do not collide.
        folder = Path(tempfile.mkdtemp(prefix=f"workflow-{name}-", dir=work)).resolve()
        runners: dict[str, tools.Tool] = {t: TOOLS[t](folder / f"{t}-scratch")
                                          for t in args.tools}
        one = DatasetRun(dataset, folder, runners, args.verify, max(1, args.repeat))
        try:
            rows += one.run()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        cold_cache = cold_cache and one.dropped
        infos[name] = {"nbytes": dataset.nbytes, "files": one.files,
                       "changed_bytes": one.changed}
    disk_bytes = run.disk_write_bytes(args.scale)
    disk_mb_s = tools.disk_write_rate(work, disk_bytes) / MB
    judge(rows, disk_mb_s)
    versions = {t: run._version(TOOLS[t](work / f"{t}-scratch")) for t in args.tools}
    summary = {"scale": args.scale, "cold_cache": cold_cache, "versions": versions,
               "disk_write_bytes": disk_bytes, "disk_write_mb_s": disk_mb_s,
               "datasets": infos, "ratios": ratios(rows), "encryption": encryption(rows)}
    print(report(summary, rows))
    if args.chart:
        cache = "cold cache" if cold_cache else "warm cache"
        args.chart.write_bytes(chart.bar_chart(
            throughput_groups(rows), f"First backup and restore, scale {args.scale:g}, {cache}",
            "MB/s"))
    if args.json:
        out = [{**asdict(r), "mb_per_s": r.mb_per_s} for r in rows]
        args.json.write_text(json.dumps({**summary, "rows": out}, indent=2) + "\n")
    return 1 if any(r.error and "not installed" not in r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
