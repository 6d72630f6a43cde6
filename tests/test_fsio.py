"""The durable-write layer: the order of its steps, and what a failure at each step leaves.

``FaultyFileSystem`` overrides the primitives of ``vst.fsio.FileSystem``: it logs every call
and can fail the Nth call of one primitive with an OSError, *before* doing it (the real
operations run otherwise, on a real directory).
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path

import pytest

from vst.errors import AccessDenied, NotFound, VolumeFull, VolumeIOError, VstError
from vst.fsio import FileSystem
from vst.remotes.local import LocalVolume

ERRNOS = {
    errno.EIO: VolumeIOError,
    errno.ENOSPC: VolumeFull,
    errno.EDQUOT: VolumeFull,
    errno.EROFS: AccessDenied,
    errno.EACCES: AccessDenied,
}
OLD, NEW = b"old content\n", b"new content, longer than the old one\n" * 50


class FaultyFileSystem(FileSystem):
    """Records ``(primitive, target)`` for every call; fails the ``fail_at``-th call
    (0-based) of primitive ``fail_op`` with ``fail_errno``."""

    def __init__(self, fail_op: str | None = None, fail_at: int = 0,
                 fail_errno: int = errno.EIO) -> None:
        self.log: list[tuple[str, object]] = []
        self.counts: Counter[str] = Counter()
        self.fds: dict[int, str] = {}
        self.fail = (fail_op, fail_at, fail_errno)
        self.failed = False

    def _step(self, op: str, target: object) -> None:
        n = self.counts[op]
        self.counts[op] += 1
        self.log.append((op, target))
        fail_op, fail_at, fail_errno = self.fail
        if op == fail_op and n == fail_at:
            self.failed = True
            raise OSError(fail_errno, os.strerror(fail_errno), str(target))

    def _open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._step("open", path)
        fd = super()._open(path, flags, mode)
        self.fds[fd] = path
        return fd

    def _write(self, fd: int, data: memoryview) -> int:
        self._step("write", self.fds[fd])
        return super()._write(fd, data)

    def _fsync(self, fd: int) -> None:
        self._step("fsync", (self.fds[fd], fd))
        super()._fsync(fd)

    def _close(self, fd: int) -> None:
        path = self.fds.pop(fd)
        super()._close(fd)  # close() releases the descriptor even when it reports an error
        self._step("close", path)

    def _rename(self, src: str, dst: str) -> None:
        self._step("rename", (src, dst))
        super()._rename(src, dst)

    def _link(self, src: str, dst: str) -> None:
        self._step("link", (src, dst))
        super()._link(src, dst)

    def _unlink(self, path: str) -> None:
        self._step("unlink", path)
        super()._unlink(path)

    def _mkdir(self, path: str, mode: int = 0o755) -> None:
        self._step("mkdir", path)
        super()._mkdir(path, mode)

    def ops(self) -> list[str]:
        return [op for op, _ in self.log]


class ShortWriteFileSystem(FileSystem):
    """write() may write less than asked: at most 7 bytes per call."""

    def _write(self, fd: int, data: memoryview) -> int:
        return super()._write(fd, data[:7])


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "dir" / "file"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name != "file")


# -- the order of the steps -------------------------------------------------------------

OVERWRITE_STEPS = ["open", "write", "fsync", "close", "link", "rename", "open", "fsync",
                   "close"]
NO_OVERWRITE_STEPS = ["open", "write", "fsync", "close", "link", "unlink", "open", "fsync",
                      "close"]
RENAME_AT = OVERWRITE_STEPS.index("rename")
LINK_AT = NO_OVERWRITE_STEPS.index("link")


def test_write_order(target: Path) -> None:
    fs = FaultyFileSystem()
    assert fs.write_file(str(target), NEW) is True
    assert target.read_bytes() == NEW
    assert fs.ops() == OVERWRITE_STEPS
    temp = fs.log[0][1]
    assert isinstance(temp, str)
    assert os.path.dirname(temp) == str(target.parent)
    assert os.path.basename(temp).startswith(".tmp-")
    assert fs.log[1][1] == temp and fs.log[2][1][0] == temp
    assert fs.log[RENAME_AT][1] == (temp, str(target))
    assert fs.log[RENAME_AT - 1][1][0] == str(target)  # the previous version kept aside
    assert fs.log[RENAME_AT + 1][1] == str(target.parent)
    assert fs.log[RENAME_AT + 2][1][0] == str(target.parent)
    assert leftovers(target.parent) == []


def test_write_order_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "file"
    fs = FaultyFileSystem()
    assert fs.write_file(str(path), NEW, overwrite=False) is True
    assert path.read_bytes() == NEW
    assert fs.ops() == NO_OVERWRITE_STEPS
    temp = fs.log[0][1]
    assert fs.log[LINK_AT][1] == (temp, str(path))
    assert fs.log[LINK_AT + 1][1] == temp
    assert fs.log[-2][1][0] == str(tmp_path)
    assert leftovers(tmp_path) == []


def test_no_overwrite_keeps_the_existing_file(target: Path) -> None:
    fs = FaultyFileSystem()
    assert fs.write_file(str(target), NEW, overwrite=False) is False
    assert target.read_bytes() == OLD
    assert "rename" not in fs.ops()
    assert leftovers(target.parent) == []


def test_short_writes_are_completed(target: Path) -> None:
    ShortWriteFileSystem().write_file(str(target), NEW)
    assert target.read_bytes() == NEW
    ShortWriteFileSystem().append(str(target), b"tail")
    assert target.read_bytes() == NEW + b"tail"


def test_pieces_are_written_in_turn_each_as_it_comes(target: Path) -> None:
    fs = FaultyFileSystem()
    made: list[int] = []

    def pieces():  # each made only once the one before is written
        for n in range(3):
            made.append(fs.counts["write"])
            yield NEW[n::3]

    assert fs.write_pieces(str(target), pieces()) is True
    assert target.read_bytes() == NEW[0::3] + NEW[1::3] + NEW[2::3]
    assert made == [0, 1, 2]
    ShortWriteFileSystem().write_pieces(str(target), [b"", NEW, bytearray(b"tail")])
    assert target.read_bytes() == NEW + b"tail"
    assert leftovers(target.parent) == []


def test_pieces_that_fail_leave_the_file_as_it_was(target: Path) -> None:
    def pieces():
        yield NEW
        raise ValueError("the maker gave up")

    with pytest.raises(ValueError, match="gave up"):
        FileSystem().write_pieces(str(target), pieces())
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_empty_file(target: Path) -> None:
    fs = FaultyFileSystem()
    fs.write_file(str(target), b"")
    assert target.read_bytes() == b""
    assert "fsync" in fs.ops()


def test_makedirs_fsyncs_each_new_parent(tmp_path: Path) -> None:
    fs = FaultyFileSystem()
    fs.makedirs(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
    assert fs.log == [
        ("mkdir", str(tmp_path / "a")),
        ("open", str(tmp_path)),
        ("fsync", (str(tmp_path), fs.log[2][1][1])),
        ("close", str(tmp_path)),
        ("mkdir", str(tmp_path / "a" / "b")),
        ("open", str(tmp_path / "a")),
        ("fsync", (str(tmp_path / "a"), fs.log[6][1][1])),
        ("close", str(tmp_path / "a")),
    ]
    again = FaultyFileSystem()
    again.makedirs(str(tmp_path / "a" / "b"))
    assert again.log == []


def test_append_order(tmp_path: Path) -> None:
    path = tmp_path / "log"
    fs = FaultyFileSystem()
    fs.append(str(path), b"one\n")
    assert fs.ops() == ["open", "write", "fsync", "close", "open", "fsync", "close"]
    fs = FaultyFileSystem()
    fs.append(str(path), b"two\n")
    assert fs.ops() == ["open", "write", "fsync", "close"]  # existing: no directory fsync
    assert path.read_bytes() == b"one\ntwo\n"


def test_remove(target: Path) -> None:
    fs = FaultyFileSystem()
    fs.remove(str(target))
    assert not target.exists()
    assert fs.ops() == ["unlink", "open", "fsync", "close"]
    fs = FaultyFileSystem()
    fs.remove(str(target))  # already gone: not an error, nothing to fsync
    assert fs.ops() == ["unlink"]


# -- failures at each step --------------------------------------------------------------


def _cases(steps: list[str]) -> list[tuple[str, int, int]]:
    seen: Counter[str] = Counter()
    cases = []
    for position, op in enumerate(steps):
        cases.append((op, seen[op], position))
        seen[op] += 1
    return cases


@pytest.mark.parametrize("err", sorted(ERRNOS), ids=errno.errorcode.get)
@pytest.mark.parametrize(("op", "nth", "position"), _cases(OVERWRITE_STEPS),
                         ids=[f"{op}#{n}" for op, n, _ in _cases(OVERWRITE_STEPS)])
def test_write_failure(target: Path, op: str, nth: int, position: int, err: int) -> None:
    fs = FaultyFileSystem(op, nth, err)
    with pytest.raises(ERRNOS[err]) as info:
        fs.write_file(str(target), NEW)
    assert fs.failed
    assert str(target) in str(info.value)
    assert leftovers(target.parent) == []
    # Whether or not the rename happened, a failed write leaves the previous content.
    assert target.read_bytes() == OLD
    if position < RENAME_AT:
        assert "rename" not in fs.ops()


@pytest.mark.parametrize(("op", "nth"), [("open", 1), ("fsync", 1), ("close", 1)])
def test_failed_directory_fsync_keeps_the_previous_content(target: Path, op: str,
                                                          nth: int) -> None:
    fs = FaultyFileSystem(op, nth, errno.EIO)
    with pytest.raises(VolumeIOError):
        fs.write_file(str(target), NEW)
    assert target.read_bytes() == OLD


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EROFS],
                         ids=errno.errorcode.get)
@pytest.mark.parametrize(("op", "nth", "position"), _cases(NO_OVERWRITE_STEPS),
                         ids=[f"{op}#{n}" for op, n, _ in _cases(NO_OVERWRITE_STEPS)])
def test_write_failure_without_overwrite(tmp_path: Path, op: str, nth: int, position: int,
                                         err: int) -> None:
    path = tmp_path / "file"
    fs = FaultyFileSystem(op, nth, err)
    with pytest.raises(ERRNOS[err]):
        fs.write_file(str(path), NEW, overwrite=False)
    assert leftovers(tmp_path) == []
    assert not path.exists()  # a failed write leaves what was there: nothing


@pytest.mark.parametrize("op", ["open", "write", "fsync", "close", "link", "unlink"])
def test_no_overwrite_failure_keeps_the_existing_file(target: Path, op: str) -> None:
    fs = FaultyFileSystem(op, 0, errno.EIO)
    with pytest.raises(VolumeIOError):
        fs.write_file(str(target), NEW, overwrite=False)
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_a_failed_fsync_is_never_retried(target: Path) -> None:
    fs = FaultyFileSystem("fsync", 0, errno.EIO)
    with pytest.raises(VolumeIOError):
        fs.write_file(str(target), NEW)
    fsyncs = [t for op, t in fs.log if op == "fsync"]
    assert len(fsyncs) == 1
    assert fs.ops()[-1] in ("close", "fsync")
    assert "rename" not in fs.ops()
    assert target.read_bytes() == OLD


@pytest.mark.parametrize("err", sorted(ERRNOS), ids=errno.errorcode.get)
@pytest.mark.parametrize(("op", "nth"), [("mkdir", 0), ("mkdir", 1), ("open", 0),
                                         ("fsync", 0), ("fsync", 1)])
def test_makedirs_failure(tmp_path: Path, op: str, nth: int, err: int) -> None:
    fs = FaultyFileSystem(op, nth, err)
    with pytest.raises(ERRNOS[err], match="cannot create directory"):
        fs.makedirs(str(tmp_path / "a" / "b"))
    if (op, nth) == ("mkdir", 0):
        assert not (tmp_path / "a").exists()


def test_makedirs_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"")
    with pytest.raises(VstError):
        FileSystem().makedirs(str(tmp_path / "a" / "b"))


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EROFS],
                         ids=errno.errorcode.get)
@pytest.mark.parametrize("op", ["open", "write", "fsync"])
def test_append_failure(target: Path, op: str, err: int) -> None:
    fs = FaultyFileSystem(op, 0, err)
    with pytest.raises(ERRNOS[err], match="cannot append"):
        fs.append(str(target), b"more")
    assert target.read_bytes() in (OLD, OLD + b"more")


@pytest.mark.parametrize("op", ["unlink", "open", "fsync"])
def test_remove_failure(target: Path, op: str) -> None:
    fs = FaultyFileSystem(op, 0, errno.EROFS)
    with pytest.raises(AccessDenied, match="cannot remove"):
        fs.remove(str(target))
    assert target.exists() == (op == "unlink")


def test_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        FileSystem().write_file(str(tmp_path / "nope" / "file"), b"x")


# -- through a local volume ---------------------------------------------------------------


@pytest.mark.parametrize(("op", "nth"), [("mkdir", 0), ("write", 0), ("fsync", 0),
                                         ("rename", 0)])
def test_volume_store_failure_leaves_nothing_visible(tmp_path: Path, op: str,
                                                     nth: int) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    volume = LocalVolume(str(root), FaultyFileSystem(op, nth, errno.ENOSPC))
    with pytest.raises(VolumeFull):
        volume.store("packs/ab/abcdef", NEW)
    assert list(volume.list()) == []
    assert not volume.exists("packs/ab/abcdef")
    assert [p for p in root.rglob("*") if p.is_file()] == []
