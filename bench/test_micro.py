"""Micro-benchmarks of vst's hot paths, in-process, with pytest-benchmark (issue 7).

    .venv/bin/pytest -q bench/test_micro.py                    # ~30 s, with the table
    .venv/bin/pytest bench/test_micro.py --benchmark-compare   # against a saved run

Each benchmark times one code path on deterministic data (``random.Random`` with a fixed
seed; the log-like text of bench/datasets.py), records its throughput in ``extra_info``
(``mb_per_s`` in 10^6 bytes per second and/or ``items_per_s``, from the median round) and
checks what the timed call returned, so that a path that silently does nothing fails instead
of looking fast. Nothing touches the disk except the index (SQLite) and open_and_hash_many,
where the disk is what is measured, both under tmp_path.
"""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bench import datasets
from vst.crypto.records import OVERHEAD, RecordCipher
from vst.ingest import JOB_BYTES, open_and_hash_many
from vst.objects.chunking import MIB, Chunker, ChunkParams
from vst.objects.ids import PLAIN_IDS, IdScheme
from vst.objects.index import ObjectIndex
from vst.objects.oid import Oid
from vst.objects.pack import PackEntry, PackIndex, PackWriter, parse_pack
from vst.objects.seal import FLAG_ZSTD, HEADER, INNER, PLAIN, Sealing, read_header, seal, unseal
from vst.objects.tree import S_IFDIR, S_IFREG, Tree, TreeEntry
from vst.objects.types import ObjectType

KIB = 1024
MB = 1_000_000

# --- data ------------------------------------------------------------------------------------


@cache
def random_bytes(size: int, seed: int = 7) -> bytes:
    """Incompressible bytes, the same on every run."""
    return random.Random(seed).randbytes(size)


