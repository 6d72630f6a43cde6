"""Sealed records and packs: round trips, and strict refusal of every damaged byte.

A record or pack that is truncated, flipped or forged is refused with CorruptObject /
CorruptPack (or UnsupportedFormat for flags and versions this vst does not know), never
another exception, and never by allocating what a hostile header asks for (S5).
"""

from __future__ import annotations

import os
import struct
import tracemalloc

import blake3
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from vst.errors import CorruptObject, CorruptPack, UnsupportedFormat, WrongKey
from vst.objects.ids import PLAIN_IDS
from vst.objects.oid import Oid
from vst.objects.pack import (
    FOOTER_SIZE,
    KEYED_FOOTER_SIZE,
    MAGIC,
    PackWriter,
    pack_id,
    parse_pack,
    read_index,
)
from vst.objects.seal import (
    FLAG_ENCRYPTED,
    FLAG_ZSTD,
    HEADER,
    read_header,
    seal,
    unseal,
)
from vst.objects.types import MAX_OBJECT_SIZE, ObjectType

FAST = settings(max_examples=100, deadline=None)
KINDS = st.sampled_from(list(ObjectType))
WHERE = "pack P on volume 'v'"


def sealed(content: bytes, kind: ObjectType = ObjectType.BLOB,
           level: int = 3) -> tuple[Oid, bytes]:
    oid = PLAIN_IDS.compute(kind, content)
    return oid, seal(oid, kind, content, level)


def flips(data: bytes):
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(flipped)


def with_header(record: bytes, **fields: int) -> bytes:
    """``record`` with some header fields replaced (oid is raw bytes)."""
    raw_oid, kind, flags, size = HEADER.unpack_from(record)
    values = {"oid": raw_oid, "kind": kind, "flags": flags, "size": size} | fields
    return HEADER.pack(values["oid"], values["kind"], values["flags"], values["size"]) + \
        record[HEADER.size:]


def peak_allocation(call) -> int:
    """Peak Python heap allocation (bytes objects included) while ``call`` runs."""
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- sealed records -------------------------------------------------------------------------


class TestSealRoundTrip:
    @FAST
    @given(content=st.binary(max_size=3000), kind=KINDS, level=st.sampled_from([0, 1, 3]))
    def test_round_trip(self, content: bytes, kind: ObjectType, level: int) -> None:
        oid, record = sealed(content, kind, level)
        header = read_header(record, WHERE)
        assert (header.oid, header.kind, header.plain_size) == (oid, kind, len(content))
        assert unseal(record, oid, PLAIN_IDS, WHERE) == (kind, content)
        assert unseal(memoryview(record), oid, PLAIN_IDS, WHERE) == (kind, content)
        if level == 0:
            assert header.flags == 0 and record[HEADER.size:] == content

    def test_compressible_is_compressed(self) -> None:
        content = b"the quick brown fox jumps over the lazy dog\n" * 30_000  # > 1 MiB
        oid, record = sealed(content)
        assert read_header(record, WHERE).flags == FLAG_ZSTD
        assert len(record) < len(content) // 20
        assert unseal(record, oid, PLAIN_IDS, WHERE) == (ObjectType.BLOB, content)

    @pytest.mark.parametrize("size", [100, 200 * 1024])  # below and above the sampling size
    def test_incompressible_is_stored(self, size: int) -> None:
        content = os.urandom(size)
        oid, record = sealed(content)
        assert read_header(record, WHERE).flags == 0
        assert record[HEADER.size:] == content
        assert unseal(record, oid, PLAIN_IDS, WHERE) == (ObjectType.BLOB, content)

    def test_compressible_head_and_incompressible_rest(self) -> None:
        # The first sample alone decides for a compressible head; what is stored is still
        # the smaller of the two, and reads back exact.
        content = b"abc" * 20_000 + os.urandom(400_000)
        oid, record = sealed(content)
        assert len(record) <= HEADER.size + len(content)
        assert unseal(record, oid, PLAIN_IDS, WHERE) == (ObjectType.BLOB, content)

    def test_empty(self) -> None:
        oid, record = sealed(b"")
        assert len(record) == HEADER.size
        assert read_header(record, WHERE).flags == 0
        assert unseal(record, oid, PLAIN_IDS, WHERE) == (ObjectType.BLOB, b"")

    def test_level_zero_stores_plain(self) -> None:
        content = bytes(10_000)
        oid, record = sealed(content, level=0)
        assert record == HEADER.pack(oid.raw, ObjectType.BLOB, 0, len(content)) + content
        assert unseal(record, oid, PLAIN_IDS, WHERE) == (ObjectType.BLOB, content)


