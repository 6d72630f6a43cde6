"""A first commit and a clone over SSH (a real OpenSSH sshd on loopback) against the same
commands on a local store, and the round trips each makes.

    python -m bench.ssh [--scale S] [--datasets big,tree] [--json OUT]

For each data set and each way of reaching the store ("local": its path; "ssh":
`<host>:<path>` through the system's ssh to an sshd this run starts on 127.0.0.1), in a new
store: `vst init -c` in a new working copy of hard links (untimed), then `vst --json commit`
and `vst --json clone`, each timed from a cold page cache. The collection is encrypted (the
default). The store lives on this machine either way, so the difference is the transport:
ssh's ciphers, the framing, the server process and the round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import datasets, run, tools, workflow
from bench.datasets import Dataset

MB = run.MB
MiB = 1 << 20
COLLECTION = "bench"
DATASETS = ("big", "tree")
VIAS = ("local", "ssh")
ACTIONS = ("commit", "clone")
SSH_SHARE = 0.7  # issue 6: over SSH at no less than 0.7x the local MB/s
SESSION_END_S = 10.0  # how long sshd may take to reap a finished session


def _sshserver() -> ModuleType:
    """tests/sshserver.py, which starts the tests' sshd. tests/ is not a package: pytest
    puts it on sys.path for the tests, and this does the same."""
    folder = str(tools.BENCH_DIR.parent / "tests")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import sshserver

    return sshserver


class SshVst(tools.Vst):
    """vst reaching its store at `address` (a path, or `host:path` over `ssh`), with the
    JSON records of commit and clone read back."""

    def __init__(self, scratch: Path, address: str, ssh: str = "") -> None:
        super().__init__(scratch)
        self.address = address
        self.ssh = ssh  # VST_SSH; "" for a local store

    def env(self) -> dict[str, str]:
        extra = {}
        if self.ssh:
            binary = self.binary() or "vst"
            # The remote side is this same vst, by absolute path: sshd gives the session a
            # clean environment with no venv on PATH.
            extra = {"VST_SSH": self.ssh, "VST_REMOTE_VST": str(Path(binary).resolve())}
        return {**super().env(), **extra}

    def init_working_copy(self, folder: Path, collection: str) -> None:
        self._run("--store", self.address, "-C", folder, "init", "-c", collection)

    def commit_json(self, folder: Path) -> dict[str, Any]:
        proc = self._run("--json", "-C", folder, "commit", "-m", "vst-bench")
        record = _record(proc.stdout, "commit")
        self.last_id = record.get("id") or ""
        return record

    def clone_json(self, collection: str, dest: Path) -> dict[str, Any]:
        proc = self._run("--json", "--store", self.address, "clone", collection, dest)
        return _record(proc.stdout, "clone")


def _record(stdout: str, kind: str) -> dict[str, Any]:
    """The last JSON line of `stdout` whose "type" is `kind`."""
    for line in reversed(stdout.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("type") == kind:
            return record
    raise tools.ToolError(f"vst {kind} printed no {kind!r} JSON record")


@dataclass
class Row:
    dataset: str
    action: str  # "commit" or "clone"
    via: str  # "local" or "ssh"
    cache: str
    nbytes: int  # data set bytes, for MB/s
    wall_s: float = 0.0
    peak_rss: int = 0  # the client: vst and its ssh
    client_cpu_s: float = 0.0  # user + system, vst and its ssh
    # sshd and `vst serve`, on the same cores as the client (None for local rows)
    server_cpu_s: float | None = None
    round_trips: int | None = None  # requests to the server, from the --json record
    files: int = 0
    ratio: float | None = None  # ssh MB/s over local MB/s
    target: str = ""
    met: bool | None = None
    error: str = ""
    note: str = ""  # something unexpected in what vst did; the figures still stand

    @property
    def mb_per_s(self) -> float | None:
        return self.nbytes / self.wall_s / MB if self.nbytes and self.wall_s else None


class Bench:
    """Commit and clone of one data set, locally and over SSH, in a folder of its own that
    is deleted at the end. `server` is tests/sshserver.py's Sshd."""

    def __init__(self, dataset: Dataset, folder: Path, server: Any,
                 options: list[str] | None = None) -> None:
        self.dataset, self.folder, self.server = dataset, folder, server
        self.options = options or []  # ssh options (a cipher)
        self.rows: list[Row] = []
        self.dropped = True  # every timed row really started with an empty page cache
        self.files = 0

    def run(self) -> list[Row]:
        for via in VIAS:
            try:
                vst = self.prepare(via)
            except tools.ToolError as e:
                self.rows += [Row(self.dataset.name, a, via, "cold", self.dataset.nbytes,
                                  error=f"untimed set-up: {e}") for a in ACTIONS]
                self.clean(via)
                continue
            if not self.commit(vst).error:
                self.clone(vst)
            self.clean(via)
        return self.rows

    def work(self, via: str) -> Path:
        return self.folder / via

    def prepare(self, via: str) -> SshVst:
        """A new store (made locally either way: `vst store init` is local only), a working
        copy of hard links, and its collection, made through the way `via`. Untimed."""
        work = self.work(via)
        shutil.rmtree(work, ignore_errors=True)
        store = work / "store"
        address = str(store) if via == "local" else f"{self.server.server.host}:{store}"
        ssh = shlex.join([*self.server.server.ssh_command, *self.options])
        vst = SshVst(work / "scratch", address, ssh if via == "ssh" else "")
        vst.scratch.mkdir(parents=True)
        self.files = workflow.link_copy(self.dataset.path, work / "wc")
        vst.init(store)
        vst.init_working_copy(work / "wc", COLLECTION)
        return vst

    def commit(self, vst: SshVst) -> Row:
        via = "ssh" if vst.ssh else "local"
        wc = self.work(via) / "wc"
        row = self.measure("commit", vst, lambda: vst.commit_json(wc))
        if not row.error and not vst.last_id:
            row.error = "vst commit made no commit"
        return row

    def clone(self, vst: SshVst) -> Row:
        via = "ssh" if vst.ssh else "local"
        dest = self.work(via) / "clone"
        row = self.measure("clone", vst, lambda: vst.clone_json(COLLECTION, dest))
        if not row.error:
            want = workflow.listing(self.work(via) / "wc")
            got = workflow.listing(dest)
            if want != got:
                row.note = (f"the clone differs from the working copy: {len(want)} files "
                            f"against {len(got)}, or sizes differ")
        return row

    def clean(self, via: str) -> None:
        shutil.rmtree(self.work(via), ignore_errors=True)

    def measure(self, action: str, vst: SshVst, timed: Callable[[], dict[str, Any]]) -> Row:
        """Time one command from a cold cache and add its row."""
        via = "ssh" if vst.ssh else "local"
        row = Row(self.dataset.name, action, via, "cold", self.dataset.nbytes,
                  files=self.files)
        self.rows.append(row)
        print(f"{self.dataset.name}: {action} via {via} ...", file=sys.stderr, flush=True)
        self.dropped = tools.drop_caches() and self.dropped
        vst.processes.clear()
        sshd_pid = self.server.process.pid if vst.ssh else None
        server_before = children_cpu_s(sshd_pid)
        client_before = _children_cpu_s()
        try:
            record = timed()
        except tools.ToolError as e:
            row.error = str(e)
            return row
        row.client_cpu_s = _children_cpu_s() - client_before
        if sshd_pid is not None and server_before is not None:
            # The session ends when vst closes its ssh; sshd reaps it a moment later.
            if not wait_for_no_children(sshd_pid, SESSION_END_S):
                row.note = "sshd's session had not ended: server CPU is a lower bound"
            after = children_cpu_s(sshd_pid)
            row.server_cpu_s = after - server_before if after is not None else None
        row.wall_s = sum(p.wall_s for p in vst.processes)
        row.peak_rss = max(p.peak_rss for p in vst.processes)
        trips = record.get("round_trips")
        if via == "ssh":
            if isinstance(trips, int):
                row.round_trips = trips
            else:
                row.note = f"no round_trips in vst {action} --json"
        return row


