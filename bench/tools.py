"""One runner per backup tool, all with the same interface, plus the measuring helpers.

A runner's `init(repo)` makes an empty repository (not timed) and `backup(src)` stores a file
or a directory tree in it (timed by the caller); `restore(target)`, where a tool has it, puts
the latest backup back under an empty folder. Every child process runs through `run()`, which
reports the wall time and the peak RSS of that child and its own children only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# Linux carries a process's peak RSS across exec, and a child forked from this Python starts
# at our own RSS (or at our peak, with vfork). So a fresh, small interpreter forks the command,
# reaps it with os.wait4 and reports its ru_maxrss (in KiB), wall time and exit code: the
# figures then floor at that helper's own RSS, 5 to 7 MiB, instead of at ours.
_MEASURE = """\
import os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
os.set_inheritable(report, False)
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
os.write(report, b"%r %d %d %r" % (wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
                                   usage.ru_utime + usage.ru_stime))
"""


class ToolError(RuntimeError):
    """A tool exited non-zero; the message carries the command and its last stderr line."""


@dataclass
class Process:
    wall_s: float
    peak_rss: int  # bytes
    stdout: str
    cpu_s: float = 0.0  # user + system, of the command and the children it waited for


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Process:
    """Run one command to completion, measured; raise ToolError if it fails."""
    read_end, write_end = os.pipe()
    # Output goes to files, not pipes, so a chatty tool never blocks on a full pipe.
    with (os.fdopen(read_end, "rb") as report, tempfile.TemporaryFile() as out,
          tempfile.TemporaryFile() as err):
        try:
            subprocess.run([sys.executable, "-I", "-S", "-c", _MEASURE, str(write_end), *argv],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=True,
                           env={**os.environ, **(env or {})}, pass_fds=(write_end,), cwd=cwd)
        finally:
            os.close(write_end)
        wall, maxrss, code, cpu = report.read().split()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if int(code) != 0:
        last = stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise ToolError(f"{' '.join(argv)}: exit {int(code)}: {last[0]}")
    return Process(float(wall), int(maxrss) * 1024, stdout, float(cpu))


def drop_caches() -> bool:
    """Flush dirty pages and empty the page cache; False when not allowed (warm cache)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def disk_write_rate(directory: Path, nbytes: int) -> float:
    """Bytes per second at which this disk takes a new file of `nbytes`, fsync included."""
    block = os.urandom(16 << 20)  # the same block over and over: disks do not dedup
    path = directory / "fsync-probe.bin"
    path.unlink(missing_ok=True)
    drop_caches()  # start where each tool's backup starts: nothing dirty, empty page cache
    start = time.perf_counter()
    with open(path, "wb") as f:
        for offset in range(0, nbytes, len(block)):
            f.write(block[: nbytes - offset])
        f.flush()
        os.fsync(f.fileno())
    rate = nbytes / (time.perf_counter() - start)
    path.unlink()
    return rate


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under `path` (like du), each hard-linked file counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for entry in [path, *path.rglob("*")]:
        st = entry.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


class Tool:
    """A backup tool driven through its command line."""

    name = ""
    executable = ""

    def __init__(self, scratch: Path) -> None:
        # `scratch` holds the tool's private caches and config, outside the repository so
        # they neither count in the repository size nor leak between runs.
        self.scratch = scratch
        self.repo = Path()
        self.processes: list[Process] = []  # every command run, for the caller to sum up
        # Names that backups leave out wherever they occur (e.g. a working copy's ".vst"),
        # so each peer stores what vst commits; set before init().
        self.exclude: tuple[str, ...] = ()
        self.source = Path()  # what the last backup stored, as an absolute path

    def binary(self) -> str | None:
        return shutil.which(self.executable)

    def version(self) -> str:
        return self._run("--version").stdout.strip().splitlines()[0]

    def init(self, repo: Path) -> None:
        raise NotImplementedError

    def backup(self, src: Path) -> None:
        raise NotImplementedError

    def restore(self, target: Path) -> Path:
        """Put the latest backup back under the empty folder `target`; return where the
        backed-up folder or file itself landed."""
        raise NotImplementedError

    def _run(self, *args: str | Path, cwd: Path | None = None) -> Process:
        binary = self.binary()
        if binary is None:
            raise ToolError(f"{self.name}: not installed")
        proc = run([binary, *map(str, args)], self.env(), cwd)
        self.processes.append(proc)
        return proc

    def env(self) -> dict[str, str]:
        return {}


class Restic(Tool):
    name = executable = "restic"

    def env(self) -> dict[str, str]:
        return {"RESTIC_PASSWORD": "vst-bench", "RESTIC_REPOSITORY": str(self.repo),
                "RESTIC_CACHE_DIR": str(self.scratch / "restic-cache")}

    def version(self) -> str:
        return self._run("version").stdout.strip()

    def init(self, repo: Path) -> None:
        self.repo = repo
        self._run("init", "-q")

    def backup(self, src: Path) -> None:
        # A second backup of the same path finds the first as its parent snapshot, so files
        # whose status did not change are not read again.
        self._run("backup", "-q", *(f"--exclude={name}" for name in self.exclude), src)
        self.source = src.resolve()

    def restore(self, target: Path) -> Path:
        self._run("restore", "latest", "--target", target)
        return _under(target, self.source)