class TestUnsealStrict:
    def test_wrong_expected_id(self) -> None:
        _oid, record = sealed(b"hello\n")
        other = PLAIN_IDS.compute(ObjectType.BLOB, b"other")
        with pytest.raises(CorruptObject, match=f"{other}.*{WHERE}"):
            unseal(record, other, PLAIN_IDS, WHERE)

    def test_record_of_another_object_with_matching_header(self) -> None:
        # The header names the id asked for, but the body is another object's.
        oid, _ = sealed(b"wanted")
        _, record = sealed(b"served instead")
        forged = with_header(record, oid=oid.raw)
        with pytest.raises(CorruptObject, match="does not match its id"):
            unseal(forged, oid, PLAIN_IDS, WHERE)

    def test_type_confusion(self) -> None:
        oid, record = sealed(b"tree-like bytes", ObjectType.BLOB)
        with pytest.raises(CorruptObject, match="does not match"):
            unseal(with_header(record, kind=ObjectType.TREE), oid, PLAIN_IDS, WHERE)

    @pytest.mark.parametrize("content", [b"", b"raw \xff\x00 bytes", os.urandom(300)],
                             ids=["empty", "short", "random"])
    def test_every_bit_flip_of_a_plain_record(self, content: bytes) -> None:
        oid, record = sealed(content)
        assert read_header(record, WHERE).flags == 0
        for bit, flipped in flips(record):
            with pytest.raises((CorruptObject, UnsupportedFormat)):
                unseal(flipped, oid, PLAIN_IDS, WHERE)
                pytest.fail(f"flip of bit {bit} accepted")

    @pytest.mark.parametrize("content", [
        b"hello world " * 20,
        bytes(range(256)) * 4,
    ], ids=["text", "bytes-cycle"])
    def test_every_bit_flip_of_a_compressed_record(self, content: bytes) -> None:
        oid, record = sealed(content)
        assert read_header(record, WHERE).flags == FLAG_ZSTD
        for _bit, flipped in flips(record):
            try:
                result = unseal(flipped, oid, PLAIN_IDS, WHERE)
            except (CorruptObject, UnsupportedFormat):
                continue
            # Only a flip zstd ignores (the frame header's unused bit) may pass, and then
            # the content is verified against the id: it is exactly the original.
            assert result == (ObjectType.BLOB, content)

    @pytest.mark.parametrize("level", [0, 3])
    def test_truncation_at_every_byte(self, level: int) -> None:
        oid, record = sealed(b"some content, some content, some content\n" * 5, level=level)
        for cut in range(len(record)):
            with pytest.raises(CorruptObject):
                unseal(record[:cut], oid, PLAIN_IDS, WHERE)

    @FAST
    @given(st.binary(max_size=200))
    def test_garbage(self, data: bytes) -> None:
        oid = PLAIN_IDS.compute(ObjectType.BLOB, b"x")
        with pytest.raises((CorruptObject, UnsupportedFormat)):
            unseal(data, oid, PLAIN_IDS, WHERE)

    @FAST
    @given(st.binary(max_size=200))
    def test_garbage_body_behind_a_valid_header(self, body: bytes) -> None:
        oid = PLAIN_IDS.compute(ObjectType.BLOB, b"x")
        record = HEADER.pack(oid.raw, ObjectType.BLOB, FLAG_ZSTD, 100) + body
        with pytest.raises(CorruptObject):
            unseal(record, oid, PLAIN_IDS, WHERE)

    def test_an_encrypted_record_needs_its_key_and_shows_no_type(self) -> None:
        oid, record = sealed(b"secret")
        with pytest.raises(CorruptObject, match="shows a type"):  # type 1 left visible
            unseal(with_header(record, flags=FLAG_ENCRYPTED), oid, PLAIN_IDS, WHERE)
        hidden = with_header(record, kind=0, flags=FLAG_ENCRYPTED, size=0)
        with pytest.raises(WrongKey, match="no key"):
            unseal(hidden, oid, PLAIN_IDS, WHERE)
        with pytest.raises(UnsupportedFormat):
            read_header(with_header(record, flags=FLAG_ENCRYPTED | FLAG_ZSTD), WHERE)

    @pytest.mark.parametrize("flags", [0x04, 0x80, 0xFF])
    def test_unknown_flags_are_unsupported(self, flags: int) -> None:
        oid, record = sealed(b"x")
        with pytest.raises(UnsupportedFormat, match="flags"):
            unseal(with_header(record, flags=flags), oid, PLAIN_IDS, WHERE)

    @pytest.mark.parametrize("kind", [0, 5, 255])
    def test_unknown_type(self, kind: int) -> None:
        oid, record = sealed(b"x")
        with pytest.raises(CorruptObject, match="unknown type"):
            unseal(with_header(record, kind=kind), oid, PLAIN_IDS, WHERE)

    @pytest.mark.parametrize("size", [MAX_OBJECT_SIZE + 1, 2**64 - 1])
    def test_implausible_size_is_refused_before_reading(self, size: int) -> None:
        oid, record = sealed(b"x" * 1000)
        forged = with_header(record, size=size)

        def attempt() -> None:
            with pytest.raises(CorruptObject, match="implausible size"):
                unseal(forged, oid, PLAIN_IDS, WHERE)

        assert peak_allocation(attempt) < 1 << 20

    @pytest.mark.parametrize("size", [0, 999, 1001])
    def test_length_mismatch(self, size: int) -> None:
        for level in (0, 3):
            oid, record = sealed(b"y" * 1000, level=level)
            with pytest.raises(CorruptObject):
                unseal(with_header(record, size=size), oid, PLAIN_IDS, WHERE)


