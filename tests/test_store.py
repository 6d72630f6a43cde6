"""The store: opening and config validation, collections, refs moved by compare-and-swap,
reflogs, the meta/ mirror on volumes, and a sample of S9 (concurrent committers)."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tomllib
from pathlib import Path

import pytest
from clirun import vst_run

from vst.errors import (
    AlreadyExists,
    CorruptConfig,
    CorruptRef,
    NotAStore,
    NotFound,
    ObjectMissing,
    RefConflict,
    Refused,
    UnsupportedFormat,
    UsageError,
    VstError,
    WrongVolume,
)
from vst.objects.commit import Signature
from vst.objects.oid import ZERO_OID, Oid
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.mktree import mktree
from vst.store import Store

SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)


def _commit(store: Store, parents: list[Oid] | tuple[Oid, ...] = (), message: str = "m") -> Oid:
    tree = mktree(store, [])
    return commit_tree(store, tree, list(parents), message.encode(), author=SIG, committer=SIG)


def _meta(store: Store) -> Path:
    return Path(store.path, "volumes", "default", "meta")


# -- init and open ------------------------------------------------------------------------


def test_init_then_open_reads_the_same_store(store: Store) -> None:
    again = Store.open(store.path)
    assert again.store_id == store.store_id and len(store.store_id) == 32
    assert again.chunk_params == store.chunk_params
    assert again.pack_size == store.pack_size
    assert [v.name for v in again.volumes()] == ["default"]
    assert Path(store.path, "config.toml").is_file()
    assert Path(store.path, "volumes", "default", "volume.toml").is_file()
    again.close()


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("hi")
    with pytest.raises(AlreadyExists):
        Store.init(str(tmp_path / "x"))
    assert os.listdir(tmp_path / "x") == ["file"]
    # An empty directory is fine.
    (tmp_path / "empty").mkdir()
    Store.init(str(tmp_path / "empty")).close()


@pytest.mark.parametrize("kind", ["missing", "empty-dir", "file", "config-is-a-dir"])
def test_open_not_a_store(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "s"
    if kind == "empty-dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("not a store")
    elif kind == "config-is-a-dir":
        (path / "config.toml").mkdir(parents=True)
    with pytest.raises(NotAStore) as info:
        Store.open(str(path))
    assert info.value.exit_code == 10
    assert info.value.hint


def _open_error(path: str) -> type[BaseException] | None:
    """The exception class Store.open raises, or None when it opens (and closes) fine."""
    try:
        Store.open(path).close()
    except (CorruptConfig, UnsupportedFormat) as exc:
        assert "\n" not in str(exc)
        return type(exc)
    return None


def test_config_truncated_at_every_byte(store: Store) -> None:
    """S5: every truncation of config.toml is refused with CorruptConfig or UnsupportedFormat
    (never another exception), except cuts that leave the same TOML document."""
    config = Path(store.path, "config.toml")
    full = config.read_bytes()
    whole = tomllib.loads(full.decode())
    opened = []
    for cut in range(len(full)):
        config.write_bytes(full[:cut])
        if _open_error(store.path) is None:
            opened.append(cut)
            assert tomllib.loads(full[:cut].decode()) == whole, cut
    # Only dropping the trailing newline(s) can still give the same document.
    assert all(cut >= len(full.rstrip(b"\n")) for cut in opened), opened
    config.write_bytes(full)
    assert _open_error(store.path) is None


_VALID_TAIL = '[volumes.default]\nurl = "volumes/default"\nid = "v1"\n'


@pytest.mark.parametrize(("text", "error"), [
    (b"", CorruptConfig),
    (b"\xff\xfe\x00garbage", CorruptConfig),
    (b"[store\nformat = 1\n", CorruptConfig),
    (b"store = 5\n", CorruptConfig),
    (b"[other]\nx = 1\n" + _VALID_TAIL.encode(), CorruptConfig),  # no [store]
    (b'[store]\nid = "x"\n' + _VALID_TAIL.encode(), (CorruptConfig, UnsupportedFormat)),
    (b'[store]\nformat = "1"\nid = "x"\n' + _VALID_TAIL.encode(), CorruptConfig),
    (b'[store]\nformat = true\nid = "x"\n' + _VALID_TAIL.encode(), CorruptConfig),
    (b'[store]\nformat = 1.0\nid = "x"\n' + _VALID_TAIL.encode(), CorruptConfig),
    (b"[store]\nformat = 1\nid = 7\n" + _VALID_TAIL.encode(), CorruptConfig),
    (b'[store]\nformat = 2\nid = "x"\n' + _VALID_TAIL.encode(), UnsupportedFormat),
    (b'[store]\nformat = 999999999999\nid = "x"\n' + _VALID_TAIL.encode(), UnsupportedFormat),
    (b'[store]\nformat = 1\nid = "x"\n', CorruptConfig),  # no volumes
    (b'[store]\nformat = 1\nid = "x"\nvolumes = 5\n', CorruptConfig),
    (b'[store]\nformat = 1\nid = "x"\n[volumes]\ndefault = "here"\n', CorruptConfig),
    (b'[store]\nformat = 1\nid = "x"\n[volumes.default]\nurl = 5\nid = "v"\n', CorruptConfig),
    (b'chunking = 5\n[store]\nformat = 1\nid = "x"\n' + _VALID_TAIL.encode(), CorruptConfig),
    (b'pack = [1, 2]\n[store]\nformat = 1\nid = "x"\n' + _VALID_TAIL.encode(), CorruptConfig),
    (b'[store]\nformat = 1\nid = "x"\n[chunking]\nmin = -1\n' + _VALID_TAIL.encode(),
     CorruptConfig),
    (b'[store]\nformat = 1\nid = "x"\n[chunking]\nmax = "4M"\n' + _VALID_TAIL.encode(),
     CorruptConfig),
    (b'[store]\nformat = 1\nid = "x"\n[pack]\ntarget_size = 10\n' + _VALID_TAIL.encode(),
     CorruptConfig),
    (b'[store]\nformat = 1\nid = "x"\n[pack]\ncompression_level = 99\n' + _VALID_TAIL.encode(),
     CorruptConfig),
], ids=["empty", "binary-garbage", "unclosed-table", "store-not-a-table", "no-store-table",
    "no-format", "format-str", "format-bool", "format-float", "id-int", "format-2",
    "format-huge", "no-volumes", "volumes-int", "volume-not-a-table", "volume-url-int",
    "chunking-int", "pack-array", "chunking-min-negative", "chunking-max-str",
    "pack-size-tiny", "compression-99"])
def test_bad_config_is_refused_cleanly(
        store: Store, text: bytes,
        error: type[VstError] | tuple[type[VstError], ...]) -> None:
    Path(store.path, "config.toml").write_bytes(text)
    with pytest.raises(error) as info:
        Store.open(store.path)
    assert "\n" not in info.value.message
    assert info.value.exit_code in (14, 15)


def test_volume_descriptor_damage_is_refused(store: Store) -> None:
    """A truncated, garbage or foreign volume.toml is WrongVolume/CorruptConfig, never a
    traceback (and never silently accepted)."""
    path = Path(store.path, "volumes", "default", "volume.toml")
    full = path.read_bytes()
    damaged = [full[:cut] for cut in range(len(full) - 1)]
    damaged += [b"volume = 5\n", b"\xff", full.replace(store.store_id.encode(), b"0" * 32)]
    for data in damaged:
        path.write_bytes(data)
        fresh = Store.open(store.path)
        with pytest.raises((WrongVolume, CorruptConfig)):
            fresh.volumes()
        fresh.close()
    path.unlink()
    with pytest.raises(WrongVolume):
        Store.open(store.path).volumes()
    path.write_bytes(full)
    assert len(Store.open(store.path).volumes()) == 1


# -- collections --------------------------------------------------------------------------


def test_create_collection(store: Store) -> None:
    assert store.collection_names() == []
    store.create_collection("photos")
    store.create_collection("a.b_c-9")
    assert store.collection_names() == ["a.b_c-9", "photos"]
    assert store.has_collection("photos")
    assert store.read_ref("photos") is None
    assert store.reflog("photos") == []
    assert [(c.name, c.head) for c in store.collections()] == [("a.b_c-9", None),
                                                               ("photos", None)]
    assert (_meta(store) / "collections" / "photos.toml").read_bytes() == \
        Path(store.path, "collections", "photos.toml").read_bytes()


def test_duplicate_collection(store: Store) -> None:
    store.create_collection("photos")
    before = Path(store.path, "collections", "photos.toml").read_bytes()
    with pytest.raises(AlreadyExists) as info:
        store.create_collection("photos")
    assert info.value.exit_code == 18
    assert Path(store.path, "collections", "photos.toml").read_bytes() == before


@pytest.mark.parametrize("name", [
    "", ".", "..", "a/b", "../x", "-x", ".hidden", "x.lock", "x.toml", "HEAD", "a..b",
    "a b", "a\nb", "a\0b", "é", "a:b", "a~1", "a^", "a@{0}", "x" * 101, "a\\b", "a*",
])
def test_invalid_collection_names(store: Store, name: str) -> None:
    with pytest.raises(UsageError) as info:
        store.create_collection(name)
    assert info.value.exit_code == 2
    assert store.collection_names() == []
    assert os.listdir(Path(store.path, "collections")) == []


def test_unknown_collection(store: Store) -> None:
    with pytest.raises(NotFound):
        store.read_ref("nope")
    with pytest.raises(NotFound):
        store.reflog("nope")
    store.create_collection("c")
    commit = _commit(store)
    with pytest.raises(NotFound):
        store.update_ref("nope", commit, None, committer=SIG, message="x")


# -- refs -----------------------------------------------------------------------------------


def test_update_ref_compare_and_swap(store: Store) -> None:
    store.create_collection("c")
    c1 = _commit(store, message="one")
    c2 = _commit(store, [c1], "two")
    c3 = _commit(store, [c1], "three")
    assert store.update_ref("c", c1, None, committer=SIG, message="first") is None
    assert store.read_ref("c") == c1
    assert store.update_ref("c", c2, c1, committer=SIG, message="second") == c1
    assert store.read_ref("c") == c2
    ref_bytes = Path(store.path, "refs", "c").read_bytes()
    log_bytes = Path(store.path, "logs", "c").read_bytes()
    assert ref_bytes == f"{c2}\n".encode()

    # The loser of a race: it still expects c1.
    with pytest.raises(RefConflict) as info:
        store.update_ref("c", c3, c1, committer=SIG, message="stale")
    assert info.value.exit_code == 16
    assert str(c1) in info.value.message and str(c2) in info.value.message
    assert info.value.hint
    # "No commit yet" is an expectation too.
    with pytest.raises(RefConflict):
        store.update_ref("c", c3, None, committer=SIG, message="stale")
    assert store.read_ref("c") == c2
    assert Path(store.path, "refs", "c").read_bytes() == ref_bytes
    assert Path(store.path, "logs", "c").read_bytes() == log_bytes

    # Unconditional moves are still recorded.
    assert store.update_ref("c", c3, None, committer=SIG, message="force",
                            check_old=False) == c2
    assert store.read_ref("c") == c3
    assert [e.message for e in store.reflog("c")] == ["first", "second", "force"]


def test_update_ref_new_must_be_a_commit(store: Store) -> None:
    store.create_collection("c")
    c1 = _commit(store)
    store.update_ref("c", c1, None, committer=SIG, message="first")
    tree = mktree(store, [])
    with pytest.raises(UsageError, match="not a commit"):
        store.update_ref("c", tree, c1, committer=SIG, message="tree")
    with pytest.raises(ObjectMissing):
        store.update_ref("c", Oid(b"\x42" * 32), c1, committer=SIG, message="missing")
    with pytest.raises(ObjectMissing):
        store.update_ref("c", ZERO_OID, c1, committer=SIG, message="zero")
    assert store.read_ref("c") == c1
    assert len(store.reflog("c")) == 1


def test_reflog_records_old_new_and_message(store: Store) -> None:
    store.create_collection("c")
    c1 = _commit(store, message="one")
    c2 = _commit(store, [c1], "two")
    other = Signature("Other Person", "other@example.com", 1_700_000_500, -300)
    store.update_ref("c", c1, None, committer=SIG, message="initial import")
    store.update_ref("c", c2, c1, committer=other, message="line one\nline two")
    log = store.reflog("c")
    assert [(e.old, e.new) for e in log] == [(ZERO_OID, c1), (c1, c2)]
    assert log[0].message == "initial import"
    assert log[1].message == "line one line two"  # one entry per line, always
    assert log[0].committer == SIG and log[1].committer == other
    # Moving a ref to where it already is records nothing.
    store.update_ref("c", c2, c2, committer=SIG, message="no-op")
    assert len(store.reflog("c")) == 2
    assert Path(store.path, "logs", "c").read_bytes().count(b"\n") == 2


def test_torn_last_reflog_line_is_tolerated(store: Store) -> None:
    """A crash mid-append leaves a partial last line: readers skip it with a warning, and
    the next update does not glue its entry onto the torn one."""
    store.create_collection("c")
    c1 = _commit(store, message="one")
    c2 = _commit(store, [c1], "two")
    store.update_ref("c", c1, None, committer=SIG, message="first")
    log = Path(store.path, "logs", "c")
    full_line = log.read_bytes()
    for cut in (1, 10, 64, len(full_line) - 1):
        log.write_bytes(full_line + full_line[:cut])
        warnings: list[str] = []
        reopened = Store.open(store.path, warn=warnings.append)
        assert [e.new for e in reopened.reflog("c")] == [c1]
        assert warnings and "incomplete" in warnings[0]
        reopened.close()
    store.update_ref("c", c2, c1, committer=SIG, message="second")
    assert [(e.old, e.new, e.message) for e in store.reflog("c")] == [
        (ZERO_OID, c1, "first"), (c1, c2, "second")]
    assert log.read_bytes().endswith(b"\tsecond\n")


def test_reflog_line_of_an_interrupted_move_is_dropped(store: Store) -> None:
    """The reflog line goes in before the ref; a crash between the two leaves a line for a
    move that never happened. Readers ignore it, and the next move removes it."""
    from vst.store import ReflogEntry

    store.create_collection("c")
    c1 = _commit(store, message="one")
    c2 = _commit(store, [c1], "two")
    c3 = _commit(store, [c1], "three")
    store.update_ref("c", c1, None, committer=SIG, message="first")
    log = Path(store.path, "logs", "c")
    with log.open("ab") as f:  # what a kill between the append and the ref write leaves
        f.write(ReflogEntry(c1, c2, SIG, "never happened").encode())
    assert store.read_ref("c") == c1
    assert [e.new for e in store.reflog("c")] == [c1]
    store.update_ref("c", c3, c1, committer=SIG, message="third")
    assert [(e.old, e.new, e.message) for e in store.reflog("c")] == [
        (ZERO_OID, c1, "first"), (c1, c3, "third")]
    assert b"never happened" not in log.read_bytes()


def test_corrupt_reflog_line_in_the_middle_is_an_error(store: Store) -> None:
    store.create_collection("c")
    c1 = _commit(store)
    store.update_ref("c", c1, None, committer=SIG, message="first")
    log = Path(store.path, "logs", "c")
    line = log.read_bytes()
    log.write_bytes(b"garbage\n" + line)
    with pytest.raises(CorruptRef, match="line 1"):
        store.reflog("c")


@pytest.mark.parametrize("content", [
    b"", b"\n", b"garbage\n", b"0" * 63 + b"\n", b"0" * 65 + b"\n", b"A" * 64 + b"\n",
    b"g" * 64 + b"\n", b"\xff" * 64 + b"\n", b"\0" * 65,
], ids=lambda c: repr(c[:12]))
def test_corrupt_ref_file(store: Store, content: bytes) -> None:
    store.create_collection("c")
    c1 = _commit(store)
    store.update_ref("c", c1, None, committer=SIG, message="first")
    ref = Path(store.path, "refs", "c")
    ref.write_bytes(content)
    with pytest.raises(CorruptRef) as info:
        store.read_ref("c")
    assert info.value.exit_code == 14
    assert "'c'" in info.value.message
    # A CAS against a corrupt ref refuses to move it.
    with pytest.raises(CorruptRef):
        store.update_ref("c", c1, c1, committer=SIG, message="x")
    assert ref.read_bytes() == content


def test_ref_without_trailing_newline_is_corrupt(store: Store) -> None:
    store.create_collection("c")
    c1 = _commit(store)
    store.update_ref("c", c1, None, committer=SIG, message="first")
    Path(store.path, "refs", "c").write_bytes(c1.hex.encode())
    with pytest.raises(CorruptRef):
        store.read_ref("c")


def test_refs_config_and_reflog_are_mirrored_to_the_volume(store: Store) -> None:
    """Invariant 5: every volume holds the refs, reflogs, collections and config."""
    store.create_collection("c")
    c1 = _commit(store)
    c2 = _commit(store, [c1])
    meta = _meta(store)
    for step, (new, old) in enumerate([(c1, None), (c2, c1)]):
        store.update_ref("c", new, old, committer=SIG, message=f"step {step}")
        for name in ("config.toml", "refs/c", "logs/c", "collections/c.toml"):
            assert (meta / name).read_bytes() == Path(store.path, name).read_bytes(), name
    assert (meta / "refs" / "c").read_bytes() == f"{c2}\n".encode()


# -- S9 sample: concurrent committers -------------------------------------------------------

WRITERS = 4
COMMITS_EACH = 10


def _committer(path: str, tree_hex: str, writer: int, count: int) -> list[str]:
    """One writer: read head, commit on top, CAS the ref, retry on conflict."""
    store = Store.open(path)
    tree = Oid.from_hex(tree_hex)
    acknowledged = []
    try:
        for i in range(count):
            while True:
                head = store.read_ref("c")
                sig = Signature(f"writer {writer}", "w@example.com", 1_700_000_000 + i, 0)
                commit = commit_tree(store, tree, [head] if head else [],
                                     f"writer {writer} commit {i}\n".encode(),
                                     author=sig, committer=sig)
                try:
                    store.update_ref("c", commit, head, committer=sig,
                                     message=f"writer {writer} commit {i}")
                except RefConflict:
                    continue
                acknowledged.append(commit.hex)
                break
    finally:
        store.close()
    return acknowledged


def test_s9_concurrent_committers_lose_nothing(store: Store) -> None:
    store.create_collection("c")
    tree = mktree(store, [])
    store.close()
    context = multiprocessing.get_context("spawn")
    with context.Pool(WRITERS) as pool:
        results = pool.starmap(_committer, [(store.path, tree.hex, w, COMMITS_EACH)
                                            for w in range(WRITERS)], chunksize=1)
    acknowledged = {Oid.from_hex(h) for r in results for h in r}
    assert len(acknowledged) == WRITERS * COMMITS_EACH

    reopened = Store.open(store.path)
    chain = []
    head = reopened.read_ref("c")
    while head is not None:
        chain.append(head)
        parents = reopened.odb.read_commit(head).parents
        assert len(parents) <= 1
        head = parents[0] if parents else None
    lost = acknowledged - set(chain)
    assert not lost, f"{len(lost)} lost updates"
    assert len(chain) == WRITERS * COMMITS_EACH
    log = reopened.reflog("c")
    assert [e.new for e in log] == list(reversed(chain))
    assert all(a.new == b.old for a, b in itertools.pairwise(log))
    reopened.close()


# -- append-only ---------------------------------------------------------------------------


def test_an_append_only_store_moves_refs_only_forward(store: Store) -> None:
    store.create_collection("c")
    first = _commit(store, message="first")
    second = _commit(store, [first], "second")
    merge = _commit(store, [_commit(store, message="side"), second], "merge")
    sideways = _commit(store, message="unrelated")
    store.update_ref("c", first, None, committer=SIG, message="m")
    assert vst_run("--store", store.path, "store", "config", "append-only", "true").code == 0
    reopened = Store.open(store.path)
    assert reopened.append_only
    reopened.update_ref("c", second, first, committer=SIG, message="forward")
    reopened.update_ref("c", merge, second, committer=SIG, message="through a second parent")
    for target in (first, sideways):
        with pytest.raises(Refused, match="append-only"):
            reopened.update_ref("c", target, merge, committer=SIG, message="back")
        with pytest.raises(Refused):  # an unconditional move is no way around it
            reopened.update_ref("c", target, None, committer=SIG, message="back",
                                check_old=False)
    assert reopened.read_ref("c") == merge
    assert [e.new for e in reopened.reflog("c")] == [first, second, merge]
    ran = vst_run("--store", store.path, "update-ref", "c", first.hex)
    assert ran.code == 5 and "append-only" in ran.err
    out = vst_run("--store", store.path, "store", "config").out.decode()
    assert out == "append-only true\n"
    assert "append_only = true" in (_meta(store) / "config.toml").read_text()
    assert vst_run("--store", store.path, "store", "config", "append-only", "false").code == 0
    assert not Store.open(store.path).append_only
    reopened.close()