# --- CPU of processes that are not ours -----------------------------------------------------


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of the reaped descendants of process `pid` (Linux /proc:
    cutime + cstime), or None. For the sshd listener, every session it has reaped so far:
    sshd's own ciphers and `vst serve`."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def wait_for_no_children(pid: int, timeout: float) -> bool:
    """Wait until process `pid` has no child processes; False if it still has some."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            children = "".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob(
                "*/children")).split()
        except OSError:
            return True  # gone, or no way to tell
        if not children:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def ssh_cipher(server: Any, options: list[str]) -> str:
    """The cipher ssh and this sshd agree on, from `ssh -v` (e.g. chacha20-poly1305)."""
    proc = subprocess.run([*server.server.ssh_command, *options, "-v", server.server.host,
                           "true"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    found = re.search(r"kex: server->client cipher: (\S+)", proc.stderr)
    return found.group(1) if found else "unknown"


def ssh_alone(server: Any, options: list[str], source: Path) -> tuple[float, float]:
    """(up, down) MB/s of ssh itself on this machine, carrying `source` (cached) with `cat`
    at the other end: the ceiling of any tool over this ssh."""
    ssh = [*server.server.ssh_command, *options, server.server.host]
    size = source.stat().st_size
    rates = []
    for command, stdin in (("cat > /dev/null", source), (f"cat {source}", None)):
        with open(stdin or os.devnull, "rb") as feed:
            start = time.perf_counter()
            subprocess.run([*ssh, command], stdin=feed, stdout=subprocess.DEVNULL, check=True,
                           timeout=600)
        rates.append(size / (time.perf_counter() - start) / MB)
    return rates[0], rates[1]


# --- figures --------------------------------------------------------------------------------


def find(rows: list[Row], dataset: str, action: str, via: str) -> Row | None:
    return next((r for r in rows if (r.dataset, r.action, r.via) == (dataset, action, via)
                 and not r.error), None)


def judge(rows: list[Row]) -> None:
    """Each SSH row's MB/s over the local row's, against issue 6's target."""
    for r in rows:
        if r.via != "ssh" or r.error:
            continue
        base = find(rows, r.dataset, r.action, "local")
        if base is None or not base.mb_per_s:
            continue
        r.ratio = (r.mb_per_s or 0) / base.mb_per_s
        r.target, r.met = f">= {SSH_SHARE:g}x local", r.ratio >= SSH_SHARE


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: ""}[met]