class TestZstdBomb:
    """A record claims a small plaintext; its frame expands to much more."""

    CLAIMED = 1000
    BOMB = 64 * 1024 * 1024

    def bomb(self, write_content_size: bool) -> tuple[Oid, bytes]:
        content = b"z" * self.CLAIMED
        oid = PLAIN_IDS.compute(ObjectType.BLOB, content)
        frame = zstandard.ZstdCompressor(
            level=1, write_content_size=write_content_size).compress(bytes(self.BOMB))
        assert len(frame) < 10_000
        return oid, HEADER.pack(oid.raw, ObjectType.BLOB, FLAG_ZSTD, self.CLAIMED) + frame

    def check(self, oid: Oid, record: bytes) -> None:
        def attempt() -> None:
            with pytest.raises(CorruptObject):
                unseal(record, oid, PLAIN_IDS, WHERE)

        assert peak_allocation(attempt) < self.CLAIMED + 256 * 1024

    def test_frame_without_content_size(self) -> None:
        self.check(*self.bomb(write_content_size=False))

    def test_frame_stating_a_large_content_size(self) -> None:
        self.check(*self.bomb(write_content_size=True))

    def test_forged_frame_header_claiming_a_huge_size(self) -> None:
        content = b"z" * self.CLAIMED
        oid = PLAIN_IDS.compute(ObjectType.BLOB, content)
        frame = zstandard.ZstdCompressor(level=1).compress(content)
        # Frame header: magic, descriptor 0x60 (2-byte content size, single segment), size.
        assert frame[4] == 0x60
        forged = frame[:4] + bytes([0xE0]) + struct.pack("<Q", 2**62) + frame[7:]
        record = HEADER.pack(oid.raw, ObjectType.BLOB, FLAG_ZSTD, self.CLAIMED) + forged
        self.check(oid, record)


# -- packs ----------------------------------------------------------------------------------


def make_pack(contents: list[bytes], level: int = 3) -> tuple[Oid, bytes, dict[Oid, bytes]]:
    writer = PackWriter()
    objects = {}
    for content in contents:
        oid, record = sealed(content, level=level)
        writer.add(oid, record)
        objects[oid] = content
    pack, data, _index = writer.finish()
    return pack, data, objects


SMALL = [b"alpha\n", b"beta beta beta beta beta beta\n", b""]


