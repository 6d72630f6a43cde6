"""kill -9 during `vst commit` and `vst pull` (a sample of RELIABILITY S1 for working copies).

A real `vst commit` (then a real `vst pull` in a second working copy) is killed with SIGKILL
at spread-out moments. After each kill the store passes fsck and its head is the previous
commit or the complete new one, and the working copy is never stuck: the commands a user
would run next (`status`, then `commit`, or `pull` when the head moved past the base) bring
it to a state where the collection's head holds exactly the files on disk.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from vst.plumbing.fsck import fsck
from vst.store import Store
from vst.userkeys import UserKeys
from vst.workdir import WorkingCopy

KILLS = 8
VST = str(Path(sys.executable).parent / "vst")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_STATE_HOME": str(tmp_path / "state"), "VST_STORE": "",
            "VST_AUTHOR_NAME": "T", "VST_AUTHOR_EMAIL": "t@example.org",
            "VST_COMMITTER_NAME": "T", "VST_COMMITTER_EMAIL": "t@example.org"}


def _vst(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VST, *args], cwd=cwd, env=env, capture_output=True, text=True)


def _files(root: Path) -> dict[str, bytes]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".vst"]
        for name in filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def _killed_at(argv: list[str], cwd: Path, env: dict[str, str], delay: float) -> None:
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _check_store(store_path: str, env: dict[str, str]) -> str:
    """fsck passes and the reflog agrees with the head; returns the head."""
    store = Store.open(store_path)
    store.keyrings.source = UserKeys(os.path.join(env["XDG_CONFIG_HOME"], "vst", "keys"))
    try:
        head = store.read_ref("work")
        assert head is not None
        assert store.reflog("work")[-1].new == head
        assert fsck(store).problems == []
        return head.hex
    finally:
        store.close()


def _settle(copy: Path, env: dict[str, str]) -> None:
    """What a user does after a crash: look, then commit (pulling first if the head moved
    past the base, which is what a kill after the ref moved and before the base was saved
    leaves). Afterwards the head holds exactly the files on disk."""
    assert _vst(copy, env, "status").returncode == 0
    ran = _vst(copy, env, "commit", "-m", "after the crash")
    if ran.returncode == 16:
        pulled = _vst(copy, env, "pull")
        assert pulled.returncode == 0, pulled.stderr
        ran = _vst(copy, env, "commit", "-m", "after the crash")
    assert ran.returncode == 0, ran.stderr
    assert _vst(copy, env, "status", "--exit-code").returncode == 0


def test_kill_9_during_commit_and_pull(tmp_path: Path) -> None:
    rng = random.Random(7)
    env = _env(tmp_path)
    first = tmp_path / "first"
    first.mkdir()
    (first / "a.txt").write_bytes(b"first\n")
    assert _vst(first, env, "init", "-c", "work").returncode == 0
    assert _vst(first, env, "commit", "-m", "first").returncode == 0
    store_path = WorkingCopy.open(str(first)).store_url
    # Many small files and one chunked file, committed once to time a commit.
    for number in range(300):
        (first / "sub" / f"{number // 50}").mkdir(parents=True, exist_ok=True)
        (first / "sub" / f"{number // 50}" / f"f{number}").write_bytes(
            rng.randbytes(rng.randrange(1, 20_000)))
    (first / "big.bin").write_bytes(rng.randbytes(3_000_000))
    started = time.monotonic()
    assert _vst(first, env, "commit", "-m", "the many files").returncode == 0
    full_run = time.monotonic() - started  # each round's commit is about as big

    outcomes = {"commit killed before the ref moved": 0, "commit completed": 0, "pull": 0}
    for kill in range(KILLS):
        delay = 2 * full_run * (kill + 0.5) / KILLS  # from just started to done
        # commit, killed
        (first / "a.txt").write_bytes(f"round {kill}\n".encode())
        (first / "big.bin").write_bytes(rng.randbytes(3_000_000))  # work for every round
        for number in range(50):
            (first / "sub" / f"r{kill}-{number}").write_bytes(rng.randbytes(5_000))
        before = _check_store(store_path, env)
        _killed_at([VST, "commit", "-m", f"round {kill}"], first, env, delay)
        moved = _check_store(store_path, env) != before
        outcomes["commit completed" if moved else "commit killed before the ref moved"] += 1
        print(f"round {kill}: killed after {delay:.2f} s, head moved: {moved}")
        _settle(first, env)
        # pull into a clone of an older state, killed
        other = tmp_path / f"other{kill}"
        assert _vst(tmp_path, env, "clone", "--rev", "work~1", "work", other.name) \
            .returncode == 0
        _killed_at([VST, "pull"], other, env, delay / 2)
        _check_store(store_path, env)
        pulled = _vst(other, env, "pull")
        assert pulled.returncode == 0, pulled.stderr
        assert _files(other) == _files(first)
        assert _vst(other, env, "status", "--exit-code").returncode == 0
        outcomes["pull"] += 1
        shutil.rmtree(other)
    assert outcomes["pull"] == KILLS
    assert outcomes["commit killed before the ref moved"] > 0, outcomes
