"""Golden vectors: fixed objects, their exact encodings and ids, stored in tests/data/objects/.

The test recomputes every encoding and id and compares with the stored files, so a
format change cannot slip through unnoticed. After an *intentional* format change (with a
version bump and docs/format.md updated), regenerate with

    .venv/bin/python tests/test_golden.py --yes

and review the diff of tests/data/objects/ like any other change.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import blake3
import pytest

from vst.objects.chunks import ChunkList
from vst.objects.commit import Commit, Signature
from vst.objects.ids import _JOIN_UP_TO, PLAIN_IDS, IdScheme
from vst.objects.oid import Oid
from vst.objects.pack import PackWriter, parse_pack
from vst.objects.seal import FLAG_ZSTD, HEADER, read_header, seal, unseal
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType

DATA = Path(__file__).parent / "data" / "objects"

# Computed independently of vst (blake3.blake3(b"blob 0\0"), blake3.blake3(b"blob 6\0hello\n")),
# so a change to the id scheme is caught even if the stored files were regenerated.
EMPTY_BLOB_ID = "4a0b6603381c7c38c557e9ceb3cba8876f0a7863146e7309801352e80b073b65"
HELLO_BLOB_ID = "c9a94c1a9145087554f265dc47aecd93fd8fe3bbac49d768cf69c6a816bf51ce"


def blob(content: bytes) -> tuple[ObjectType, bytes]:
    return ObjectType.BLOB, content


def vectors() -> dict[str, tuple[ObjectType, bytes]]:
    """The fixed objects, by file name. Never change them: add new ones instead."""
    hello = PLAIN_IDS.compute(ObjectType.BLOB, b"hello\n")
    empty = PLAIN_IDS.compute(ObjectType.BLOB, b"")
    target = PLAIN_IDS.compute(ObjectType.BLOB, b"hello.txt")
    chunks = ChunkList.from_pairs([(hello, 6), (Oid(bytes(range(32))), 1 << 20),
                                   (hello, 0xFFFFFFFF)])
    chunks_id = PLAIN_IDS.compute(ObjectType.CHUNKS, chunks.encode())
    subtree = Tree.from_entries([
        TreeEntry(b"empty", stat.S_IFREG | 0o600, ObjectType.BLOB, empty, 0, 0),
    ])
    subtree_id = PLAIN_IDS.compute(ObjectType.TREE, subtree.encode())
    tree = Tree.from_entries([
        TreeEntry(b"hello.txt", stat.S_IFREG | 0o644, ObjectType.BLOB, hello, 6,
                  1_700_000_000_123_456_789),
        TreeEntry(b"big.iso", stat.S_IFREG | 0o755, ObjectType.CHUNKS, chunks_id,
                  chunks.size, -1, (("hardlink", b"1"), ("xattr.user.k", b"v\x00"))),
        TreeEntry("caf\u00e9".encode(), stat.S_IFDIR | 0o755, ObjectType.TREE, subtree_id,
                  0, 0),
        TreeEntry(b"link", stat.S_IFLNK | 0o777, ObjectType.BLOB, target, 9, 2**63 - 1),
    ])
    tree_id = PLAIN_IDS.compute(ObjectType.TREE, tree.encode())
    author = Signature("A U Thor", "author@example.org", 1_700_000_000, 120)
    root = Commit(tree_id, (), author, author, b"first\n")
    root_id = PLAIN_IDS.compute(ObjectType.COMMIT, root.encode())
    commit = Commit(tree_id, (root_id, hello),
                    author, Signature("C O Mitter", "c@example.org", -1, -570),
                    "second\n\nwith a body: \u00e9\n".encode())
    return {
        "blob-empty": blob(b""),
        "blob-hello": blob(b"hello\n"),
        "blob-link-target": blob(b"hello.txt"),
        "chunks": (ObjectType.CHUNKS, chunks.encode()),
        "tree-sub": (ObjectType.TREE, subtree.encode()),
        "tree": (ObjectType.TREE, tree.encode()),
        "commit-root": (ObjectType.COMMIT, root.encode()),
        "commit": (ObjectType.COMMIT, commit.encode()),
    }


DECODERS = {ObjectType.TREE: Tree.decode, ObjectType.COMMIT: Commit.decode,
            ObjectType.CHUNKS: ChunkList.decode}
KEYED = IdScheme(bytes(range(32)))


def build_pack() -> tuple[Oid, bytes]:
    """A pack of every vector, sealed without compression (zstd output may change
    between library versions; the layout around it must not)."""
    writer = PackWriter()
    for kind, content in vectors().values():
        oid = PLAIN_IDS.compute(kind, content)
        writer.add(oid, seal(oid, kind, content, level=0))
    pack, data, _index = writer.finish()
    return pack, data


def expected_ids() -> dict[str, str]:
    lines = (DATA / "ids.txt").read_text().splitlines()
    return dict(line.split(" ", 1)[::-1] for line in lines if line and not line.startswith("#"))


def compute_ids() -> dict[str, str]:
    ids = {name: PLAIN_IDS.compute(kind, content).hex for name, (kind, content)
           in vectors().items()}
    ids["keyed-blob-hello"] = KEYED.compute(ObjectType.BLOB, b"hello\n").hex
    ids["pack"] = build_pack()[0].hex
    return ids


@pytest.mark.parametrize("name", sorted(vectors()))
def test_encoding_matches_golden(name: str) -> None:
    kind, content = vectors()[name]
    assert content == (DATA / f"{name}.bin").read_bytes()
    assert PLAIN_IDS.compute(kind, content).hex == expected_ids()[name]


@pytest.mark.parametrize("name", sorted(n for n, (k, _) in vectors().items() if k in DECODERS))
def test_golden_decodes_and_reencodes(name: str) -> None:
    kind, _ = vectors()[name]
    data = (DATA / f"{name}.bin").read_bytes()
    oid = Oid.from_hex(expected_ids()[name])
    assert DECODERS[kind](data, oid).encode() == data


def test_well_known_blob_ids() -> None:
    assert expected_ids()["blob-empty"] == EMPTY_BLOB_ID
    assert expected_ids()["blob-hello"] == HELLO_BLOB_ID
    assert PLAIN_IDS.compute(ObjectType.BLOB, b"").hex == EMPTY_BLOB_ID
    assert PLAIN_IDS.compute(ObjectType.BLOB, memoryview(b"hello\n")).hex == HELLO_BLOB_ID


def test_keyed_id_differs_from_plain() -> None:
    ids = compute_ids()
    assert ids["keyed-blob-hello"] == expected_ids()["keyed-blob-hello"]
    assert ids["keyed-blob-hello"] != ids["blob-hello"]


@pytest.mark.parametrize("size", [0, 1023, 1024, 10_000, _JOIN_UP_TO - 1, _JOIN_UP_TO,
                                  _JOIN_UP_TO + 1, 3 * _JOIN_UP_TO + 17])
def test_ids_are_blake3_of_the_header_then_the_content_at_every_size(size: int) -> None:
    """Small contents are hashed joined to their header in one call, larger ones streamed
    after it: one definition either way, plain and keyed, from bytes or a memoryview."""
    content = bytes(range(256)) * (size // 256) + bytes(size % 256)
    header = b"blob %d\0" % size
    for ids, hasher in ((PLAIN_IDS, blake3.blake3()), (KEYED, blake3.blake3(key=bytes(range(32))))):
        hasher.update(header)
        hasher.update(content)
        assert ids.compute(ObjectType.BLOB, content).raw == hasher.digest()
        assert ids.digest(ObjectType.BLOB, memoryview(content)) == hasher.digest()


def test_all_ids_match() -> None:
    assert compute_ids() == expected_ids()


def test_pack_matches_golden() -> None:
    pack, data = build_pack()
    assert data == (DATA / "pack.bin").read_bytes()
    assert pack.hex == expected_ids()["pack"]
    index = parse_pack(data, "golden")
    names = {PLAIN_IDS.compute(kind, content): (kind, content)
             for kind, content in vectors().values()}
    assert {entry.oid for entry in index} == set(names)
    for entry in index:
        record = data[entry.offset:entry.offset + entry.length]
        assert unseal(record, entry.oid, PLAIN_IDS, "golden") == names[entry.oid]


def test_compressed_record_still_decodes() -> None:
    # Encoders may produce other zstd bytes in future versions; readers must keep
    # reading the records written today.
    record = (DATA / "record-zstd.bin").read_bytes()
    header = read_header(record, "golden")
    assert header.flags == FLAG_ZSTD
    kind, content = unseal(record, header.oid, PLAIN_IDS, "golden")
    assert (kind, content) == (ObjectType.BLOB, b"hello, world\n" * 100)
    assert len(record) < HEADER.size + len(content) // 4


def regenerate() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name, (_kind, content) in vectors().items():
        (DATA / f"{name}.bin").write_bytes(content)
    lines = ["# <hex id> <vector>: BLAKE3 of b'<type> <len>\\0' + content; see test_golden.py"]
    lines += [f"{oid} {name}" for name, oid in sorted(compute_ids().items())]
    (DATA / "ids.txt").write_text("\n".join(lines) + "\n")
    (DATA / "pack.bin").write_bytes(build_pack()[1])
    content = b"hello, world\n" * 100
    oid = PLAIN_IDS.compute(ObjectType.BLOB, content)
    (DATA / "record-zstd.bin").write_bytes(seal(oid, ObjectType.BLOB, content, level=3))


if __name__ == "__main__":
    if "--yes" not in sys.argv:
        sys.exit("this rewrites tests/data/objects/ from the current code; only after an "
                 "intentional format change. Rerun with --yes.")
    regenerate()
