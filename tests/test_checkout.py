"""The checkout engine (vst/checkout/): round trips through write_tree, and the rules for
what is replaced, linked, refused and cleaned up. Real files in tmp_path throughout."""

from __future__ import annotations

import gc
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import vst.checkout
import vst.checkout.files
from vst.checkout import Checkout, Placed
from vst.errors import CorruptObject, ObjectMissing, Refused, VstError
from vst.objects.chunking import ChunkParams
from vst.objects.chunks import ChunkList
from vst.objects.oid import Oid
from vst.objects.tree import S_IFDIR, S_IFLNK, S_IFREG, Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.write_tree import write_tree
from vst.store import Store

MTIME = 1_600_000_000_123_456_789
TEMP_PREFIX = ".vst-tmp-"


def put(store: Store, kind: ObjectType, data: bytes) -> Oid:
    with store.odb.writer() as writer:
        return writer.put(kind, data)


def blob(store: Store, data: bytes) -> Oid:
    return put(store, ObjectType.BLOB, data)


def file_entry(store: Store, name: bytes, data: bytes, mode: int = 0o644,
               attrs: tuple[tuple[str, bytes], ...] = (), mtime_ns: int = MTIME) -> TreeEntry:
    return TreeEntry(name, S_IFREG | mode, ObjectType.BLOB, blob(store, data), len(data),
                     mtime_ns, attrs)


def file_entries(store: Store, contents: dict[bytes, bytes]) -> list[TreeEntry]:
    """Many files at once: their blobs go into one pack."""
    with store.odb.writer() as writer:
        return [TreeEntry(name, S_IFREG | 0o644, ObjectType.BLOB,
                          writer.put(ObjectType.BLOB, data), len(data), MTIME)
                for name, data in contents.items()]


def link_entry(store: Store, name: bytes, target: bytes) -> TreeEntry:
    return TreeEntry(name, S_IFLNK | 0o777, ObjectType.BLOB, blob(store, target), len(target),
                     MTIME)


def dir_entry(store: Store, name: bytes, entries: list[TreeEntry], mode: int = 0o755,
              mtime_ns: int = MTIME) -> TreeEntry:
    oid = put(store, ObjectType.TREE, Tree.from_entries(entries).encode())
    return TreeEntry(name, S_IFDIR | mode, ObjectType.TREE, oid, 0, mtime_ns)


def restore(store: Store, tree: Oid, target: Path, **options: object) -> list[Placed]:
    """Every entry of ``tree`` written at the root of ``target``."""
    with Checkout(store, str(target), **options) as checkout:  # type: ignore[arg-type]
        for entry in store.odb.read_tree(tree).entries:
            checkout.write(entry.name, entry)
        return checkout.finish()


def write_one(store: Store, target: Path, path: bytes, entry: TreeEntry,
              **options: object) -> list[Placed]:
    with Checkout(store, str(target), **options) as checkout:  # type: ignore[arg-type]
        checkout.write(path, entry)
        return checkout.finish()


def describe(root: Path, *, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Every path below ``root`` (not following symlinks): type, permission bits, content or
    target, and the mtime in nanoseconds."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                what: object = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                what = "dir"
            else:
                what = ("file", Path(path).read_bytes())
            found[rel] = (what, stat.S_IMODE(st.st_mode), st.st_mtime_ns if times else 0)
    return found


def temp_files(root: Path) -> list[str]:
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.startswith(TEMP_PREFIX)]