@cache
def text_bytes(size: int) -> bytes:
    """Log-like text that zstd -3 shrinks about 4x (bench/datasets.py's generator)."""
    return b"".join(itertools.islice(datasets.text_chunks("micro", 64 * KIB),
                                     size // (64 * KIB) + 2))[:size]


def random_oids(count: int, seed: int) -> list[Oid]:
    rng = random.Random(seed)
    return [Oid(rng.randbytes(32)) for _ in range(count)]


@cache
def sealings() -> dict[str, Sealing]:
    """The unencrypted sealing and an encrypted one, built as a keyring's would be (keys
    from a seeded generator; each record's salt still comes from os.urandom, as in use)."""
    rng = random.Random(42)
    keyring_id, id_key, dek = rng.randbytes(16), rng.randbytes(32), rng.randbytes(32)
    return {"plain": PLAIN,
            "encrypted": Sealing(keyring_id, IdScheme(id_key), RecordCipher(dek, keyring_id))}


SEALINGS = ["plain", "encrypted"]


def record_rate(benchmark: Any, *, nbytes: int = 0, items: int = 0, **extra: object) -> None:
    """Throughput of one round (``nbytes`` and/or ``items`` per round) from the median
    round, into ``extra_info``. Under --benchmark-disable there are no stats: only
    ``extra`` is recorded."""
    benchmark.extra_info.update(extra)
    if nbytes:
        benchmark.extra_info["bytes_per_round"] = nbytes
    if items:
        benchmark.extra_info["items_per_round"] = items
    stats = getattr(benchmark.stats, "stats", None)
    if stats is None or not stats.median:
        return
    if nbytes:
        benchmark.extra_info["mb_per_s"] = round(nbytes / stats.median / MB, 1)
    if items:
        benchmark.extra_info["items_per_s"] = round(items / stats.median)


# --- chunking and ids ------------------------------------------------------------------------


def test_chunking_64mib(benchmark: Any) -> None:
    """FastCDC over 64 MiB of incompressible bytes, through split_stream as ingest reads a
    large file (each chunk copied out of pyfastcdc's buffer)."""
    data = random_bytes(64 * MIB)
    chunker = Chunker(ChunkParams())

    def run() -> list[int]:
        return [len(chunk) for chunk in chunker.split_stream(io.BytesIO(data))]

    sizes = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    params = chunker.params
    assert sum(sizes) == len(data)
    assert len(sizes) > 10  # really content-defined: a mean chunk of about min + avg
    assert all(params.min <= size <= params.max for size in sizes[:-1])
    record_rate(benchmark, nbytes=len(data), chunks=len(sizes),
                mean_chunk_kib=round(len(data) / len(sizes) / KIB))


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_blake3_id_1mib(benchmark: Any, keyed: bool) -> None:
    """The object id of sixteen 1 MiB blobs: plain BLAKE3, or keyed (encrypted keyrings)."""
    ids = IdScheme(random.Random(3).randbytes(32)) if keyed else PLAIN_IDS
    blob = random_bytes(16 * MIB)
    blobs = [memoryview(blob)[i * MIB:(i + 1) * MIB] for i in range(16)]

    def run() -> list[Oid]:
        return [ids.compute(ObjectType.BLOB, b) for b in blobs]

    oids = benchmark(run)
    assert len(set(oids)) == 16
    assert oids[0] == ids.compute(ObjectType.BLOB, bytes(blobs[0]))
    assert (oids[0] == PLAIN_IDS.compute(ObjectType.BLOB, blobs[0])) is not keyed
    record_rate(benchmark, nbytes=len(blob), items=len(blobs))


# --- sealing ---------------------------------------------------------------------------------


def _seal_unseal(sealing: Sealing, records: list[tuple[Oid, bytes]], level: int
                 ) -> Callable[[], list[bytes]]:
    def run() -> list[bytes]:
        out = []
        for oid, content in records:
            record = seal(oid, ObjectType.BLOB, content, level, sealing.cipher)
            out.append(unseal(record, oid, sealing, "bench")[1])
        return out
    return run


@pytest.mark.parametrize("mode", SEALINGS)
def test_seal_unseal_1mib_incompressible(benchmark: Any, mode: str) -> None:
    """A 1 MiB chunk of incompressible bytes sealed at the default level (zstd's sampling
    should skip compressing it) and unsealed (verified against its id)."""
    sealing = sealings()[mode]
    content = random_bytes(MIB, seed=11)
    oid = sealing.ids.compute(ObjectType.BLOB, content)
    record = seal(oid, ObjectType.BLOB, content, 3, sealing.cipher)
    assert not read_header(record, "bench").flags & FLAG_ZSTD
    overhead = OVERHEAD + INNER.size if sealing.encrypted else 0
    assert len(record) == HEADER.size + overhead + len(content)
    [unsealed] = benchmark(_seal_unseal(sealing, [(oid, content)], 3))
    assert unsealed == content
    record_rate(benchmark, nbytes=len(content), items=1)


@pytest.mark.parametrize("mode", SEALINGS)
def test_seal_unseal_4kib_text(benchmark: Any, mode: str) -> None:
    """The small-file path: 256 text records of 4 KiB each, sealed (compressed) and
    unsealed one by one, where per-record overhead dominates."""
    sealing = sealings()[mode]
    text = text_bytes(MIB)
    records = [(sealing.ids.compute(ObjectType.BLOB, text[i:i + 4 * KIB]), text[i:i + 4 * KIB])
               for i in range(0, len(text), 4 * KIB)]
    out = benchmark(_seal_unseal(sealing, records, 3))
    assert out == [content for _, content in records]
    record_rate(benchmark, nbytes=len(text), items=len(records))


def test_seal_1mib_text_zstd(benchmark: Any) -> None:
    """1 MiB of compressible text sealed at the default level (3): the zstd pass."""
    content = text_bytes(MIB)
    oid = PLAIN_IDS.compute(ObjectType.BLOB, content)
    record = benchmark(seal, oid, ObjectType.BLOB, content)
    assert read_header(record, "bench").flags & FLAG_ZSTD
    assert len(record) < len(content) // 2
    assert unseal(record, oid, PLAIN, "bench") == (ObjectType.BLOB, content)
    record_rate(benchmark, nbytes=len(content), items=1,
                ratio=round(len(content) / len(record), 2))


# --- packs -----------------------------------------------------------------------------------


@cache
def pack_records() -> list[tuple[Oid, bytes]]:
    """16 MiB of plain records: 8 MiB as 1 MiB chunks, 8 MiB as 4 KiB small files."""
    data = random_bytes(16 * MIB, seed=13)
    sizes = [MIB] * 8 + [4 * KIB] * 2048
    records = []
    offset = 0
    for size in sizes:
        content = data[offset:offset + size]
        offset += size
        oid = PLAIN_IDS.compute(ObjectType.BLOB, content)
        records.append((oid, bytes(seal(oid, ObjectType.BLOB, content, 0))))
    return records


def _write_pack(records: list[tuple[Oid, bytes]]) -> tuple[Oid, bytearray, PackIndex]:
    writer = PackWriter()
    for oid, record in records:
        writer.add(oid, record)
    return writer.finish()


def test_pack_write_16mib(benchmark: Any) -> None:
    """PackWriter (a PackStream into memory) of 16 MiB of sealed records: gathering,
    hashing the pack, sorting and writing the index."""
    records = pack_records()
    nbytes = sum(len(record) for _, record in records)
    name, data, index = benchmark(_write_pack, records)
    assert len(index) == len(records)
    assert len(data) > nbytes
    assert {entry.oid for entry in index} == {oid for oid, _ in records}
    entry = index.entries[0]
    assert bytes(data[entry.offset:entry.offset + entry.length]) == dict(records)[entry.oid]
    record_rate(benchmark, nbytes=nbytes, items=len(records), pack=name.short())


def test_parse_pack_16mib(benchmark: Any) -> None:
    """parse_pack of the pack above: header, footer, index checksum and bounds."""
    records = pack_records()
    _, data, written = _write_pack(records)
    parsed = benchmark(parse_pack, bytes(data), "bench")
    assert parsed == written
    record_rate(benchmark, nbytes=len(data), items=len(parsed))


# --- the object index ------------------------------------------------------------------------

INDEX_OBJECTS = 100_000
INDEX_PACKS = 10
PROBES = 10_000


@cache
def index_packs() -> list[tuple[Oid, int, PackIndex, tuple[str, ...]]]:
    """Ten packs of 10,000 objects each (ids only: the index never reads the records)."""
    oids = random_oids(INDEX_OBJECTS, seed=17)
    per_pack = INDEX_OBJECTS // INDEX_PACKS
    packs = []
    for number, start in enumerate(range(0, INDEX_OBJECTS, per_pack)):
        chunk = sorted(oids[start:start + per_pack], key=lambda oid: oid.raw)
        entries = tuple(PackEntry(oid, 8 + 4096 * i, 4096) for i, oid in enumerate(chunk))
        packs.append((Oid(bytes([number]) * 32), 8 + 4096 * per_pack, PackIndex(entries, 8),
                      ("default",)))
    return packs


def test_index_add_packs_100k(benchmark: Any, tmp_path: Path) -> None:
    """ObjectIndex.add_packs of 100,000 entries in ten packs, into a new index each round
    (one transaction, synchronous=FULL: the fsync is part of it)."""
    packs = index_packs()
    paths = (str(tmp_path / f"index-{n}.sqlite") for n in itertools.count())
    opened: list[ObjectIndex] = []

    def setup() -> tuple[tuple[ObjectIndex], dict[str, object]]:
        opened.append(ObjectIndex(next(paths)))
        return (opened[-1],), {}

    try:
        benchmark.pedantic(lambda index: index.add_packs(packs), setup=setup, rounds=3)
        assert opened[-1].count() == (INDEX_OBJECTS, INDEX_PACKS,
                                      INDEX_PACKS * packs[0][1])
    finally:
        for index in opened:
            index.close()
    record_rate(benchmark, items=INDEX_OBJECTS)


@pytest.fixture(scope="module")
def full_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectIndex]:
    index = ObjectIndex(str(tmp_path_factory.mktemp("index") / "index.sqlite"))
    index.add_packs(index_packs())
    yield index
    index.close()


def _probes() -> tuple[list[Oid], set[Oid]]:
    """10,000 ids in a shuffled order, half of them indexed."""
    present = [oid for _, _, index, _ in index_packs() for oid in
               (entry.oid for entry in index.entries)]
    rng = random.Random(19)
    known = rng.sample(present, PROBES // 2)
    probes = known + random_oids(PROBES // 2, seed=23)
    rng.shuffle(probes)
    return probes, set(known)


def test_index_has_many_10k(benchmark: Any, full_index: ObjectIndex) -> None:
    """ObjectIndex.has_many of 10,000 ids (half present) in a 100,000-object index: the
    dedup query ingest makes per batch."""
    probes, known = _probes()
    found = benchmark(full_index.has_many, probes)
    assert found == known
    record_rate(benchmark, items=len(probes))


def test_index_lookup_10k(benchmark: Any, full_index: ObjectIndex) -> None:
    """ObjectIndex.lookup of 10,000 ids one by one (half present): what reading objects
    one at a time (cat-file) pays per object."""
    probes, known = _probes()

    def run() -> int:
        return sum(full_index.lookup(oid) is not None for oid in probes)

    hits = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert hits == len(known)
    location = full_index.lookup(next(iter(known)))
    assert location is not None and location.length == 4096 and location.keyring is None
    record_rate(benchmark, items=len(probes))


def test_index_lookup_many_10k(benchmark: Any, full_index: ObjectIndex) -> None:
    """ObjectIndex.lookup_many of the same 10,000 ids: what a restore's reads pay, a few
    hundred ids to a query."""
    probes, known = _probes()
    probes = list(probes)

    def run() -> int:
        return sum(location is not None for location in full_index.lookup_many(probes))

    hits = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert hits == len(known)
    assert full_index.lookup_many(probes[:50]) == [full_index.lookup(o) for o in probes[:50]]
    record_rate(benchmark, items=len(probes))


# --- trees -----------------------------------------------------------------------------------


@cache
def big_tree() -> Tree:
    """5,000 entries: files with names of a few words, a tenth directories, some with an
    attribute."""
    rng = random.Random(29)
    entries = []
    for number in range(5_000):
        name = b"%s-%05d.%s" % (rng.choice([b"report", b"img", b"src", b"notes"]), number,
                                rng.choice([b"txt", b"jpg", b"py", b"md"]))
        oid = Oid(rng.randbytes(32))
        if number % 10 == 0:
            entries.append(TreeEntry(name, S_IFDIR | 0o755, ObjectType.TREE, oid))
            continue
        attrs = (("xattr.user.tag", b"blue"),) if number % 7 == 0 else ()
        entries.append(TreeEntry(name, S_IFREG | 0o644, ObjectType.BLOB, oid,
                                 rng.randrange(1 << 24), rng.randrange(1 << 62), attrs))
    return Tree.from_entries(entries)


def test_tree_encode_5000(benchmark: Any) -> None:
    tree = big_tree()
    data = benchmark(tree.encode)
    assert Tree.decode(data) == tree
    record_rate(benchmark, nbytes=len(data), items=len(tree.entries))


def test_tree_decode_5000(benchmark: Any) -> None:
    """Decoding checks every entry (names, modes, ranges, order): what a walk pays."""
    tree = big_tree()
    data = tree.encode()
    decoded = benchmark(Tree.decode, data)
    assert decoded == tree
    record_rate(benchmark, nbytes=len(data), items=len(tree.entries))


# --- reading small files ---------------------------------------------------------------------

SMALL_FILES = 1_000


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, bytes]]:
    """1,000 files of 1 B to 6 KiB (3 MB in all, under one job's JOB_BYTES), half text."""
    root = tmp_path_factory.mktemp("small")
    rng = random.Random(31)
    text = text_bytes(4 * MIB)
    files = []
    for number in range(SMALL_FILES):
        size = rng.randint(1, 6 * KIB)
        start = rng.randrange(len(text) - size)
        content = text[start:start + size] if number % 2 else rng.randbytes(size)
        path = root / f"d{number % 10}" / f"f{number:04d}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        files.append((bytes(path), content))
    assert sum(len(content) for _, content in files) < JOB_BYTES
    return files


def test_open_and_hash_many_1000(benchmark: Any, small_files: list[tuple[bytes, bytes]]) -> None:
    """What one read job does for small files: open without following links, fstat, read
    xattrs, read, fstat again, hash (page cache warm: the system calls and hashing)."""
    paths = [path for path, _ in small_files]
    pieces = benchmark(open_and_hash_many, paths, ChunkParams().min, PLAIN_IDS)
    assert not any(piece.again or piece.large or piece.skipped for piece in pieces)
    assert [piece.data for piece in pieces] == [content for _, content in small_files]
    assert [piece.oid for piece in pieces] == [PLAIN_IDS.compute(ObjectType.BLOB, content)
                                               for _, content in small_files]
    record_rate(benchmark, nbytes=sum(len(content) for _, content in small_files),
                items=len(pieces))
