"""kill -9 during a backup leaves the previous commit intact (a sample of RELIABILITY S1).

A real `vst write-tree && vst commit-tree && vst update-ref` pipeline is killed with
SIGKILL at spread-out moments. After each kill: the store passes fsck, the head is the
previous commit or the complete new one, the reflog agrees with the head, and what the
head names reads back byte-exact. The full count (every syscall, strace-injected) belongs
to the torture target; this is the fast sample.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from vst.objects.commit import Signature
from vst.objects.oid import Oid
from vst.plumbing.cat_file import file_content
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.fsck import fsck
from vst.plumbing.rev_parse import rev_parse
from vst.plumbing.update_ref import update_ref
from vst.plumbing.write_tree import write_tree
from vst.store import Store

SIG = Signature("T", "t@example.org", 1_700_000_000, 0)
KILLS = 12


def _pipeline(source: Path, parent: str) -> list[str]:
    vst = str(Path(sys.executable).parent / "vst")
    script = (f'set -e; t=$("{vst}" write-tree "{source}"); '
              f'c=$("{vst}" commit-tree "$t" -p {parent} -m second); '
              f'"{vst}" update-ref c "$c" {parent}')
    return ["bash", "-c", script]


def test_kill_9_at_any_moment_leaves_a_consistent_store(tmp_path: Path) -> None:
    rng = random.Random(9)
    path = str(tmp_path / "store")
    store = Store.init(path, pack_size=64 * 1024)  # many packs: many moments to die in
    store.create_collection("c")
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"first\n")
    first = commit_tree(store, write_tree(store, str(source), processes=False), [], b"first\n",
                        author=SIG, committer=SIG)
    update_ref(store, "c", first, None, committer=SIG, message="first")
    store.close()
    (source / "a.txt").write_bytes(b"second\n")
    for number in range(40):
        (source / "sub" / f"f{number}").write_bytes(rng.randbytes(rng.randrange(1, 40_000)))
    (source / "big.bin").write_bytes(rng.randbytes(2_500_000))
    env = {**os.environ, "VST_STORE": path}

    started = time.monotonic()
    subprocess.run(_pipeline(source, first.hex), env=env, check=True,
                   capture_output=True)
    full_run = time.monotonic() - started
    _reset(path, first)

    outcomes = {"kept the previous commit": 0, "completed": 0}
    for kill in range(KILLS):
        process = subprocess.Popen(_pipeline(source, first.hex), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(full_run * (kill + 0.5) / KILLS)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        store = Store.open(path)
        try:
            head = store.read_ref("c")
            assert store.reflog("c")[-1].new == head
            assert fsck(store).problems == []
            assert b"".join(file_content(store, rev_parse(store, f"{first}:a.txt"))) == \
                b"first\n"
            if head == first:
                outcomes["kept the previous commit"] += 1
            else:
                outcomes["completed"] += 1
                assert store.odb.read_commit(head).parents == (first,)
                assert b"".join(file_content(store, rev_parse(store, "c:big.bin"))) == \
                    (source / "big.bin").read_bytes()
        finally:
            store.close()
        _reset(path, first)
    assert outcomes["kept the previous commit"] > 0, outcomes


def _reset(path: str, first: Oid) -> None:
    store = Store.open(path)
    try:
        head = store.read_ref("c")
        if head != first:
            update_ref(store, "c", first, head, committer=SIG, message="reset")
    finally:
        store.close()