@pytest.fixture
def sample(tmp_path: Path, make_tree: Callable[..., Path]) -> Path:
    """A directory with what a backup must keep, every mtime set to the nanosecond."""
    root = make_tree(tmp_path / "src", {
        "a.txt": "alpha\n", "empty.txt": b"", "run.sh": "#!/bin/sh\n",
        "private": b"\x00secret\xff" * 100,
        "sub": {"deeper": {"c.txt": "gamma\n"}, "b.bin": os.urandom(5000)},
        "empty-dir": {}, "readonly-dir": {"inside": "x"},
        "link": ("symlink", "a.txt"), "dangling": ("symlink", "nowhere/at/all"),
        "abs-link": ("symlink", "/etc/hostname"), "dir-link": ("symlink", "sub"),
        "\u00e9t\u00e9 \u2603 name with spaces": "unicode\n",
    })
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "private", 0o600)
    os.chmod(root / "sub", 0o750)
    for number, (dirpath, dirnames, filenames) in enumerate(os.walk(root, topdown=False)):
        for offset, name in enumerate(filenames + dirnames):
            ns = MTIME + number * 1_000_003 + offset * 7
            os.utime(os.path.join(dirpath, name), ns=(ns, ns), follow_symlinks=False)
    os.chmod(root / "readonly-dir", 0o555)
    return root


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("threads", [1, None])
def test_round_trip_keeps_bytes_modes_times_and_links(store: Store, sample: Path,
                                                      tmp_path: Path, threads: int | None,
                                                      in_place: bool) -> None:
    tree = write_tree(store, str(sample))
    target = tmp_path / "target"
    target.mkdir()
    counted: list[int] = []
    placed = restore(store, tree, target, threads=threads, on_bytes=counted.append,
                     in_place=in_place, empty_root=in_place)
    assert describe(target) == describe(sample)
    assert sum(counted) == sum(p.entry.size for p in placed if not p.entry.is_dir)
    paths = [p.path for p in placed]
    assert paths == sorted(paths)
    assert set(paths) == {os.fsencode(p) for p in describe(sample)}
    for item in placed:
        st = os.lstat(os.path.join(os.fsencode(target), item.path))
        assert (item.ino, item.ctime_ns) == (st.st_ino, st.st_ctime_ns), item.path


@pytest.mark.parametrize("in_place", [False, True])
def test_round_trip_through_worker_processes(store: Store, sample: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            in_place: bool) -> None:
    monkeypatch.setattr(vst.checkout, "PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(vst.checkout, "JOB_FILES", 2)
    tree = write_tree(store, str(sample))
    target = tmp_path / "target"
    target.mkdir()
    with Checkout(store, str(target), in_place=in_place) as checkout:
        for entry in store.odb.read_tree(tree).entries:
            checkout.write(entry.name, entry)
        placed = checkout.finish()
        assert checkout._processes is not None  # the work did go to worker processes
    assert describe(target) == describe(sample)
    for item in placed:
        st = os.lstat(os.path.join(os.fsencode(target), item.path))
        assert (item.ino, item.ctime_ns) == (st.st_ino, st.st_ctime_ns), item.path


@pytest.mark.parametrize("folders", [1, 6])
def test_worker_processes_start_early_only_when_more_folders_are_coming(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders: int) -> None:
    """Past EARLY_THRESHOLD small files, processes start if the walk has DIRS_AHEAD folders
    yet to enter; a smaller checkout stays on threads until PROCESS_THRESHOLD."""
    monkeypatch.setattr(vst.checkout, "EARLY_THRESHOLD", 20)
    monkeypatch.setattr(vst.checkout, "DIRS_AHEAD", 4)
    monkeypatch.setattr(vst.checkout, "PROCESS_THRESHOLD", 1000)
    monkeypatch.setattr(vst.checkout, "JOB_FILES", 5)
    source = tmp_path / "src"
    for number in range(60):
        folder = source / "top" / f"d{number % folders}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{number}").write_bytes(b"%d" % number)
    (top,) = store.odb.read_tree(write_tree(store, str(source))).entries
    target = tmp_path / "target"
    target.mkdir()
    with Checkout(store, str(target)) as checkout:
        checkout.write(top.name, top)
        checkout.finish()
        assert (checkout._processes is not None) == (folders == 6)
    assert sorted(os.listdir(target / "top")) == [f"d{n}" for n in range(folders)]
    assert sum(len(files) for _, _, files in os.walk(target)) == 60