class Borg(Tool):
    name = executable = "borg"

    def env(self) -> dict[str, str]:
        return {"BORG_BASE_DIR": str(self.scratch / "borg-base"),
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}

    def init(self, repo: Path) -> None:
        self.repo = repo
        # No encryption, like a default vst store: the run compares storing, not ciphers.
        self._run("init", "-e", "none", repo)

    def backup(self, src: Path) -> None:
        # A pattern matches the full path (without its leading "/") or a leading part of it.
        excludes = (f"--exclude=*/{name}" for name in self.exclude)
        self._run("create", "--compression", "lz4", *excludes, f"{self.repo}::bench", src)
        self.source = src.resolve()

    def restore(self, target: Path) -> Path:
        """`borg extract` of the one archive into `target` (borg extracts into its cwd)."""
        target.mkdir(parents=True, exist_ok=True)
        self._run("extract", f"{self.repo}::bench", cwd=target)
        return _under(target, self.source)


class Git(Tool):
    name = executable = "git"

    def init(self, repo: Path) -> None:
        self.repo = repo
        self._run("init", "-q", "--bare", repo)
        if self.exclude:
            (repo / "info").mkdir(exist_ok=True)
            with open(repo / "info" / "exclude", "a") as f:
                f.writelines(f"{name}/\n" for name in self.exclude)

    def backup(self, src: Path) -> None:
        # A bare repository with the work tree pointed at the data: nothing is copied, and
        # the repository holds only git's objects and index.
        work_tree, pathspec = (src, ".") if src.is_dir() else (src.parent, src.name)
        git = ("--git-dir", self.repo, "--work-tree", work_tree, "-c", "gc.auto=0",
               "-c", "user.name=vst-bench", "-c", "user.email=vst-bench@localhost")
        self._run(*git, "add", "-A", "--", pathspec)
        self._run(*git, "commit", "-q", "-m", "vst-bench")

    def status(self, work_tree: Path) -> Process:
        """`git status --porcelain` of `work_tree` against this repository's index."""
        return self._run("--git-dir", self.repo, "--work-tree", work_tree, "status",
                         "--porcelain")


class Vst(Tool):
    name = executable = "vst"

    def __init__(self, scratch: Path) -> None:
        super().__init__(scratch)
        self.last_id = ""  # what the last backup printed: a blob/chunks or tree id

    def binary(self) -> str | None:
        """$VST_BIN, else the repository's .venv/bin/vst, else vst on PATH."""
        candidates = [os.environ.get("VST_BIN"), BENCH_DIR.parent / ".venv" / "bin" / "vst"]
        for candidate in candidates:
            if candidate and os.access(candidate, os.X_OK):
                return str(candidate)
        return shutil.which(self.executable)

    def env(self) -> dict[str, str]:
        # Commits need an identity; the user's own config and store stay out of the run. An
        # empty VST_STORE counts as unset, so a working copy's commands use its own store.
        return {"XDG_DATA_HOME": str(self.scratch / "xdg-data"),
                "XDG_CONFIG_HOME": str(self.scratch / "xdg-config"),
                "XDG_STATE_HOME": str(self.scratch / "xdg-state"), "VST_STORE": "",
                **{f"VST_{role}_{part}": value for role in ("AUTHOR", "COMMITTER")
                   for part, value in (("NAME", "vst-bench"), ("EMAIL", "vst-bench@localhost"))}}

    def init(self, repo: Path) -> None:
        self.repo = repo
        self._run("store", "init", repo)

    def backup(self, src: Path) -> None:
        verb = ("write-tree",) if src.is_dir() else ("hash-object", "-w")
        self.last_id = self._run("--store", self.repo, *verb, src).stdout.strip()

    # The daily loop: a working copy's commands find the store in its .vst/.

    def init_working_copy(self, folder: Path, collection: str) -> None:
        """Make the existing `folder` the working copy of a new collection in this store."""
        self._run("--store", self.repo, "-C", folder, "init", "-c", collection)

    def commit(self, folder: Path) -> Process:
        """`vst commit` in the working copy; `last_id` is the new commit ("": nothing new)."""
        proc = self._run("-C", folder, "commit", "-m", "vst-bench")
        self.last_id = proc.stdout.strip()
        return proc

    def status(self, folder: Path) -> Process:
        return self._run("-C", folder, "status", "--porcelain")

    def clone(self, collection: str, dest: Path) -> Process:
        """A new working copy of the collection's head at `dest` (which must not exist)."""
        return self._run("--store", self.repo, "clone", collection, dest)

    def restore_collection(self, collection: str, target: Path) -> Process:
        """The collection's head under `target`, with no working copy."""
        return self._run("--store", self.repo, "restore", "--collection", collection,
                         "--to", target)

    def startup_ms(self, runs: int = 10) -> dict[str, float]:
        """Best-of-`runs` latency of `vst --version` and of one `cat-file -t` in a new store."""
        probe = Vst(self.scratch)  # its own store: leaves this runner's repository alone
        store, sample = self.scratch / "startup-store", self.scratch / "startup-object.txt"
        shutil.rmtree(store, ignore_errors=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        sample.write_text("vst startup probe\n")
        probe.init(store)
        probe.backup(sample)
        commands = {"vst --version": ("--version",),
                    "vst cat-file -t": ("--store", store, "cat-file", "-t", probe.last_id)}
        best = {label: min(probe._run(*args).wall_s for _ in range(runs)) * 1000
                for label, args in commands.items()}
        shutil.rmtree(self.scratch)
        return best


def _under(target: Path, source: Path) -> Path:
    """Where restic and borg put `source`: its absolute path re-rooted at `target`."""
    return target / source.relative_to(source.anchor)


PEERS = (Restic, Borg, Git)
ALL = (Vst, *PEERS)
BY_NAME = {tool.name: tool for tool in ALL}
