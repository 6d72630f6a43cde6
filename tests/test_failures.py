"""A failure at any durable-write step of a backup leaves the previous commit intact.

Samples of RELIABILITY.md S3 (EIO and ENOSPC injected at every I/O step of write-tree,
commit-tree and update-ref) and of invariant 1: after each injected failure the command
reports a clear error, the ref has not moved (0 refs moved after a failed fsync), the
store passes fsck, the previous commit still reads back byte-exact, and no temporary
file is left where a reader could see it.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from vst.errors import VstError
from vst.fsio import FileSystem
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


class FailAtStep(FileSystem):
    """Fails the ``fail_at``-th primitive call (any kind, 0-based, across threads)."""

    def __init__(self, fail_at: int, fail_errno: int) -> None:
        self.fail_at = fail_at
        self.fail_errno = fail_errno
        self.steps = 0
        self.failed = False
        self._lock = threading.Lock()

    def _step(self, target: object) -> None:
        with self._lock:
            step = self.steps
            self.steps += 1
        if step == self.fail_at:
            self.failed = True
            raise OSError(self.fail_errno, os.strerror(self.fail_errno), str(target))

    def _open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._step(path)
        return super()._open(path, flags, mode)

    def _write(self, fd: int, data: memoryview) -> int:
        self._step(fd)
        return super()._write(fd, data)

    def _fsync(self, fd: int) -> None:
        self._step(fd)
        super()._fsync(fd)

    def _rename(self, src: str, dst: str) -> None:
        self._step(dst)
        super()._rename(src, dst)

    def _link(self, src: str, dst: str) -> None:
        self._step(dst)
        super()._link(src, dst)

    def _unlink(self, path: str) -> None:
        self._step(path)
        super()._unlink(path)

    def _mkdir(self, path: str, mode: int = 0o755) -> None:
        self._step(path)
        super()._mkdir(path, mode)


def _backup(store: Store, source: Path, parent: Oid) -> Oid:
    tree = write_tree(store, str(source), processes=False)
    commit = commit_tree(store, tree, [parent], b"second\n", author=SIG, committer=SIG)
    update_ref(store, "c", commit, parent, committer=SIG, message="second")
    return commit


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


@pytest.mark.parametrize("fail_errno", [errno.EIO, errno.ENOSPC], ids=errno.errorcode.get)
def test_a_failure_at_any_step_leaves_the_previous_commit(tmp_path: Path,
                                                          fail_errno: int) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"first version\n")
    (source / "sub" / "big.bin").write_bytes(os.urandom(600_000))
    path = str(tmp_path / "store")
    store = Store.init(path)
    store.create_collection("c")
    tree = write_tree(store, str(source), processes=False)
    first = commit_tree(store, tree, [], b"first\n", author=SIG, committer=SIG)
    update_ref(store, "c", first, None, committer=SIG, message="first")
    store.close()
    (source / "a.txt").write_bytes(b"second version\n")
    (source / "new.txt").write_bytes(os.urandom(5000))

    failures = 0
    for fail_at in range(10_000):
        faulty = FailAtStep(fail_at, fail_errno)
        store = Store.open(path, fs=faulty)
        try:
            _backup(store, source, first)
            succeeded = True
        except VstError:
            succeeded = False
        finally:
            store.close()
        if not faulty.failed:  # fail_at is past the last step: the backup went through
            assert succeeded
            break
        failures += 1
        store = Store.open(path)
        try:
            if not succeeded:
                assert store.read_ref("c") == first, f"ref moved after failing step {fail_at}"
            head = store.read_ref("c")
            assert store.reflog("c")[-1].new == head
            assert fsck(store).problems == []
            assert b"".join(file_content(store, rev_parse(store, f"{first}:a.txt"))) == \
                b"first version\n"
            if head != first:  # a failure in a mirror to meta/ is only a warning
                assert b"".join(file_content(store, rev_parse(store, "c:a.txt"))) == \
                    b"second version\n"
                update_ref(store, "c", first, head, committer=SIG, message="reset")
        finally:
            store.close()
        assert _temporaries(tmp_path / "store" / "refs") == []
        assert _temporaries(tmp_path / "store" / "volumes") == []
    assert failures >= 20, f"only {failures} steps: the injector should hit every step"
