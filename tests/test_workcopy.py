"""Working copies end to end: init, commit, status, restore, clone, pull, drop, hooks, and
what a backup must keep. Through the real CLI (in-process), on real files."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import Ran, open_keyed, vst_run
from test_cli import assert_one_line_error

from vst import workdir
from vst.objects.oid import Oid
from vst.objects.types import ObjectType
from vst.porcelain.status import status
from vst.store import Store
from vst.workdir import RACY_NS, CacheEntry, StatCache, WorkingCopy, inodes_warmed

OLD_NS = 1_600_000_000_123_456_789  # an mtime well outside the racy window


def vst(where: Path, *args: str, input: bytes | None = None) -> Ran:
    return vst_run("-C", str(where), *args, input=input)


def ok(where: Path, *args: str) -> str:
    ran = vst(where, *args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


def age(root: Path) -> None:
    """Move every mtime out of the racy window, so the stat cache may vouch for it."""
    for dirpath, dirnames, filenames in os.walk(root):
        if ".vst" in dirpath.split(os.sep):
            continue
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(OLD_NS, OLD_NS), follow_symlinks=False)


@pytest.fixture
def photos(tmp_path: Path, env: dict[str, str], make_tree: Callable[..., Path]) -> Path:
    root = make_tree(tmp_path / "photos", {
        "a.txt": "alpha\n", "b.bin": os.urandom(3000), "sub": {"c.txt": "gamma\n"},
        "empty": {}, "link": ("symlink", "a.txt"),
    })
    ok(root, "init")
    return root


def porcelain(root: Path) -> list[str]:
    return ok(root, "status", "--porcelain").splitlines()


def the_store(env: dict[str, str]) -> Store:
    return open_keyed(os.path.join(env["XDG_DATA_HOME"], "vst", "store"))


# -- the stat cache ----------------------------------------------------------------------


def test_a_stat_cache_in_many_pieces_is_the_same_file(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = {b"f%03d" % n: CacheEntry(0o100644, ObjectType.BLOB, Oid(bytes([n]) * 32), n,
                                       OLD_NS, OLD_NS + n, n) for n in range(200)}
    cache = StatCache(None, entries)
    whole = b"".join(cache.encode(time.time_ns()))
    monkeypatch.setattr(workdir, "CACHE_PIECE", 100)
    pieces = list(cache.encode(time.time_ns()))
    assert len(pieces) > 50 and all(len(piece) < 200 for piece in pieces)
    assert b"".join(pieces) == whole
    assert StatCache.decode(whole) == cache


def test_stat_cache_round_trip_and_damage() -> None:
    entries = {
        b"a": CacheEntry(0o100644, ObjectType.BLOB, Oid(b"\1" * 32), 5, OLD_NS, OLD_NS + 1, 42),
        b"d": CacheEntry(0o40755, ObjectType.TREE, Oid(b"\2" * 32), 0, OLD_NS),
        b"d/x": CacheEntry(0o100600, ObjectType.CHUNKS, Oid(b"\3" * 32), 9, OLD_NS, 7, 8,
                           (("hardlink", b"a"), ("xattr.user.k", b"v"))),
    }
    cache = StatCache(Oid(b"\4" * 32), entries)
    pieces = list(cache.encode(time.time_ns()))
    data = bytes(b"".join(pieces))
    assert StatCache.decode(data) == cache
    assert len(pieces) == 1  # CACHE_PIECE bytes a piece
    for position in (0, 20, len(data) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[position] ^= 1
        assert StatCache.decode(bytes(damaged)) is None
    assert StatCache.decode(data[:-1]) is None
    assert StatCache.decode(b"") is None


def test_racy_entries_are_saved_unverified() -> None:
    now = time.time_ns()
    fresh = CacheEntry(0o100644, ObjectType.BLOB, Oid(b"\1" * 32), 1, now - RACY_NS // 2, 5, 6)
    old = CacheEntry(0o100644, ObjectType.BLOB, Oid(b"\1" * 32), 1, OLD_NS, 5, 6)
    decoded = StatCache.decode(b"".join(StatCache(None, {b"f": fresh, b"o": old}).encode(now)))
    assert decoded is not None
    assert (decoded.entries[b"f"].ctime_ns, decoded.entries[b"f"].ino) == (0, 0)
    assert decoded.entries[b"o"] == old


# -- init, commit, status --------------------------------------------------------------------


def test_init_needs_no_set_up(photos: Path, env: dict[str, str]) -> None:
    store_dir = Path(env["XDG_DATA_HOME"]) / "vst" / "store"
    assert (store_dir / "config.toml").is_file()
    copy = WorkingCopy.find(str(photos / "sub"))
    assert copy is not None and copy.collection == "photos" and copy.root == str(photos)
    assert copy.base() is None
    again = vst(photos, "init")
    assert again.code == 18
    assert_one_line_error(again)
    (photos.parent / "other").mkdir()
    taken = vst(photos.parent / "other", "init", "-c", "photos")
    assert taken.code == 18 and "clone" in taken.err


def test_init_names_the_collection_after_the_folder(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "My Photos (2024)"
    folder.mkdir()
    ok(folder, "init")
    assert WorkingCopy.find(str(folder)).collection == "My-Photos-2024"  # type: ignore[union-attr]


def test_status_and_commit_cycle(photos: Path, env: dict[str, str]) -> None:
    assert porcelain(photos) == ["A a.txt", "A b.bin", "A empty", "A link", "A sub/c.txt"]
    first = ok(photos, "commit", "-m", "first").strip()
    assert len(first) == 64
    assert porcelain(photos) == []
    assert ok(photos, "rev-parse", "HEAD").strip() == first
    (photos / "a.txt").write_text("changed\n")
    (photos / "sub" / "c.txt").unlink()
    (photos / "new").mkdir()
    (photos / "new" / "n.txt").write_text("n\n")
    (photos / "link").unlink()
    (photos / "link").write_text("now a file\n")
    os.chmod(photos / "b.bin", 0o600)
    assert porcelain(photos) == ["M a.txt", "M b.bin", "T link", "A new/n.txt", "D sub/c.txt"]
    ran = vst(photos, "status", "--exit-code")
    assert ran.code == 1 and b"modified:" in ran.out
    second = ok(photos, "commit", "-m", "second").strip()
    assert ok(photos, "rev-parse", "HEAD~1").strip() == first
    assert ok(photos, "rev-parse", "HEAD").strip() == second
    assert ok(photos, "cat-file", "-p", "HEAD:a.txt") == "changed\n"
    assert ok(photos, "cat-file", "-p", "HEAD~1:a.txt") == "alpha\n"
    assert vst(photos, "status", "--exit-code").code == 0


def test_status_formats(photos: Path) -> None:
    (photos / "odd\nname").write_text("x")
    assert 'A "odd\\nname"' in ok(photos, "status", "-s").splitlines()
    raw = vst(photos, "status", "-z").out
    assert b"A odd\nname\0" in raw
    records = [json.loads(line) for line in ok(photos, "--json", "status").splitlines()]
    assert records[-1]["type"] == "status" and records[-1]["changes"] == 6
    assert records[-1]["base"] is None and records[-1]["behind"] is False
    assert {"type": "change", "status": "A", "path": "a.txt"} in records


def test_nothing_to_commit_and_allow_empty(photos: Path) -> None:
    ok(photos, "commit", "-m", "first")
    ran = vst(photos, "commit", "-m", "again")
    assert ran.code == 0 and ran.out == b"" and "nothing to commit" in ran.err
    empty = ok(photos, "commit", "--allow-empty", "-m", "empty").strip()
    assert ok(photos, "rev-parse", "HEAD").strip() == empty


def test_commit_dry_run_stores_nothing(photos: Path, env: dict[str, str]) -> None:
    before = the_store(env).odb.index.count()
    assert ok(photos, "commit", "--dry-run").splitlines()[0] == "A a.txt"
    assert the_store(env).odb.index.count() == before
    assert porcelain(photos)  # still uncommitted


def test_commit_json_summary(photos: Path) -> None:
    record = json.loads(ok(photos, "--json", "commit", "-m", "m"))
    assert record["type"] == "commit" and record["added"] == 5 and record["parent"] is None
    assert record["bytes_read"] >= 3000 and record["bytes_new"] > 0
    age(photos)
    ok(photos, "status")  # reads the aged files once, and caches their status
    (photos / "copy.bin").write_bytes((photos / "b.bin").read_bytes())
    record = json.loads(ok(photos, "--json", "commit", "-m", "dup"))
    assert record["added"] == 1 and record["bytes_read"] == 3000
    assert record["bytes_new"] < 1000  # the content was deduplicated: only trees are new


def test_the_stat_cache_spares_reading_unchanged_files(photos: Path, env: dict[str, str]) -> None:
    ok(photos, "commit", "-m", "first")
    age(photos)
    store = the_store(env)
    copy = WorkingCopy.open(str(photos))
    # Aged files no longer match their cached status: read once, found unchanged...
    first = status(store, copy)
    assert first.changes == [] and first.snapshot.read_bytes > 0
    # ...and refreshed, so the next status reads nothing.
    second = status(store, copy)
    assert second.changes == [] and second.snapshot.read_bytes == 0
    # Same size, same mtime, new content: the ctime gives it away.
    (photos / "a.txt").write_text("ALPHA\n")
    os.utime(photos / "a.txt", ns=(OLD_NS, OLD_NS))
    third = status(store, copy)
    assert [c.path for c in third.changes] == [b"a.txt"]
    store.close()


def test_touch_is_not_a_change(photos: Path) -> None:
    ok(photos, "commit", "-m", "first")
    os.utime(photos / "a.txt", ns=(OLD_NS, OLD_NS + 5))
    assert porcelain(photos) == []


def test_head_moved_refuses_commit_with_a_hint(photos: Path, tmp_path: Path) -> None:
    ok(photos, "commit", "-m", "first")
    ok(tmp_path, "clone", "photos", "second")
    (tmp_path / "second" / "x.txt").write_text("x")
    ok(tmp_path / "second", "commit", "-m", "from the second clone")
    (photos / "y.txt").write_text("y")
    ran = vst(photos, "commit", "-m", "stale")
    assert ran.code == 16 and "vst pull" in ran.err
    assert_one_line_error(ran)
    assert "moved on" in ok(photos, "status")


def test_outside_a_working_copy(tmp_path: Path, env: dict[str, str]) -> None:
    for args in (["status"], ["commit"], ["pull"], ["drop"]):
        ran = vst(tmp_path, *args)
        assert ran.code == 6, args
        assert_one_line_error(ran)
    ran = vst_run("--store", str(tmp_path), "rev-parse", "HEAD")
    assert ran.code in (10, 17)


# -- what a backup keeps ---------------------------------------------------------------------


def _fingerprint(root: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".vst"]
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                found[rel] = ("file", Path(path).read_bytes(), stat.S_IMODE(st.st_mode),
                              st.st_mtime_ns)
    return found


def test_clone_keeps_everything(tmp_path: Path, env: dict[str, str],
                                make_tree: Callable[..., Path]) -> None:
    root = make_tree(tmp_path / "src", {
        "plain.txt": "p\n", "big.bin": os.urandom(5 * 1024 * 1024 + 17),
        "exec.sh": "#!/bin/sh\n", "deep": {"er": {"est": {"f": "f"}}}, "hollow": {},
        "dangling": ("symlink", "nowhere"), "abs": ("symlink", "/etc/hostname"),
        "linked-a": "same inode\n",
    })
    os.chmod(root / "exec.sh", 0o751)
    os.link(root / "linked-a", root / "linked-b")
    xattrs = True
    try:
        os.setxattr(root / "plain.txt", "user.comment", b"kept")
    except OSError:
        xattrs = False
    os.utime(root / "plain.txt", ns=(OLD_NS, OLD_NS))
    os.utime(root / "abs", ns=(OLD_NS, OLD_NS + 3), follow_symlinks=False)
    os.utime(root / "hollow", ns=(OLD_NS, OLD_NS + 9))
    ok(root, "init")
    ok(root, "commit", "-m", "all")
    ok(tmp_path, "clone", "src", "dst")
    dst = tmp_path / "dst"
    assert _fingerprint(dst) == _fingerprint(root)
    assert os.stat(dst / "linked-a").st_ino == os.stat(dst / "linked-b").st_ino
    if xattrs:
        assert os.getxattr(dst / "plain.txt", "user.comment") == b"kept"
    assert porcelain(dst) == []
    # What it reports: every file and symlink (a link target's length its size), counted
    # as written (no progress on a pipe, so no pass over the trees beforehand).
    record = json.loads(ok(tmp_path, "--json", "clone", "src", "again"))
    sizes = [os.lstat(os.path.join(d, n)).st_size for d, dirs, names in os.walk(root)
             if ".vst" not in d for n in names + [x for x in dirs
                                                   if os.path.islink(os.path.join(d, x))]]
    assert (record["files"], record["bytes"]) == (len(sizes), sum(sizes)) == (8, sum(sizes))


def test_sockets_and_fifos_are_skipped_with_a_warning(photos: Path) -> None:
    os.mkfifo(photos / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(photos / "sock"))
        ran = vst(photos, "commit", "-m", "m")
    finally:
        sock.close()
    assert ran.code == 0, ran.err
    assert "skipping 'fifo'" in ran.err and "skipping 'sock'" in ran.err
    assert "fifo" not in ok(photos, "ls-tree", "--name-only", "HEAD")


def test_ignore_files_and_cache_dirs(photos: Path) -> None:
    (photos / ".vstignore").write_text("*.tmp\nbuild/\n")
    (photos / "x.tmp").write_text("t")
    (photos / "build").mkdir()
    (photos / "build" / "out").write_text("o")
    (photos / "cache").mkdir()
    (photos / "cache" / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55\n")
    (photos / "cache" / "blob").write_text("c")
    names = [line.split(" ", 1)[1] for line in porcelain(photos)]
    assert ".vstignore" in names
    assert not any(n.startswith(("x.tmp", "build", "cache")) for n in names)


def test_a_file_changing_while_read_is_never_stored_under_a_wrong_id(
        photos: Path, env: dict[str, str]) -> None:
    target = photos / "growing.bin"
    target.write_bytes(os.urandom(6 * 1024 * 1024))
    stop = threading.Event()

    def scribble() -> None:
        n = 0
        while not stop.is_set():
            with open(target, "r+b") as f:
                f.seek((n * 4096) % (6 * 1024 * 1024))
                f.write(os.urandom(4096))
            n += 1

    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        ran = vst(photos, "commit", "-m", "busy")
    finally:
        stop.set()
        writer.join()
    assert ran.code == 0, ran.err
    assert "changed while it was read" in ran.err
    # Every stored object matches its id (fsck --full reads and re-hashes them all).
    fsck = vst_run("--store", str(Path(env["XDG_DATA_HOME"]) / "vst" / "store"), "fsck",
                   "--full")
    assert fsck.code == 0, fsck.err


# -- restore ---------------------------------------------------------------------------------


def test_restore_in_place_from_an_old_commit(photos: Path) -> None:
    ok(photos, "commit", "-m", "first")
    (photos / "a.txt").write_text("second\n")
    ok(photos, "commit", "-m", "second")
    ok(photos / "sub", "restore", "--source", "HEAD~1", "../a.txt")
    assert (photos / "a.txt").read_text() == "alpha\n"
    assert porcelain(photos) == ["M a.txt"]
    ok(photos, "restore", "a.txt")  # from HEAD
    assert porcelain(photos) == []
    shutil_rm = photos / "sub" / "c.txt"
    shutil_rm.unlink()
    ok(photos, "restore", "sub")
    assert (photos / "sub" / "c.txt").read_text() == "gamma\n"
    missing = vst(photos, "restore", "nope.txt")
    assert missing.code == 17
    assert_one_line_error(missing)
    assert vst(photos, "restore").code == 2


def test_restore_elsewhere_with_and_without_a_working_copy(photos: Path, tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    ok(photos, "commit", "-m", "first")
    ok(photos, "restore", "--to", str(tmp_path / "out"), "sub")
    assert (tmp_path / "out" / "sub" / "c.txt").read_text() == "gamma\n"
    assert not (tmp_path / "out" / "a.txt").exists()
    store_dir = str(Path(env["XDG_DATA_HOME"]) / "vst" / "store")
    ran = vst_run("-C", str(tmp_path), "--store", store_dir, "restore", "--collection",
                  "photos", "--to", "everything")
    assert ran.code == 0, ran.err
    assert (tmp_path / "everything" / "link").is_symlink()
    assert (tmp_path / "everything" / "empty").is_dir()
    ran = vst_run("-C", str(tmp_path), "--store", store_dir, "restore", "--to", "x")
    assert ran.code == 2


# -- clone, pull -----------------------------------------------------------------------------


def test_clone_refuses_a_non_empty_destination(photos: Path, tmp_path: Path) -> None:
    ok(photos, "commit", "-m", "first")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine").write_text("m")
    ran = vst(tmp_path, "clone", "photos", "busy")
    assert ran.code == 18
    assert (tmp_path / "busy" / "mine").read_text() == "m"
    assert vst(tmp_path, "clone", "nosuch", "x").code == 17
    assert not (tmp_path / "x").exists()


def test_clone_at_a_revision_and_of_an_empty_collection(photos: Path, tmp_path: Path) -> None:
    first = ok(photos, "commit", "-m", "first").strip()
    (photos / "a.txt").write_text("2\n")
    ok(photos, "commit", "-m", "second")
    ok(tmp_path, "clone", "--rev", first[:10], "photos", "old")
    assert (tmp_path / "old" / "a.txt").read_text() == "alpha\n"
    (tmp_path / "e").mkdir()
    ok(tmp_path / "e", "init", "-c", "void")
    ok(tmp_path, "clone", "void", "void2")
    assert porcelain(tmp_path / "void2") == []


@pytest.fixture
def two(photos: Path, tmp_path: Path) -> tuple[Path, Path]:
    ok(photos, "commit", "-m", "first")
    ok(tmp_path, "clone", "photos", "other")
    return photos, tmp_path / "other"


def test_pull_fast_forward(two: tuple[Path, Path]) -> None:
    mine, other = two
    (other / "a.txt").write_text("from other\n")
    (other / "sub" / "c.txt").unlink()
    (other / "sub" / "d.txt").write_text("d\n")
    (other / "gone").mkdir()
    ok(other, "commit", "-m", "other")
    ok(mine, "pull")
    assert (mine / "a.txt").read_text() == "from other\n"
    assert sorted(os.listdir(mine / "sub")) == ["d.txt"]
    assert (mine / "gone").is_dir()
    assert porcelain(mine) == []
    assert ok(mine, "rev-parse", "HEAD") == ok(other, "rev-parse", "HEAD")
    ran = vst(mine, "pull")
    assert ran.code == 0 and "Already up to date" in ran.err


def test_pull_merges_local_changes_and_keeps_both_on_conflict(two: tuple[Path, Path]) -> None:
    mine, other = two
    (other / "a.txt").write_text("theirs\n")
    (other / "b.bin").unlink()
    (other / "sub" / "c.txt").write_text("their gamma\n")
    (other / "t.txt").write_text("new there\n")
    ok(other, "commit", "-m", "other")
    head = ok(other, "rev-parse", "HEAD").strip()
    (mine / "a.txt").write_text("mine\n")  # both changed
    (mine / "b.bin").write_text("changed here\n")  # changed here, deleted there
    (mine / "sub" / "c.txt").unlink()  # deleted here, changed there
    (mine / "local.txt").write_text("only here\n")
    ran = vst(mine, "pull")
    assert ran.code == 3, ran.err
    assert "conflict: a.txt" in ran.err
    assert (mine / "a.txt").read_text() == "mine\n"
    assert (mine / f"a.vst-conflict-{head[:12]}.txt").read_text() == "theirs\n"
    assert (mine / "b.bin").read_text() == "changed here\n"
    assert (mine / "sub" / "c.txt").read_text() == "their gamma\n"
    assert (mine / "t.txt").read_text() == "new there\n"
    assert (mine / "local.txt").read_text() == "only here\n"
    assert ok(mine, "rev-parse", "HEAD").strip() == head
    assert porcelain(mine) == ["M a.txt", f"A a.vst-conflict-{head[:12]}.txt", "A b.bin",
                               "A local.txt"]
    ok(mine, "commit", "-m", "merged")


# -- drop ------------------------------------------------------------------------------------


def test_drop_only_when_nothing_would_be_lost(two: tuple[Path, Path], env: dict[str, str]) -> None:
    mine, other = two
    (other / "a.txt").write_text("unsaved\n")
    refused = vst(other.parent, "drop", "other")
    assert refused.code == 5 and "uncommitted" in refused.err
    assert_one_line_error(refused)
    ok(other, "restore", "a.txt")
    (other / "junk.tmp").write_text("j")
    (other / ".vstignore").write_text("*.tmp\n")
    ok(other, "commit", "-m", "ignore tmp")
    refused = vst(other, "drop")
    assert refused.code == 5 and "ignored" in refused.err
    ok(other, "drop", "--discard-ignored")
    assert not other.exists()
    # A pack missing from the volume: refused, checked on the volume, not in the index.
    store = the_store(env)
    for row in store.odb.index.packs():
        pack = Path(store.path) / "volumes" / "default" / "packs" / row.pack.hex[:2] / row.pack.hex
        pack.rename(pack.with_name(pack.name + ".away"))
    store.close()
    refused = vst(mine, "drop")
    assert refused.code == 5 and "volume" in refused.err
    assert (mine / "a.txt").exists()


def test_drop_a_fresh_empty_working_copy(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "e").mkdir()
    ok(tmp_path / "e", "init")
    ok(tmp_path, "drop", "e")
    assert not (tmp_path / "e").exists()


def test_an_interrupted_drop_can_be_finished(two: tuple[Path, Path]) -> None:
    _, other = two
    (other / ".vst" / "dropping").write_text("")
    (other / "a.txt").unlink()  # the drop had got this far
    ok(other.parent, "drop", "other")
    assert not other.exists()


# -- hooks and locks -------------------------------------------------------------------------


def _hook(root: Path, name: str, body: str) -> None:
    path = root / ".vst" / "hooks" / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_hooks(photos: Path, tmp_path: Path) -> None:
    _hook(photos, "pre-commit", "echo not today >&2; exit 1\n")
    ran = vst(photos, "commit", "-m", "m")
    assert ran.code == 19 and "not today" in ran.err
    assert vst(photos, "rev-parse", "HEAD").code == 17  # nothing committed
    (photos / ".vst" / "hooks" / "pre-commit").unlink()
    _hook(photos, "commit-msg", 'printf "edited by hook\\n" > "$1"\n')
    _hook(photos, "post-commit", f'echo "$VST_COLLECTION" > {tmp_path}/post\n')
    ok(photos, "commit", "-m", "m")
    assert ok(photos, "log", "--oneline").split(" ", 1)[1].strip() == "edited by hook"
    assert (tmp_path / "post").read_text() == "photos\n"
    _hook(photos, "pre-drop", "exit 3\n")
    assert vst(photos, "drop").code == 19
    assert photos.exists()


def test_post_checkout_runs_after_restore_and_pull(two: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    mine, other = two
    _hook(mine, "post-checkout", f'echo "$3" >> {tmp_path}/checkouts\n')
    ok(mine, "restore", "a.txt")
    (other / "z").write_text("z")
    ok(other, "commit", "-m", "z")
    ok(mine, "pull")
    assert (tmp_path / "checkouts").read_text().split() == ["0", "1"]


def test_a_busy_working_copy_is_locked(photos: Path) -> None:
    copy = WorkingCopy.open(str(photos))
    with copy.lock("test", wait=False):
        saved = workdir.LOCK_TIMEOUT
        workdir.LOCK_TIMEOUT = 0.2
        try:
            ran = vst(photos, "commit", "-m", "m")
        finally:
            workdir.LOCK_TIMEOUT = saved
    assert ran.code == 11
    assert_one_line_error(ran)


def test_collection_list_shows_files_and_size(photos: Path) -> None:
    ok(photos, "commit", "-m", "m")
    record = json.loads(ok(photos, "--json", "collection", "list"))
    assert record["name"] == "photos" and record["files"] == 4
    assert record["size"] == 6 + 3000 + 6 + 5


def test_head_forms_in_a_working_copy(two: tuple[Path, Path]) -> None:
    mine, _ = two
    (mine / "a.txt").write_text("2\n")
    second = ok(mine, "commit", "-m", "2").strip()
    first = ok(mine, "rev-parse", "HEAD~1").strip()
    assert ok(mine, "rev-parse", "HEAD@{0}").strip() == second
    assert ok(mine, "rev-parse", "photos@{1}").strip() == first
    assert ok(mine, "rev-parse", "HEAD^").strip() == first
    assert ok(mine, "rev-parse", second[:8]).strip() == second
    blob = ok(mine, "rev-parse", "HEAD:sub/c.txt").strip()
    assert ok(mine, "cat-file", "-p", blob) == "gamma\n"


# -- what a careless command could lose ------------------------------------------------------


def test_pull_never_overwrites_an_ignored_file(two: tuple[Path, Path]) -> None:
    mine, other = two
    (mine / ".vstignore").write_text("*.tmp\n")
    (mine / "keep.tmp").write_text("my precious local notes\n")
    (other / "keep.tmp").write_text("theirs\n")
    ok(other, "commit", "-m", "adds keep.tmp")
    head = ok(other, "rev-parse", "HEAD").strip()
    ran = vst(mine, "pull")
    assert ran.code == 3 and "ignored" in ran.err
    assert (mine / "keep.tmp").read_text() == "my precious local notes\n"
    assert (mine / f"keep.vst-conflict-{head[:12]}.tmp").read_text() == "theirs\n"


def test_drop_refuses_nested_state_folders(photos: Path) -> None:
    (photos / "sub" / ".VST").mkdir()
    (photos / "sub" / ".VST" / "notes").write_text("precious")
    ok(photos, "commit", "-m", "m")
    refused = vst(photos, "drop")
    assert refused.code == 5 and "sub/.VST" in refused.err
    assert (photos / "sub" / ".VST" / "notes").exists()


def test_init_refuses_a_working_copy_inside_another(photos: Path) -> None:
    ran = vst(photos / "sub", "init")
    assert ran.code == 18 and "inside" in ran.err
    assert not (photos / "sub" / ".vst").exists()
    assert vst(photos, "init", "sub/deeper").code == 18


def test_a_working_copy_keeps_to_its_own_store(photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    ok(tmp_path, "store", "init", str(other))
    ran = vst_run("-C", str(photos), "--store", str(other), "status")
    assert ran.code == 2 and "belongs to the store" in ran.err
    own = str(Path(WorkingCopy.open(str(photos)).store_url))
    assert vst_run("-C", str(photos), "--store", own, "status").code == 0


def test_a_commit_with_nothing_to_commit_still_learns_file_status(photos: Path) -> None:
    ok(photos, "commit", "-m", "first")
    age(photos)
    assert json.loads(ok(photos, "--json", "commit"))["bytes_read"] > 0
    assert json.loads(ok(photos, "--json", "commit"))["bytes_read"] == 0


def test_empty_message_and_failed_restore_leave_nothing(photos: Path, tmp_path: Path) -> None:
    assert vst(photos, "commit", "-m", "").code == 2
    assert vst(photos, "rev-parse", "HEAD").code == 17
    ok(photos, "commit", "-m", "m")
    ran = vst(photos, "restore", "--to", str(tmp_path / "out"), "nothere")
    assert ran.code == 17
    assert not (tmp_path / "out").exists()


def test_drop_of_another_folder_runs_that_folders_hooks(two: tuple[Path, Path]) -> None:
    mine, other = two
    hooks = other / "myhooks"
    hooks.mkdir()
    (hooks / "pre-drop").write_text("#!/bin/sh\nexit 1\n")
    (hooks / "pre-drop").chmod(0o755)
    ok(other, "config", "--local", "core.hooksPath", "myhooks")
    ok(other, "commit", "-m", "hooks")
    assert vst(mine, "drop", str(other)).code == 19
    assert other.exists()


def test_store_after_the_command_name(tmp_path: Path, env: dict[str, str]) -> None:
    store_dir = str(tmp_path / "shared")
    ok(tmp_path, "store", "init", store_dir)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "f").write_text("f")
    ok(tmp_path, "init", "w", "--store", store_dir, "-c", "work")
    ok(tmp_path / "w", "commit", "-m", "m")
    ok(tmp_path, "clone", "--store", store_dir, "work", "w2")
    assert (tmp_path / "w2" / "f").read_text() == "f"
    ok(tmp_path, "restore", "--store", store_dir, "--collection", "work", "--to", "out")
    assert (tmp_path / "out" / "f").read_text() == "f"
    assert not (Path(env["XDG_DATA_HOME"]) / "vst").exists()  # the user's own store: untouched


def test_a_killed_checkouts_temporary_files_are_neither_stored_nor_kept(photos: Path) -> None:
    (photos / "sub" / ".vst-tmp-1234-0").write_bytes(b"half a file")
    assert porcelain(photos) == ["A a.txt", "A b.bin", "A empty", "A link", "A sub/c.txt"]
    ok(photos, "commit", "-m", "m")
    assert ".vst-tmp" not in ok(photos, "ls-tree", "-r", "--name-only", "HEAD")
    assert not (photos / "sub" / ".vst-tmp-1234-0").exists()


def test_pull_of_an_empty_folder_where_a_folder_with_new_files_is(two: tuple[Path, Path]) -> None:
    mine, other = two
    (other / "shared").mkdir()
    ok(other, "commit", "-m", "an empty folder")
    (mine / "shared").mkdir()
    (mine / "shared" / "new.txt").write_text("mine\n")
    ran = vst(mine, "pull")
    assert ran.code == 0, ran.err
    assert not [name for name in os.listdir(mine) if "conflict" in name]
    assert (mine / "shared" / "new.txt").read_text() == "mine\n"
    assert porcelain(mine) == ["A shared/new.txt"]


def test_inodes_warmed_walks_in_a_child_that_is_always_reaped(
        photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(photos, "commit", "-m", "first")
    copy = WorkingCopy.open(str(photos))
    forks: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counted_fork)
    # As in a command before it starts its pools (another test may have left a thread).
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    with inodes_warmed(copy):  # a small working copy: no child
        pass
    assert forks == []
    monkeypatch.setattr(workdir, "WARM_THRESHOLD", 0)
    with inodes_warmed(copy):
        assert len(forks) == 1
    with pytest.raises(ChildProcessError):  # killed and reaped: no zombie is left
        os.waitpid(forks[0], os.WNOHANG)
    with pytest.raises(RuntimeError), inodes_warmed(copy):  # also when the block fails
        raise RuntimeError("the scan failed")
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[1], os.WNOHANG)
    # Not with threads running: a fork then could copy a lock some thread holds.
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    with inodes_warmed(copy):
        pass
    assert len(forks) == 2


def test_lstat_everything_skips_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")  # never followed
    (tmp_path / "gone").symlink_to(tmp_path / "missing")
    workdir._lstat_everything(os.fsencode(tmp_path / "no such folder"))
    workdir._lstat_everything(os.fsencode(tmp_path))


def test_commit_counts_changes_one_at_a_time_as_status_lists_them() -> None:
    """iter_working_changes (what commit counts) yields what working_changes (what status
    lists) returns, in any order: adds, deletions, modifications, type changes, folders
    emptied and filled, and only under the paths asked for."""
    from vst.porcelain.status import iter_working_changes, working_changes

    def oid(n: int) -> Oid:
        return Oid(bytes([n]) * 32)

    def blob(n: int, mode: int = 0o100644) -> CacheEntry:
        return CacheEntry(mode, ObjectType.BLOB, oid(n), 1, OLD_NS)

    folder = CacheEntry(0o40755, ObjectType.TREE, oid(0), 0, OLD_NS)
    base = {b"same": blob(1), b"gone": blob(2), b"edited": blob(3), b"kind": blob(4),
            b"mode": blob(5), b"d": folder, b"d/x": blob(6), b"empty": folder}
    current = {b"same": blob(1), b"new": blob(7), b"edited": blob(8),
               b"kind": blob(4, 0o120777), b"mode": blob(5, 0o100755), b"d": folder,
               b"empty": folder, b"empty/y": blob(9), b"b": folder}
    listed = working_changes(base, current)
    assert [(c.status, c.path) for c in listed] == [
        ("A", b"b"), ("D", b"d/x"), ("M", b"edited"), ("A", b"empty/y"), ("D", b"gone"),
        ("T", b"kind"), ("M", b"mode"), ("A", b"new")]
    counted = list(iter_working_changes(base, current))
    assert sorted(counted, key=lambda c: c.path) == listed
    assert list(iter_working_changes(base, current, [b"d"], ordered=True)) == \
        working_changes(base, current, [b"d"]) == [listed[1]]


def test_the_walking_child_holds_none_of_the_callers_descriptors(
        photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its standard streams are /dev/null: a script reading vst's output gets its end when
    vst ends, even if vst was killed and the child goes on walking."""
    ok(photos, "commit", "-m", "first")
    copy = WorkingCopy.open(str(photos))
    seen = tmp_path / "seen"

    def report(root: bytes) -> None:
        streams = [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)]
        (tmp_path / "seen.tmp").write_text("\n".join(streams))
        os.rename(tmp_path / "seen.tmp", seen)

    monkeypatch.setattr(workdir, "_lstat_everything", report)
    monkeypatch.setattr(workdir, "WARM_THRESHOLD", 0)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    with inodes_warmed(copy):
        deadline = time.monotonic() + 10
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen.read_text().split("\n") == [os.devnull] * 3