def forge_index(data: bytes, entries: list[tuple[bytes, int, int]]) -> bytes:
    """Replace a pack's index with ``entries`` and a matching footer (valid hash)."""
    index_offset = struct.unpack_from(">Q", data, len(data) - FOOTER_SIZE)[0]
    index = b"".join(struct.pack(">32sQI", *e) for e in entries)
    footer = struct.pack(">QII32s8s", index_offset, len(entries), 0,
                         blake3.blake3(index).digest(), b"VSTPEND\x01")
    return data[:index_offset] + index + footer


class TestPack:
    @FAST
    @given(st.lists(st.binary(max_size=500), max_size=8), st.sampled_from([0, 3]))
    def test_round_trip(self, contents: list[bytes], level: int) -> None:
        pack, data, objects = make_pack(contents, level)
        assert pack == pack_id(data) == Oid(blake3.blake3(data).digest())
        assert data.startswith(MAGIC)
        index = parse_pack(data, "p")
        assert [e.oid for e in index] == sorted(objects)
        for entry in index:
            record = data[entry.offset:entry.offset + entry.length]
            assert unseal(record, entry.oid, PLAIN_IDS, "p") == \
                (ObjectType.BLOB, objects[entry.oid])

    def test_writer_matches_parsed_index_and_dedups(self) -> None:
        writer = PackWriter()
        oid, record = sealed(b"once")
        writer.add(oid, record)
        writer.add(oid, record)
        assert len(writer) == 1 and oid in writer
        assert bytes(writer.record(oid)) == record
        assert writer.record(PLAIN_IDS.compute(ObjectType.BLOB, b"nope")) is None
        pack, data, index = writer.finish()
        assert pack == pack_id(data)
        assert parse_pack(data, "p") == index
        assert len(data) == len(MAGIC) + len(record) + 44 + FOOTER_SIZE

    def test_empty_pack(self) -> None:
        pack, data, objects = make_pack([])
        assert len(parse_pack(data, "p")) == 0 and not objects
        assert pack == pack_id(data)

    def test_read_index_uses_two_bounded_reads(self) -> None:
        _pack, data, objects = make_pack([os.urandom(5000), b"small"])
        reads = []

        def load(offset: int, size: int) -> bytes:
            reads.append((offset, size))
            return data[offset:offset + size]

        index = read_index(load, len(data), "p")
        assert {e.oid for e in index} == set(objects)
        assert len(reads) == 2
        # The tail read covers the larger (keyed) footer, whichever the pack has.
        assert sum(size for _, size in reads) == KEYED_FOOTER_SIZE + 2 * 44

    def test_truncation_at_every_byte(self) -> None:
        _pack, data, _ = make_pack(SMALL)
        for cut in range(len(data)):
            with pytest.raises((CorruptPack, UnsupportedFormat)):
                parse_pack(data[:cut], "p")
            # read_index alone (the tail-first reader a remote volume uses)
            with pytest.raises((CorruptPack, UnsupportedFormat)):
                read_index(lambda o, n, d=data[:cut]: d[o:o + n], cut, "p")

    def test_bit_flips_in_header_index_and_footer(self) -> None:
        _pack, data, _ = make_pack(SMALL)
        index_offset = parse_pack(data, "p").index_offset
        checked = 0
        for bit, flipped in flips(data):
            at = bit // 8
            if len(MAGIC) <= at < index_offset:
                continue  # inside the records: see the next test
            with pytest.raises((CorruptPack, UnsupportedFormat)):
                parse_pack(flipped, "p")
                pytest.fail(f"flip at byte {at} accepted")
            checked += 1
        assert checked == (len(data) - index_offset + len(MAGIC)) * 8

    def test_bit_flips_in_records_change_the_pack_id(self) -> None:
        pack, data, objects = make_pack(SMALL)
        index = parse_pack(data, "p")
        for bit, flipped in flips(data[:index.index_offset]):
            if bit < len(MAGIC) * 8:
                continue
            damaged = flipped + data[index.index_offset:]
            assert pack_id(damaged) != pack
            # and the record it lands in
            at = bit // 8
            entry = next(e for e in index if e.offset <= at < e.offset + e.length)
            # is refused by unseal, or (a flip zstd ignores) still yields the exact object
            try:
                result = unseal(damaged[entry.offset:entry.offset + entry.length],
                                entry.oid, PLAIN_IDS, "p")
            except (CorruptObject, UnsupportedFormat):
                continue
            assert result == (ObjectType.BLOB, objects[entry.oid])

    @FAST
    @given(st.binary(max_size=300))
    def test_garbage(self, data: bytes) -> None:
        with pytest.raises((CorruptPack, UnsupportedFormat)):
            parse_pack(data, "p")

    @FAST
    @given(st.binary(min_size=FOOTER_SIZE, max_size=FOOTER_SIZE + 100))
    def test_garbage_between_valid_magics(self, middle: bytes) -> None:
        data = MAGIC + middle[:-8] + b"VSTPEND\x01"
        with pytest.raises(CorruptPack):
            parse_pack(data, "p")

    def test_versions(self) -> None:
        _pack, data, _ = make_pack(SMALL)
        with pytest.raises(UnsupportedFormat, match="version 3"):
            parse_pack(b"VSTPACK\x03" + data[8:], "p")
        with pytest.raises(UnsupportedFormat, match="version 3"):
            parse_pack(data[:-1] + b"\x03", "p")
        with pytest.raises(CorruptPack, match="disagree"):
            parse_pack(b"VSTPACK\x02" + data[8:], "p")
        with pytest.raises(CorruptPack):  # a version 1 footer read as a keyed one
            parse_pack(data[:-1] + b"\x02", "p")
        with pytest.raises(CorruptPack, match="magic"):
            parse_pack(b"VSTPACX\x01" + data[8:], "p")

    def test_a_keyed_pack_names_its_keyring_in_the_footer(self) -> None:
        keyring = bytes(range(1, 17))
        writer = PackWriter(keyring)
        writer.add(Oid(bytes(32)), b"x" * 60)
        _pack, data, index = writer.finish()
        assert index.keyring_id == keyring and data.startswith(b"VSTPACK\x02")
        assert parse_pack(bytes(data), "p").keyring_id == keyring
        tail = read_index(lambda o, n: bytes(data[o:o + n]), len(data), "p")
        assert tail.keyring_id == keyring and tail.entries == index.entries
        assert len(data) == 8 + 60 + 44 + KEYED_FOOTER_SIZE
        with pytest.raises(CorruptPack, match="names no keyring"):
            forged = bytes(data[:-24]) + bytes(16) + bytes(data[-8:])
            read_index(lambda o, n: forged[o:o + n], len(forged), "p")
        with pytest.raises(ValueError):
            PackWriter(b"short")

    def test_forged_indexes_with_valid_checksums(self) -> None:
        _pack, data, _ = make_pack(SMALL, level=0)
        entries = [(e.oid.raw, e.offset, e.length) for e in parse_pack(data, "p")]
        assert parse_pack(forge_index(data, entries), "p")  # the forger itself is right
        a, b, c = entries
        end = parse_pack(data, "p").index_offset
        bad = {
            "unsorted": [b, a, c],
            "duplicate": [a, a, c],
            "duplicate id, distinct records": [a, (a[0], b[1], b[2]), c],
            "before the header": [(a[0], 0, a[2]), b, c],
            "past the index": [a, b, (c[0], end - 10, 20)],
            "huge offset": [a, b, (c[0], 2**64 - 1, 50)],
            "shorter than a record header": [a, b, (c[0], c[1], HEADER.size - 1)],
            "overlapping": [a, b, (c[0], a[1] + 1, a[2])] if a[1] < c[1] else
                           [(a[0], c[1] + 1, c[2]), b, c],
        }
        for label, forged_entries in bad.items():
            with pytest.raises(CorruptPack):
                parse_pack(forge_index(data, forged_entries), "p")
                pytest.fail(f"{label} accepted")

    @pytest.mark.parametrize("field", ["index_offset", "count", "reserved"])
    def test_forged_footer_fields(self, field: str) -> None:
        _pack, data, _ = make_pack(SMALL)
        footer = list(struct.unpack(">QII32s8s", data[-FOOTER_SIZE:]))
        position = {"index_offset": 0, "count": 1, "reserved": 2}[field]
        for value in (0, 1, 2**31 - 1, 2**32 - 1):
            footer[position] = value
            forged = data[:-FOOTER_SIZE] + struct.pack(">QII32s8s", *footer)
            if forged == data:
                continue
            with pytest.raises(CorruptPack):
                parse_pack(forged, "p")