def test_a_killed_worker_process_is_a_clear_error(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-checkout (out of memory, a signal) ends it with a one-line error,
    not a hang or a traceback."""
    monkeypatch.setattr(vst.checkout, "PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(vst.checkout, "JOB_FILES", 1)
    source = tmp_path / "src"
    source.mkdir()
    for number in range(40):
        (source / f"f{number}").write_bytes(b"%d" % number)
    tree = store.odb.read_tree(write_tree(store, str(source)))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(VstError, match="a worker process died") as raised, \
            Checkout(store, str(target)) as checkout:
        first, *rest = tree.entries
        checkout.write(first.name, first)
        assert checkout._processes is not None
        for process in list(checkout._processes._processes.values()):  # type: ignore[union-attr]
            os.kill(process.pid, signal.SIGKILL)
        for entry in rest:
            checkout.write(entry.name, entry)
        checkout.finish()
    assert "\n" not in str(raised.value)


def test_a_clones_cache_is_the_stat_cache_of_what_it_wrote(store: Store, sample: Path,
                                                           tmp_path: Path) -> None:
    from vst.porcelain.clone import _ClonedCache, cache_entries
    from vst.workdir import CacheEntry, StatCache, encode_cache

    tree = write_tree(store, str(sample))
    target = tmp_path / "target"
    target.mkdir()
    placed = restore(store, tree, target)
    assert len(placed) > 10
    now = 1_800_000_000 * 10**9
    entries = cache_entries(placed)
    for item in placed:  # each file's status as the checkout left it; none for folders
        verified = not item.entry.is_dir
        assert entries[item.path] == CacheEntry(
            item.entry.mode, item.entry.kind, item.entry.oid, item.entry.size,
            item.entry.mtime_ns, item.ctime_ns if verified else 0,
            item.ino if verified else 0, item.entry.attrs)
    expected = b"".join(StatCache(tree, entries).encode(now))
    assert b"".join(_ClonedCache(tree, placed).encode(now)) == expected
    assert placed == []  # each record let go on the way
    decoded = StatCache.decode(expected)
    assert decoded is not None and decoded.entries == entries
    with pytest.raises(ValueError, match="2 entries"):
        b"".join(encode_cache(tree, 2, iter([]), now))


def test_a_worker_process_refuses_a_replaced_root(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vst.checkout.files, "_process_writer", None)
    (tmp_path / "root").mkdir()
    handler = signal.getsignal(signal.SIGINT)
    try:  # what a worker process runs first, run here
        vst.checkout.files._process_init(store.path, store.odb.index.path, [],
                                         store.odb.spool_dir, str(tmp_path / "root"), (0, 0))
    finally:
        signal.signal(signal.SIGINT, handler)
    with pytest.raises(Refused, match="replaced"):
        vst.checkout.files._process_job(0, [])


@pytest.mark.parametrize("in_place", [False, True])
def test_restoring_twice_over_itself_is_idempotent(store: Store, sample: Path,
                                                   tmp_path: Path, in_place: bool) -> None:
    tree = write_tree(store, str(sample))
    target = tmp_path / "target"
    target.mkdir()
    restore(store, tree, target, in_place=in_place)
    restore(store, tree, target, in_place=in_place)
    assert describe(target) == describe(sample)
    assert temp_files(target) == []


@pytest.mark.parametrize("in_place", [False, True])
def test_large_chunked_files(tmp_path: Path, in_place: bool) -> None:
    store = Store.init(str(tmp_path / "store"),
                       chunk_params=ChunkParams(64 * 1024, 128 * 1024, 256 * 1024))
    try:
        src = tmp_path / "src"
        src.mkdir()
        big = os.urandom(3 * 1024 * 1024 + 17)
        (src / "big").write_bytes(big)
        (src / "twice").write_bytes(big[:1_000_000] * 2)  # repeated chunks
        tree = write_tree(store, str(src))
        kinds = {e.name: e.kind for e in store.odb.read_tree(tree).entries}
        assert kinds == {b"big": ObjectType.CHUNKS, b"twice": ObjectType.CHUNKS}
        target = tmp_path / "target"
        target.mkdir()
        counted: list[int] = []
        restore(store, tree, target, on_bytes=counted.append, in_place=in_place,
                empty_root=in_place)
        assert describe(target) == describe(src)
        assert sum(counted) == len(big) + 2_000_000
    finally:
        store.close()


def test_nanosecond_times_of_every_kind(store: Store, tmp_path: Path) -> None:
    entries = [file_entry(store, b"f", b"x", mtime_ns=MTIME + 1),
               TreeEntry(b"l", S_IFLNK | 0o777, ObjectType.BLOB, blob(store, b"f"), 1,
                         MTIME + 2),
               dir_entry(store, b"d", [], mtime_ns=MTIME + 3),
               file_entry(store, b"old", b"y", mtime_ns=-1_234_567_891)]
    top = dir_entry(store, b"top", entries, mtime_ns=MTIME + 4)
    target = tmp_path / "target"
    target.mkdir()
    write_one(store, target, b"top", top)
    times = {name: os.lstat(target / "top" / name).st_mtime_ns for name in ("f", "l", "d", "old")}
    assert times == {"f": MTIME + 1, "l": MTIME + 2, "d": MTIME + 3, "old": -1_234_567_891}
    assert os.lstat(target / "top").st_mtime_ns == MTIME + 4


# -- hard links and extended attributes ------------------------------------------------------


def test_hardlinks_share_an_inode(store: Store, tmp_path: Path) -> None:
    data = b"shared content\n"
    leader = file_entry(store, b"a", data)
    # The follower comes first in the walk (a top-level file before a subdirectory's).
    tree = [file_entry(store, b"b", data, attrs=(("hardlink", b"sub/a"),)),
            dir_entry(store, b"sub", [leader]),
            file_entry(store, b"c", data, attrs=(("hardlink", b"sub/a"),)),
            # Same leader, other content: written as its own file, never linked.
            file_entry(store, b"d", b"other", attrs=(("hardlink", b"sub/a"),)),
            # A leader that is not there: written as its own file.
            file_entry(store, b"e", data, attrs=(("hardlink", b"nope"),))]
    oid = put(store, ObjectType.TREE, Tree.from_entries(tree).encode())
    target = tmp_path / "target"
    target.mkdir()
    placed = {p.path: p for p in restore(store, oid, target)}
    ino = os.lstat(target / "sub" / "a").st_ino
    assert os.lstat(target / "b").st_ino == ino == os.lstat(target / "c").st_ino
    assert os.lstat(target / "sub" / "a").st_nlink == 3
    assert os.lstat(target / "d").st_ino != ino and (target / "d").read_bytes() == b"other"
    assert os.lstat(target / "e").st_ino != ino and (target / "e").read_bytes() == data
    for path in (b"b", b"c", b"sub/a", b"d", b"e"):
        st = os.lstat(os.path.join(os.fsencode(target), path))
        assert (placed[path].ino, placed[path].ctime_ns) == (st.st_ino, st.st_ctime_ns)


def _xattrs_supported(where: Path) -> bool:
    probe = where / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def test_user_xattrs_are_restored(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    if not _xattrs_supported(target):
        pytest.skip("this filesystem has no user xattrs")
    attrs = (("xattr.user.comment", b"kept"), ("xattr.user.empty", b""), ("zz.unknown", b"?"))
    sub = dir_entry(store, b"d", [file_entry(store, b"f", b"x", attrs=attrs)])
    sub = TreeEntry(sub.name, sub.mode, sub.kind, sub.oid, 0, MTIME,
                    (("xattr.user.on-dir", b"yes"),))
    write_one(store, target, b"d", sub)
    assert os.getxattr(target / "d" / "f", "user.comment") == b"kept"
    assert os.getxattr(target / "d" / "f", "user.empty") == b""
    assert sorted(os.listxattr(target / "d" / "f")) == ["user.comment", "user.empty"]
    assert os.getxattr(target / "d", "user.on-dir") == b"yes"


def test_setuid_and_setgid_are_dropped_with_one_warning(store: Store, tmp_path: Path) -> None:
    entries = [file_entry(store, b"suid", b"x", 0o4755), file_entry(store, b"sgid", b"y", 0o2750),
               file_entry(store, b"sticky", b"z", 0o1644)]
    sub = dir_entry(store, b"d", entries, mode=0o2775)
    target = tmp_path / "target"
    target.mkdir()
    warnings: list[str] = []
    write_one(store, target, b"d", sub, warn=warnings.append)
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in (target / "d").iterdir()}
    assert modes == {"suid": 0o755, "sgid": 0o750, "sticky": 0o1644}
    assert stat.S_IMODE((target / "d").lstat().st_mode) == 0o775
    assert len(warnings) == 1 and "setuid" in warnings[0]


# -- overlay and replacement ---------------------------------------------------------------


def test_overlay_leaves_unnamed_files_alone(store: Store, tmp_path: Path,
                                            make_tree: Callable[..., Path]) -> None:
    target = make_tree(tmp_path / "target", {"d": {"mine": "keep me", "theirs": "old"},
                                             "top-mine": "keep"})
    sub = dir_entry(store, b"d", [file_entry(store, b"theirs", b"new"),
                                  file_entry(store, b"added", b"+")])
    write_one(store, target, b"d", sub)
    assert (target / "d" / "mine").read_bytes() == b"keep me"
    assert (target / "d" / "theirs").read_bytes() == b"new"
    assert (target / "d" / "added").read_bytes() == b"+"
    assert (target / "top-mine").read_bytes() == b"keep"


KINDS = ["missing", "file", "dir", "symlink-to-dir", "dangling-symlink"]


def _make(kind: str, path: Path, outside: Path) -> None:
    if kind == "file":
        path.write_bytes(b"old file")
    elif kind == "dir":
        path.mkdir()
        (path / "child").mkdir()
        (path / "child" / "f").write_bytes(b"old")
        os.symlink(outside, path / "child" / "out")
    elif kind == "symlink-to-dir":
        os.symlink(outside, path)
    elif kind == "dangling-symlink":
        os.symlink("nowhere", path)


@pytest.mark.parametrize("before", KINDS)
@pytest.mark.parametrize("after", ["file", "dir", "symlink"])
def test_whatever_is_in_the_way_is_replaced(store: Store, tmp_path: Path, before: str,
                                            after: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"untouched")
    target = tmp_path / "target"
    target.mkdir()
    _make(before, target / "p", outside)
    if after == "file":
        entry = file_entry(store, b"p", b"new")
    elif after == "dir":
        entry = dir_entry(store, b"p", [file_entry(store, b"f", b"in the new dir")])
    else:
        entry = link_entry(store, b"p", b"../outside")
    write_one(store, target, b"p", entry)
    p = target / "p"
    if after == "file":
        assert not p.is_symlink() and p.read_bytes() == b"new"
    elif after == "dir":
        assert not p.is_symlink() and p.is_dir()
        # Overlaid on a directory that was there: what the tree does not name stays.
        assert sorted(os.listdir(p)) == (["child", "f"] if before == "dir" else ["f"])
    else:
        assert os.readlink(p) == "../outside"
    assert sorted(os.listdir(outside)) == ["sentinel"]
    assert (outside / "sentinel").read_bytes() == b"untouched"


@pytest.mark.parametrize("in_place", [False, True])
def test_files_in_made_folders_are_created_under_their_names(
        store: Store, tmp_path: Path, in_place: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    renamed: list[bytes] = []
    rename_over = vst.checkout.files._rename_over

    def counting(dir_fd: int, temp: bytes, name: bytes) -> None:
        renamed.append(name)
        rename_over(dir_fd, temp, name)

    monkeypatch.setattr(vst.checkout.files, "_rename_over", counting)
    target = tmp_path / "target"
    target.mkdir()
    (target / "old").mkdir()
    (target / "old" / "kept.txt").write_bytes(b"old content")
    tree = put(store, ObjectType.TREE, Tree.from_entries([
        dir_entry(store, b"new", file_entries(store, {b"a": b"1", b"b": b"2"})),
        dir_entry(store, b"old", file_entries(store, {b"kept.txt": b"new content"})),
        file_entry(store, b"top", b"3"),
    ]).encode())
    restore(store, tree, target, threads=1, in_place=in_place)
    assert (target / "new" / "a").read_bytes() == b"1"
    assert (target / "old" / "kept.txt").read_bytes() == b"new content"
    # A folder that was there already and the root (not said to be empty) still get
    # every file renamed into place; only the folder the checkout made does not.
    assert sorted(renamed) == ([b"kept.txt", b"top"] if in_place
                               else [b"a", b"b", b"kept.txt", b"top"])
    assert temp_files(target) == []


def test_a_file_found_in_a_made_folder_is_replaced_whole(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    writer = vst.checkout.files._Writer(store.odb, fd, str(target))
    try:
        (target / "raced").write_bytes(b"put there by someone else")
        entry = file_entry(store, b"raced", b"restored")
        # The folder counts as made, yet the name is taken: a temporary name after all.
        writer.put_file(fd, b"raced", True, entry, b"restored", {})
        fresh = file_entry(store, b"fresh", b"new")
        writer.put_file(fd, b"fresh", True, fresh, b"new", {})
    finally:
        os.close(fd)
    assert (target / "raced").read_bytes() == b"restored"
    assert (target / "fresh").read_bytes() == b"new"
    assert temp_files(target) == []


def test_writing_one_path_again_takes_the_last_write(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with Checkout(store, str(target)) as checkout:
        checkout.write(b"p", dir_entry(store, b"p", [file_entry(store, b"f", b"1")]))
        checkout.write(b"p/g", file_entry(store, b"g", b"2"))
        checkout.write(b"p", file_entry(store, b"p", b"3"))
        checkout.write(b"q/r/s", file_entry(store, b"s", b"4"))
        checkout.write(b"q", link_entry(store, b"q", b"p"))
        placed = checkout.finish()
    assert (target / "p").read_bytes() == b"3"
    assert os.readlink(target / "q") == "p"
    assert [p.path for p in placed] == [b"p", b"q"]


def test_missing_parents_are_made(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    placed = write_one(store, target, b"a/b/c/f", file_entry(store, b"f", b"deep"))
    assert (target / "a" / "b" / "c" / "f").read_bytes() == b"deep"
    assert [p.path for p in placed] == [b"a/b/c/f"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((target / "a").lstat().st_mode) == 0o777 & ~umask


# -- refusals ---------------------------------------------------------------------------------


def test_a_symlinked_parent_is_refused(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "link")
    (target / "file").write_bytes(b"a file")
    with Checkout(store, str(target)) as checkout:
        with pytest.raises(Refused, match=r"link.*symbolic link"):
            checkout.write(b"link/f", file_entry(store, b"f", b"x"))
        with pytest.raises(Refused, match="not a directory"):
            checkout.write(b"file/f", file_entry(store, b"f", b"x"))
        with pytest.raises(Refused):
            checkout.remove(b"link/f")
        checkout.write(b"ok", file_entry(store, b"ok", b"fine"))  # still usable
        checkout.finish()
    assert os.listdir(outside) == []
    assert (target / "ok").read_bytes() == b"fine"
    assert Refused.exit_code == 5


@pytest.mark.parametrize("path", [b"", b"/abs", b"a//b", b"a/", b"..", b"a/../b", b".",
                                  b".vst/x", b"x/.VST", b"a\0b"])
def test_unsafe_paths_are_refused_before_anything_is_touched(store: Store, tmp_path: Path,
                                                             path: bytes) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with Checkout(store, str(target)) as checkout:
        with pytest.raises(Refused):
            checkout.write(path, file_entry(store, b"x", b"x"))
        with pytest.raises(Refused):
            checkout.remove(path)
    assert os.listdir(target) == []


def test_a_bad_entry_is_corrupt(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    entry = file_entry(store, b"f", b"x")
    with Checkout(store, str(target)) as checkout:
        for bad in (TreeEntry(b"f", 0o020644, ObjectType.BLOB, entry.oid, 1),  # a device
                    TreeEntry(b"f", S_IFDIR | 0o755, ObjectType.BLOB, entry.oid, 0),
                    TreeEntry(b"f", S_IFREG | 0o644, ObjectType.TREE, entry.oid, 1)):
            with pytest.raises(CorruptObject):
                checkout.write(b"f", bad)
    assert os.listdir(target) == []


def test_the_root_must_be_a_directory(store: Store, tmp_path: Path) -> None:
    with pytest.raises(VstError, match="cannot open directory"):
        Checkout(store, str(tmp_path / "missing"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(VstError):
        Checkout(store, str(tmp_path / "file"))
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "via-link")  # the root itself may be a symlink
    write_one(store, tmp_path / "via-link", b"f", file_entry(store, b"f", b"x"))
    assert (tmp_path / "real" / "f").read_bytes() == b"x"


# -- remove -------------------------------------------------------------------------------------


def test_remove(store: Store, tmp_path: Path, make_tree: Callable[..., Path]) -> None:
    outside = make_tree(tmp_path / "outside", {"keep": "x"})
    target = make_tree(tmp_path / "target", {
        "f": "x", "empty": {}, "full": {"g": "y"}, "d": {"h": "z"},
        "to-outside": ("symlink", str(outside)), "dangling": ("symlink", "nowhere")})
    with Checkout(store, str(target)) as checkout:
        assert checkout.remove(b"f") is True
        assert checkout.remove(b"f") is False
        assert checkout.remove(b"empty") is True
        assert checkout.remove(b"full") is False
        assert checkout.remove(b"to-outside") is True
        assert checkout.remove(b"dangling") is True
        assert checkout.remove(b"d/h") is True
        assert checkout.remove(b"d") is True
        assert checkout.remove(b"no/such/parent") is False
        assert checkout.finish() == []
    assert sorted(os.listdir(target)) == ["full"]
    assert (outside / "keep").read_bytes() == b"x"


def test_remove_after_write_waits_for_the_write(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with Checkout(store, str(target)) as checkout:
        for entry in file_entries(store, {b"f%d" % n: b"x" for n in range(200)}):
            checkout.write(b"d/" + entry.name, entry)
        assert checkout.remove(b"d/f7") is True
        assert checkout.remove(b"d") is False  # not empty
        placed = checkout.finish()
    assert len(placed) == 199 and b"d/f7" not in {p.path for p in placed}
    assert len(os.listdir(target / "d")) == 199


# -- failures ------------------------------------------------------------------------------------


def test_a_size_lie_is_corrupt(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    entry = file_entry(store, b"f", b"12345")
    for size in (4, 6):
        lie = TreeEntry(b"f", entry.mode, entry.kind, entry.oid, size, MTIME)
        with pytest.raises(CorruptObject, match=r"'f'.*5"):
            write_one(store, target, b"f", lie)
    assert os.listdir(target) == []


def _many_files_and_one_missing(store: Store, chunked: bool) -> TreeEntry:
    entries = file_entries(store, {b"f%03d" % n: b"content %d" % n for n in range(300)})
    if chunked:
        chunks = put(store, ObjectType.CHUNKS, bytes([1]) + blob(store, b"a" * 10).raw
                     + (10).to_bytes(4, "big") + bytes(range(32)) + (10).to_bytes(4, "big"))
        entries.append(TreeEntry(b"zz-broken", S_IFREG | 0o644, ObjectType.CHUNKS, chunks, 20))
    else:
        entries.append(TreeEntry(b"m-missing", S_IFREG | 0o644, ObjectType.BLOB,
                                 Oid(bytes(range(32))), 10))
    return dir_entry(store, b"d", entries)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("processes", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_errors_leave_no_temporary_files(store: Store, tmp_path: Path, chunked: bool,
                                         processes: bool, in_place: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if processes:
        monkeypatch.setattr(vst.checkout, "PROCESS_THRESHOLD", 0)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ObjectMissing):
        write_one(store, target, b"d", _many_files_and_one_missing(store, chunked),
                  in_place=in_place)
    assert temp_files(target) == []
    # Nor the file that failed, half written under its own name.
    assert not (target / "d" / "zz-broken").exists()


def test_what_workers_meet_is_raised_by_finish(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    missing = TreeEntry(b"m", S_IFREG | 0o644, ObjectType.BLOB, Oid(bytes(range(32))), 1)
    with Checkout(store, str(target), threads=1) as checkout:
        checkout.write(b"missing", missing)
        for entry in file_entries(store, {b"f%04d" % n: b"x" for n in range(3000)}):
            checkout.write(entry.name, entry)  # never blamed for the other path
        with pytest.raises(ObjectMissing):
            checkout.finish()
    assert temp_files(target) == []


def test_the_cycle_collector_is_paused_while_a_checkout_runs(store: Store,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    entry = file_entry(store, b"f", b"x")
    with Checkout(store, str(target)) as checkout:
        assert not gc.isenabled()
        checkout.write(b"f", entry)
        checkout.finish()
    assert gc.isenabled()
    with pytest.raises(KeyboardInterrupt), Checkout(store, str(target)):
        raise KeyboardInterrupt  # left early: on again too
    assert gc.isenabled()


def test_leaving_early_stops_and_cleans_up(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    entries = file_entries(store, {b"f%04d" % n: os.urandom(100) for n in range(2000)})
    pieces = file_entries(store, {b"%d" % n: os.urandom(64 * 1024) for n in range(300)})
    chunks = put(store, ObjectType.CHUNKS, ChunkList.from_pairs(
        [(p.oid, p.size) for p in pieces]).encode())
    large = TreeEntry(b"large", S_IFREG | 0o644, ObjectType.CHUNKS, chunks, 300 * 64 * 1024)
    sub = dir_entry(store, b"d", [large, *entries])
    with pytest.raises(KeyboardInterrupt), Checkout(store, str(target),
                                                    in_place=True) as checkout:
        checkout.write(b"d", sub)
        raise KeyboardInterrupt
    assert temp_files(target) == []
    # The large file stopped at a chunk is removed, not left half written under its name.
    assert not (target / "d" / "large").exists()
    with pytest.raises(VstError, match="after finish"):
        checkout.write(b"x", entries[0])
