"""The object database through a real store: writing, dedup, verified reads, prefixes,
writer failures, and reading from another volume's copy when one copy is damaged (S4)."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import pytest

from vst.errors import (
    CorruptObject,
    NotFound,
    ObjectMissing,
    UsageError,
    VstError,
)
from vst.objects.chunks import ChunkList
from vst.objects.commit import Commit, Signature
from vst.objects.ids import PLAIN_IDS
from vst.objects.index import Location
from vst.objects.odb import pack_name
from vst.objects.oid import Oid
from vst.objects.seal import HEADER
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.remotes.local import LocalVolume
from vst.store import Store

BLOB = ObjectType.BLOB


def put_all(store: Store, contents: list[bytes], kind: ObjectType = BLOB) -> list[Oid]:
    with store.odb.writer() as writer:
        return [writer.put(kind, content) for content in contents]


def pack_path(store: Store, oid: Oid, volume: str = "default") -> Path:
    location = store.odb.locate(oid)
    ref = next(v for v in store.odb.volumes if v.name == volume)
    return Path(ref.backend.root) / pack_name(location.pack)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def colliding_contents(hex_digits: int = 4) -> tuple[bytes, bytes]:
    """Two small blobs whose ids share their first ``hex_digits`` hex digits."""
    seen: dict[str, bytes] = {}
    for n in itertools.count():
        content = b"%d\n" % n
        prefix = PLAIN_IDS.compute(BLOB, content).hex[:hex_digits]
        if prefix in seen:
            return seen[prefix], content
        seen[prefix] = content
    raise AssertionError("unreachable")


# -- reading and writing ----------------------------------------------------------------


def test_put_get_round_trip(store: Store) -> None:
    contents = [b"", b"hello\n", os.urandom(100_000), b"abc" * 100_000]
    oids = put_all(store, contents)
    for oid, content in zip(oids, contents, strict=True):
        assert store.odb.has(oid)
        assert store.odb.get(oid) == (BLOB, content)
        assert store.odb.get_kind(oid) == BLOB


def test_objects_survive_reopening(store: Store) -> None:
    (oid,) = put_all(store, [b"durable\n"])
    store.close()
    reopened = Store.open(store.path)
    try:
        assert reopened.odb.get(oid) == (BLOB, b"durable\n")
    finally:
        reopened.close()


def test_typed_reads(store: Store) -> None:
    (blob,) = put_all(store, [b"x"])
    tree = Tree.from_entries([TreeEntry(b"x", stat.S_IFREG | 0o644, BLOB, blob, 1)])
    who = Signature("T", "t@example.org", 0)
    with store.odb.writer() as writer:
        tree_id = writer.put(ObjectType.TREE, tree.encode())
        chunks = ChunkList.from_pairs([(blob, 1), (blob, 1)])
        chunks_id = writer.put(ObjectType.CHUNKS, chunks.encode())
        commit = Commit(tree_id, (), who, who, b"msg\n")
        commit_id = writer.put(ObjectType.COMMIT, commit.encode())
    assert store.odb.read_tree(tree_id) == tree
    assert store.odb.read_chunk_list(chunks_id) == chunks
    assert store.odb.read_commit(commit_id) == commit
    with pytest.raises(CorruptObject, match="is a blob, expected a tree"):
        store.odb.read_tree(blob)


def test_objects_are_readable_before_the_writer_closes_only_if_flushed(store: Store) -> None:
    writer = store.odb.writer()
    oid = writer.put(BLOB, b"pending")
    assert writer.contains(oid)
    assert not store.odb.has(oid)
    writer.close()
    assert store.odb.has(oid)


def test_abort_discards_buffered_objects(store: Store) -> None:
    with pytest.raises(RuntimeError), store.odb.writer() as writer:
        oid = writer.put(BLOB, b"never written")
        raise RuntimeError("caller failed")
    assert not store.odb.has(oid)
    assert store.odb.index.count()[0] == 0


def test_dedup(store: Store) -> None:
    with store.odb.writer() as writer:
        first = writer.put(BLOB, b"same content")
        second = writer.put(BLOB, b"same content")
        assert writer.objects_written == 1
    assert first == second
    assert store.odb.index.count()[:2] == (1, 1)
    # a later writer finds it in the index and writes nothing, not even an empty pack
    with store.odb.writer() as writer:
        assert writer.put(BLOB, b"same content") == first
        assert writer.objects_written == 0
    assert store.odb.index.count()[:2] == (1, 1)
    assert len(list(LocalVolume(os.path.join(store.path, "volumes/default")).list("packs/"))) == 1


def test_claim_is_true_once_per_new_object_however_many_threads_ask(store: Store) -> None:
    stored = put_all(store, [b"stored %d" % n for n in range(50)])
    new = [PLAIN_IDS.compute(BLOB, b"new %d" % n) for n in range(200)]
    with store.odb.writer() as writer:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda oid: (oid, writer.claim(oid)),
                                    (stored + new) * 8))
        won = [oid for oid, claimed in answers if claimed]
        assert sorted(won) == sorted(new)  # each new one exactly once
        written = writer.put(BLOB, b"written here")
        assert not writer.claim(written)  # added by this writer: not claimable either
    assert store.odb.index.count()[0] == 51


def test_lookup_many_answers_in_order_across_query_batches(store: Store) -> None:
    stored = put_all(store, [b"object %d" % n for n in range(1200)])  # > 2 query batches
    absent = [PLAIN_IDS.compute(BLOB, b"absent %d" % n) for n in range(3)]
    asked = [absent[0], *reversed(stored), absent[1], stored[7], absent[2]]
    found = store.odb.index.lookup_many(asked)
    assert found == [store.odb.index.lookup(oid) for oid in asked]
    assert found[0] is None and found[1] is not None and found[-1] is None
    assert store.odb.index.lookup_many([]) == []


def test_locate_many_answers_as_lookup_many_in_reading_order(store: Store) -> None:
    first = put_all(store, [b"first %d" % n for n in range(700)])  # > one query batch
    second = put_all(store, [b"second %d" % n for n in range(5)])  # another pack
    absent = PLAIN_IDS.compute(BLOB, b"absent")
    # Out of order, an id twice (two files of one content), one the index lacks.
    asked = [second[3], absent, *reversed(first), second[0], first[5]]
    located = store.odb.index.locate_many(asked)
    assert located == sorted(located)  # by pack and offset: the order that reads them
    looked_up = store.odb.index.lookup_many(asked)
    assert sorted(number for _, _, _, number, _ in located) \
        == [n for n, location in enumerate(looked_up) if location is not None]
    for pack, offset, length, number, keyring in located:
        assert looked_up[number] == Location(Oid(pack), offset, length, keyring)
    assert store.odb.index.locate_many([]) == []


def test_locate_ahead_answers_as_the_index_and_hints_each_run_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    hinted: list[tuple[str, int, int]] = []
    monkeypatch.setattr(LocalVolume, "will_load",
                        lambda self, name, offset, size: hinted.append((name, offset, size)))
    first = put_all(store, [b"first %d" % n for n in range(50)])
    second = put_all(store, [b"second %d" % n for n in range(50)])  # another pack
    absent = PLAIN_IDS.compute(BLOB, b"absent")
    asked = [second[3], absent, *first[10:20], second[40]]
    located = store.odb.locate_ahead(asked, {})
    assert located == store.odb.index.locate_many(asked)
    packs = {pack_name(Oid(pack)) for pack, _, _, _, _ in located}
    assert sorted(name for name, _, _ in hinted) == sorted(packs)  # one run in each pack
    for name, offset, size in hinted:
        inside = [(at, length) for pack, at, length, _, _ in located
                  if pack_name(Oid(pack)) == name]
        assert offset == min(at for at, _ in inside)
        assert offset + size == max(at + length for at, length in inside)
    # The answers serve read_many as its own lookups would.
    wanted = [(oid, len(b"first 10")) for oid in first[10:13]]
    assert store.odb.read_many(wanted, {}, store.odb.locate_ahead(first[10:13], {})) \
        == store.odb.read_many(wanted, {}) == [(BLOB, b"first %d" % n) for n in (10, 11, 12)]


def test_will_load_is_only_a_hint(store: Store, tmp_path: Path) -> None:
    volume = LocalVolume(str(tmp_path))
    volume.will_load("packs/no/such", 0, 100)  # nothing to read: nothing said
    (tmp_path / "f").write_bytes(b"x" * 100)
    volume.will_load("f", 0, 1000)
    assert volume.load("f", 10, 5) == b"xxxxx"


def test_read_sealed_many_stops_at_its_budget(store: Store) -> None:
    oids = put_all(store, [os.urandom(1000) for _ in range(1100)])
    records = store.odb.read_sealed_many(oids, 600 * 1000)  # about 590 of 1,100 records
    assert 500 < len(records) < 600
    assert all(record is not None and record[1] is None for record in records)
    assert len(store.odb.read_sealed_many(oids[:3], 1)) == 1  # at least one, whatever
    missing = PLAIN_IDS.compute(BLOB, b"not stored")
    assert store.odb.read_sealed_many([missing, *oids[:2]], 10**6)[0] is None


def test_same_bytes_different_type_are_different_objects(store: Store) -> None:
    blob, tree = put_all(store, [b"\x01"]) + put_all(store, [b"\x01"], ObjectType.TREE)
    assert blob != tree
    assert store.odb.index.count()[0] == 2


# -- verification ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["id", "type", "size", "body-start", "body-end"])
def test_get_verifies(store: Store, where: str) -> None:
    content = os.urandom(2000)  # incompressible: the body is the content itself
    (oid,) = put_all(store, [content])
    location = store.odb.locate(oid)
    path = pack_path(store, oid)
    offset = location.offset + {"id": 5, "type": 32, "size": 40, "body-start": HEADER.size,
                                "body-end": location.length - 1}[where]
    flip_byte(path, offset)
    with pytest.raises(CorruptObject) as info:
        store.odb.get(oid)
    message = str(info.value)
    assert oid.hex in message
    assert location.pack.hex in message
    assert "'default'" in message


def test_truncated_pack_file(store: Store) -> None:
    (oid,) = put_all(store, [os.urandom(2000)])
    path = pack_path(store, oid)
    location = store.odb.locate(oid)
    os.truncate(path, location.offset + location.length // 2)
    with pytest.raises(CorruptObject, match="truncated"):
        store.odb.get(oid)


def test_missing_pack(store: Store) -> None:
    (oid,) = put_all(store, [b"soon gone"])
    pack_path(store, oid).unlink()
    with pytest.raises(ObjectMissing, match=oid.hex) as info:
        store.odb.get(oid)
    assert info.value.hint


def test_unknown_object(store: Store) -> None:
    with pytest.raises(ObjectMissing):
        store.odb.get(Oid(bytes(32)))


def test_pack_files_are_named_by_their_hash(store: Store) -> None:
    put_all(store, [b"a", b"b"])
    root = Path(store.path, "volumes", "default")
    packs = [p for p in (root / "packs").rglob("*") if p.is_file()]
    assert len(packs) == 1
    assert blake3.blake3(packs[0].read_bytes()).hexdigest() == packs[0].name
    assert packs[0].parent.name == packs[0].name[:2]


# -- prefixes --------------------------------------------------------------------------


def test_prefix_resolution(store: Store) -> None:
    a_content, b_content = colliding_contents()
    a, b = put_all(store, [a_content, b_content])
    (c,) = put_all(store, [b"unique"])
    assert a.hex[:4] == b.hex[:4] != c.hex[:4]
    assert store.odb.resolve_prefix(c.hex[:4]) == c
    assert store.odb.resolve_prefix(c.hex[:5]) == c
    assert store.odb.resolve_prefix(a.hex) == a
    # the shortest prefix that tells a from b
    split = next(i for i in range(4, 64) if a.hex[i] != b.hex[i]) + 1
    assert store.odb.resolve_prefix(a.hex[:split]) == a
    assert store.odb.resolve_prefix(b.hex[:split]) == b
    with pytest.raises(UsageError, match="ambiguous"):
        store.odb.resolve_prefix(a.hex[:4])
    with pytest.raises(UsageError, match="ambiguous"):
        store.odb.resolve_prefix(a.hex[:split - 1])
    unknown = next(p for p in (f"{n:04x}" for n in range(65536))
                   if p not in (a.hex[:4], c.hex[:4]))
    with pytest.raises(NotFound):
        store.odb.resolve_prefix(unknown)


@pytest.mark.parametrize("text", ["", "abc", "ABCD", "xyz1", "abcd ", "0" * 65, "g" * 64])
def test_invalid_prefixes(store: Store, text: str) -> None:
    with pytest.raises(UsageError):
        store.odb.resolve_prefix(text)


# -- the writer ------------------------------------------------------------------------


@pytest.fixture
def small_pack_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.init(str(tmp_path / "store"), pack_size=4096)
    try:
        yield opened
    finally:
        opened.close()


def test_writer_flushes_several_packs(small_pack_store: Store) -> None:
    store = small_pack_store
    contents = [os.urandom(1000) for _ in range(20)]
    oids = put_all(store, contents)
    objects, packs, size = store.odb.index.count()
    assert objects == 20
    assert packs >= 4
    for row in store.odb.index.packs():
        data = store.odb.load_pack(store.odb.volumes[0], row.pack)
        assert len(data) == row.size
        assert row.pack.hex == blake3.blake3(data).hexdigest()
        assert row.volumes == (store.odb.volumes[0].volume_id,)
    assert size == sum(row.size for row in store.odb.index.packs())
    for oid, content in zip(oids, contents, strict=True):
        assert store.odb.get(oid) == (BLOB, content)


def test_writer_error_on_close_propagates(store: Store) -> None:
    assert store.odb  # volumes checked while they exist
    shutil.rmtree(os.path.join(store.path, "volumes", "default"))
    writer = store.odb.writer()
    oid = writer.put(BLOB, b"nowhere to go")
    with pytest.raises(VstError) as info:
        writer.close()
    assert "volumes/default" in str(info.value)
    assert not store.odb.has(oid)
    assert store.odb.index.count() == (0, 0, 0)


def test_writer_error_during_put_propagates(small_pack_store: Store) -> None:
    store = small_pack_store
    assert store.odb
    shutil.rmtree(os.path.join(store.path, "volumes", "default"))
    with pytest.raises(VstError), store.odb.writer() as writer:
        for _ in range(50):  # ~12 packs' worth: the failure surfaces in put() or close()
            writer.put(BLOB, os.urandom(1000))
    assert store.odb.index.count() == (0, 0, 0)


def test_writer_error_from_the_filesystem(store: Store) -> None:
    assert store.odb
    packs = Path(store.path, "volumes", "default", "packs")
    packs.mkdir(exist_ok=True)
    # a regular file wherever a two-hex-digit pack directory must go
    for n in range(256):
        (packs / f"{n:02x}").write_bytes(b"in the way")
    with pytest.raises(VstError), store.odb.writer() as writer:
        writer.put(BLOB, b"blocked")
    assert store.odb.index.count()[0] == 0


# -- two volumes: reading another copy ---------------------------------------------------


@pytest.fixture
def two_volumes(tmp_path: Path) -> Iterator[Store]:
    store = Store.init(str(tmp_path / "store"))
    second = tmp_path / "second"
    second.mkdir()
    volume_id = uuid.uuid4().hex
    store.config["volumes"]["second"] = {"url": str(second), "id": volume_id}
    store._write_descriptor(LocalVolume(str(second)), volume_id)
    store._write_config()
    store.close()
    reopened = Store.open(store.path)
    try:
        assert [v.name for v in reopened.odb.volumes] == ["default", "second"]
        yield reopened
    finally:
        reopened.close()


def _truncate(path: Path, offset: int, length: int) -> None:
    os.truncate(path, offset + length // 2)


def _flip(path: Path, offset: int, length: int) -> None:
    flip_byte(path, offset + length - 1)


def _zero(path: Path, offset: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + length] = bytes(length)
    path.write_bytes(bytes(data))


def _garbage(path: Path, offset: int, length: int) -> None:
    path.write_bytes(b"\xa5" * path.stat().st_size)


def _delete(path: Path, offset: int, length: int) -> None:
    path.unlink()


def _random_body(path: Path, offset: int, length: int) -> None:
    # the header kept, the body replaced
    data = bytearray(path.read_bytes())
    data[offset + HEADER.size:offset + length] = os.urandom(length - HEADER.size)
    path.write_bytes(bytes(data))


CORRUPTIONS: dict[str, Callable[[Path, int, int], None]] = {
    "flip": _flip, "zero": _zero, "truncate": _truncate, "garbage": _garbage,
    "delete": _delete, "random-body": _random_body,
}


def first_copy(store: Store, oid: Oid) -> str:
    """The name of the volume a read tries first."""
    pack = store.odb.locate(oid).pack
    first_id = store.odb.index.pack_volumes(pack)[0]
    return next(v.name for v in store.odb.volumes if v.volume_id == first_id)


def test_packs_are_written_to_every_volume(two_volumes: Store) -> None:
    (oid,) = put_all(two_volumes, [b"replicated"])
    assert pack_path(two_volumes, oid, "default").read_bytes() == \
        pack_path(two_volumes, oid, "second").read_bytes()
    assert len(two_volumes.odb.index.pack_volumes(two_volumes.odb.locate(oid).pack)) == 2




def damage(store: Store, oid: Oid, which: str, corruption: str) -> None:
    """Damage the pack holding ``oid`` on the volume read first or second."""
    first = first_copy(store, oid)
    volume = first if which == "read-first" else \
        next(v.name for v in store.odb.volumes if v.name != first)
    location = store.odb.locate(oid)
    CORRUPTIONS[corruption](pack_path(store, oid, volume), location.offset, location.length)


@pytest.mark.parametrize("which", ["read-first", "read-second"])
@pytest.mark.parametrize("corruption", sorted(set(CORRUPTIONS) - {"garbage"}))
def test_fallback_to_the_other_copy(two_volumes: Store, which: str, corruption: str) -> None:
    content = os.urandom(3000)
    (oid,) = put_all(two_volumes, [content])
    damage(two_volumes, oid, which, corruption)
    assert two_volumes.odb.get(oid) == (BLOB, content)


def test_fallback_garbage_on_the_copy_read_second(two_volumes: Store) -> None:
    content = os.urandom(3000)
    (oid,) = put_all(two_volumes, [content])
    damage(two_volumes, oid, "read-second", "garbage")
    assert two_volumes.odb.get(oid) == (BLOB, content)


def test_fallback_garbage_on_the_copy_read_first(two_volumes: Store) -> None:
    content = os.urandom(3000)
    (oid,) = put_all(two_volumes, [content])
    damage(two_volumes, oid, "read-first", "garbage")  # flags byte becomes 0xa5
    assert two_volumes.odb.get(oid) == (BLOB, content)


def test_both_copies_damaged(two_volumes: Store) -> None:
    (oid,) = put_all(two_volumes, [os.urandom(3000)])
    location = two_volumes.odb.locate(oid)
    for volume in ("default", "second"):
        _flip(pack_path(two_volumes, oid, volume), location.offset, location.length)
    with pytest.raises(CorruptObject, match="1 other copies failed") as info:
        two_volumes.odb.get(oid)
    assert oid.hex in str(info.value)


def test_both_copies_missing(two_volumes: Store) -> None:
    (oid,) = put_all(two_volumes, [b"gone twice"])
    for volume in ("default", "second"):
        pack_path(two_volumes, oid, volume).unlink()
    with pytest.raises(ObjectMissing, match="every volume"):
        two_volumes.odb.get(oid)


@pytest.mark.parametrize("flags", [0x02, 0x80])
def test_fallback_when_the_first_copy_has_bad_flags(two_volumes: Store, flags: int) -> None:
    content = os.urandom(3000)
    (oid,) = put_all(two_volumes, [content])
    location = two_volumes.odb.locate(oid)
    path = pack_path(two_volumes, oid, first_copy(two_volumes, oid))
    data = bytearray(path.read_bytes())
    data[location.offset + 33] = flags  # id (32), type (1), flags
    path.write_bytes(bytes(data))
    assert two_volumes.odb.get(oid) == (BLOB, content)


def test_packs_are_spooled_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = Store.init(str(tmp_path / "s"), pack_size=4096)
    try:
        spool = tmp_path / "s" / "tmp"
        with store.odb.writer() as writer:
            oids = [writer.put(ObjectType.BLOB, os.urandom(3000)) for _ in range(10)]
        assert list(spool.iterdir()) == []
        assert all(store.odb.get(oid)[1] for oid in oids)
        with pytest.raises(RuntimeError), store.odb.writer() as writer:
            writer.put(ObjectType.BLOB, b"abandoned")
            raise RuntimeError("interrupted")
        assert list(spool.iterdir()) == []
        assert not store.odb.has(store.odb.ids.compute(ObjectType.BLOB, b"abandoned"))
    finally:
        store.close()


def test_an_index_of_schema_1_gains_the_keyring_column(tmp_path: Path) -> None:
    import sqlite3

    from vst.objects.index import ObjectIndex

    path = str(tmp_path / "index.sqlite")
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE objects (id BLOB PRIMARY KEY, pack BLOB NOT NULL, offset INTEGER NOT NULL,
                              length INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE packs (id BLOB PRIMARY KEY, size INTEGER NOT NULL,
                            count INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE pack_copies (pack BLOB NOT NULL, volume TEXT NOT NULL,
                                  PRIMARY KEY (pack, volume)) WITHOUT ROWID;
        PRAGMA user_version=1;
    """)
    db.execute("INSERT INTO packs VALUES (?, 100, 1)", (b"p" * 32,))
    db.execute("INSERT INTO objects VALUES (?, ?, 8, 50)", (b"o" * 32, b"p" * 32))
    db.commit()
    db.close()
    index = ObjectIndex(path)
    try:
        location = index.lookup(Oid(b"o" * 32))
        assert location is not None and location.keyring is None and location.offset == 8
        version = index._query("PRAGMA user_version")[0][0]
        assert version == 2
    finally:
        index.close()