def _optional(value: float | int | None, width: int, spec: str) -> str:
    return f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}"


def report(summary: dict, rows: list[Row]) -> str:
    lines = [
        f"vst over SSH benchmark, scale {summary['scale']:g}, "
        + ("cold cache (page cache dropped before each row)" if summary["cold_cache"]
           else "warm cache (could not drop the page cache)"),
        f"vst: {summary['version']}; {summary['ssh']}; {summary['cpus']} CPUs shared by "
        "client and server",
        "",
        f"{'dataset':<8} {'action':<7} {'via':<6} {'wall s':>8} {'MB/s':>8} {'RSS MiB':>8} "
        f"{'cli CPU':>8} {'srv CPU':>8} {'trips':>6} {'ssh/loc':>8}  target",
    ]
    for r in rows:
        head = f"{r.dataset:<8} {r.action:<7} {r.via:<6}"
        if r.error:
            lines.append(f"{head} {r.error}")
            continue
        target = f"  {r.target}: {_verdict(r.met)}" if r.target else ""
        ratio = f"{r.ratio:>7.2f}x" if r.ratio is not None else f"{'-':>8}"
        lines.append(f"{head} {r.wall_s:>8.3f} {_optional(r.mb_per_s, 8, '.1f')} "
                     f"{r.peak_rss / MiB:>8.1f} {r.client_cpu_s:>8.2f} "
                     f"{_optional(r.server_cpu_s, 8, '.2f')} {_optional(r.round_trips, 6, 'd')} "
                     f"{ratio}{target}")
        if r.note:
            lines.append(f"{'':<8} note: {r.note}")
    commits = [r for r in rows if r.via == "ssh" and r.action == "commit" and
               r.round_trips is not None]
    if commits:
        lines += ["", "round trips of one first commit over SSH:"]
        lines += [f"{r.dataset:<8} {r.files} files: {r.round_trips} round trips "
                  f"({r.round_trips / max(1, r.files):.3f} per file)" for r in commits]
    alone = summary.get("ssh_alone")
    if alone:
        lines += ["", f"ssh alone (cat through it, same cipher): up {alone['up_mb_s']:.0f} MB/s, "
                  f"down {alone['down_mb_s']:.0f} MB/s: the ceiling over this ssh"]
        lines += [f"{r.dataset:<8} {r.action:<7} {100 * (r.mb_per_s or 0) / ceiling:5.1f}% of "
                  f"ssh alone" for r in rows if r.via == "ssh" and not r.error
                  for ceiling in [alone["up_mb_s" if r.action == "commit" else "down_mb_s"]]
                  if ceiling]
    lines += ["", "CPU s: user + system; cli = vst and its ssh, srv = sshd and vst serve."]
    judged = [r.met for r in rows if r.met is not None]
    lines += [f"targets met: {sum(map(bool, judged))} of {len(judged)}"]
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ssh",
                                     description=__doc__.split("\n")[0])
    run.data_arguments(parser, DATASETS)
    parser.add_argument("--cipher", metavar="NAME",
                        help="ask ssh for this cipher (ssh -c NAME), e.g. aes128-gcm@openssh.com")
    args = parser.parse_args(argv)

    if _sshserver().find_sshd() is None:
        parser.error("no OpenSSH server: /usr/sbin/sshd, ssh and ssh-keygen are needed "
                     "(apt-get install openssh-server openssh-client)")
    work = datasets.bench_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        datasets.ensure(name, args.scale)  # generated before any sshd runs
    top = Path(tempfile.mkdtemp(prefix="ssh-", dir=work)).resolve()
    rows: list[Row] = []
    infos = {}
    cold_cache = tools.drop_caches()
    try:
        try:
            sshd = _sshserver().start_sshd(top / "sshd")
        except (RuntimeError, OSError) as e:
            print(f"bench.ssh: cannot start sshd: {e}", file=sys.stderr)
            return 1
        try:
            options = ["-c", args.cipher] if args.cipher else []
            cipher = ssh_cipher(sshd, options)
            big = datasets.ensure("big", args.scale).path
            up, down = ssh_alone(sshd, options, big)
            for name in args.datasets:
                one = Bench(datasets.ensure(name, args.scale), top / name, sshd, options)
                rows += one.run()
                cold_cache = cold_cache and one.dropped
                infos[name] = {"nbytes": one.dataset.nbytes, "files": one.files}
        finally:
            sshd.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    judge(rows)
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    summary = {"scale": args.scale, "cold_cache": cold_cache,
               "version": run._version(tools.Vst(work / "vst-scratch")),
               "ssh": f"{ssh_version.split(',')[0]}, cipher {cipher}, sshd on 127.0.0.1",
               "ssh_alone": {"up_mb_s": round(up, 1), "down_mb_s": round(down, 1)},
               "cpus": os.cpu_count(), "datasets": infos}
    print(report(summary, rows))
    if args.json:
        out = [{**asdict(r), "mb_per_s": r.mb_per_s} for r in rows]
        args.json.write_text(json.dumps({**summary, "rows": out}, indent=2) + "\n")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
