"""One runner per backup tool, all with the same interface, plus the measuring helpers.

A runner's `init(repo)` makes an empty repository (not timed) and `backup(src)` stores a file
or a directory tree in it (timed by the caller). Every child process runs through `run()`,
which reaps it with `os.wait4` to read the peak RSS of that child (and its own children)
only, never of this Python process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


class ToolError(RuntimeError):
    """A tool exited non-zero; the message carries the command and its last stderr line."""


@dataclass
class Process:
    wall_s: float
    peak_rss: int  # bytes
    stdout: str


def run(argv: list[str], env: dict[str, str] | None = None) -> Process:
    """Run one command to completion; raise ToolError if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        # Output goes to files, not pipes: the child never blocks on a full pipe while we
        # sit in wait4, and wait4 (not communicate) is the only way to get its rusage.
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: tell Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise ToolError(f"{' '.join(argv)}: exit {proc.returncode}: {last[0]}")
    return Process(wall, usage.ru_maxrss * 1024, stdout)  # Linux reports ru_maxrss in KiB


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
    os.sync()  # do not bill earlier writers' dirty pages to this file
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
        self.peak_rss = 0  # the largest child of the last backup()

    def binary(self) -> str | None:
        return shutil.which(self.executable)

    def version(self) -> str:
        return self._run("--version").stdout.strip().splitlines()[0]

    def init(self, repo: Path) -> None:
        raise NotImplementedError

    def backup(self, src: Path) -> None:
        raise NotImplementedError

    def _run(self, *args: str | Path) -> Process:
        binary = self.binary()
        if binary is None:
            raise ToolError(f"{self.name}: not installed")
        proc = run([binary, *map(str, args)], self.env())
        self.peak_rss = max(self.peak_rss, proc.peak_rss)
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
        self._run("backup", "-q", src)


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
        self._run("create", "--compression", "lz4", f"{self.repo}::bench", src)


class Git(Tool):
    name = executable = "git"

    def init(self, repo: Path) -> None:
        self.repo = repo
        self._run("init", "-q", "--bare", repo)

    def backup(self, src: Path) -> None:
        # A bare repository with the work tree pointed at the data: nothing is copied, and
        # the repository holds only git's objects and index.
        work_tree, pathspec = (src, ".") if src.is_dir() else (src.parent, src.name)
        git = ("--git-dir", self.repo, "--work-tree", work_tree, "-c", "gc.auto=0",
               "-c", "user.name=vst-bench", "-c", "user.email=vst-bench@localhost")
        self._run(*git, "add", "-A", "--", pathspec)
        self._run(*git, "commit", "-q", "-m", "vst-bench")


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

    def init(self, repo: Path) -> None:
        self.repo = repo
        self._run("store", "init", repo)

    def backup(self, src: Path) -> None:
        verb = ("write-tree",) if src.is_dir() else ("hash-object", "-w")
        self.last_id = self._run("--store", self.repo, *verb, src).stdout.strip()

    def startup_ms(self, runs: int = 10) -> dict[str, float]:
        """Best-of-`runs` latency of `vst --version` and of one `cat-file -t` in a new store."""
        probe = Vst(self.scratch)  # its own store: leaves this runner's repository alone
        store, sample = self.scratch / "startup-store", self.scratch / "startup-object.txt"
        shutil.rmtree(store, ignore_errors=True)
        store.parent.mkdir(parents=True, exist_ok=True)
        sample.write_text("vst startup probe\n")
        probe.init(store)
        probe.backup(sample)
        commands = {"vst --version": ("--version",),
                    "vst cat-file -t": ("--store", store, "cat-file", "-t", probe.last_id)}
        best = {label: min(probe._run(*args).wall_s for _ in range(runs)) * 1000
                for label, args in commands.items()}
        shutil.rmtree(store)
        return best


PEERS = (Restic, Borg, Git)
ALL = (Vst, *PEERS)
BY_NAME = {tool.name: tool for tool in ALL}
