"""Packs: immutable files of sealed records followed by an index that needs no key.

Layout (integers big-endian):

    header   8 bytes   b"VSTPACK" + u8 version (1, or 2 for an encrypted keyring's pack)
    records            sealed records (see seal.py), back to back
    index              count entries sorted by id, ids unique:
                           32 id | u64 offset | u32 length        (44 bytes)
    footer  56 bytes   u64 index offset | u32 count | u32 reserved (0)
                       | 32 BLAKE3 of the index bytes | b"VSTPEND" + u8 version (1)
    footer  72 bytes   (version 2) the same with the 16-byte keyring id before the end
                       magic: which keyring's key opens the records (ids only, no secret)

A pack holds the objects of one keyring: the unencrypted ones in version 1 packs, each
encrypted keyring's in version 2 packs naming it, so that a reader (or ``index rebuild``)
knows from two reads of the tail which key the records need.

A pack is named by the BLAKE3 of all of its bytes, so anyone holding the pack can check it
without a key (invariant 3). The index hash in the footer lets a reader that fetched only
the tail (two range reads) trust the index before the whole pack is verified.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import blake3

from vst.errors import CorruptPack, UnsupportedFormat
from vst.objects.oid import Oid
from vst.objects.seal import HEADER as RECORD_HEADER

VERSION = 1
MAGIC = b"VSTPACK" + bytes([VERSION])
END_MAGIC = b"VSTPEND" + bytes([VERSION])
KEYED_VERSION = 2
KEYED_MAGIC = b"VSTPACK" + bytes([KEYED_VERSION])
KEYED_END_MAGIC = b"VSTPEND" + bytes([KEYED_VERSION])
_ENTRY = struct.Struct(">32sQI")
_FOOTER = struct.Struct(">QII32s8s")
_KEYED_FOOTER = struct.Struct(">QII32s16s8s")
FOOTER_SIZE = _FOOTER.size
KEYED_FOOTER_SIZE = _KEYED_FOOTER.size
MIN_PACK_SIZE = len(MAGIC) + FOOTER_SIZE
NO_KEYRING = bytes(16)


def pack_id(data: bytes | bytearray | memoryview) -> Oid:
    return Oid(blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest())


class PackEntry(NamedTuple):
    oid: Oid
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class PackIndex:
    entries: tuple[PackEntry, ...]
    index_offset: int
    keyring_id: bytes = NO_KEYRING  # whose key opens the records (zeros: unencrypted)

    def __iter__(self) -> Iterator[PackEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class PackStream:
    """Writes a pack through ``sink`` as records arrive, hashing on the way: a pack never
    has to sit whole in memory. ``finish`` emits the index and footer and returns the
    pack's name (the BLAKE3 of everything emitted) and index."""

    # Small records are gathered and passed on (hashed, written) a MiB at a time: a tree
    # of small files makes records of a few KiB, and a hash update and a write() each cost
    # more in calls (and GIL hand-offs) than in bytes.
    GATHER = 1024 * 1024

    def __init__(self, sink: Callable[[bytes | bytearray | memoryview], object],
                 keyring_id: bytes = NO_KEYRING) -> None:
        if len(keyring_id) != len(NO_KEYRING):
            raise ValueError("a keyring id is 16 bytes")
        self._sink = sink
        self._hasher = blake3.blake3()
        self._entries: dict[Oid, PackEntry] = {}
        self._gathered = bytearray()
        self.size = 0
        self.keyring_id = keyring_id
        self._emit(MAGIC if keyring_id == NO_KEYRING else KEYED_MAGIC)

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if len(data) >= self.GATHER:
            self._pass_on()
            self._hasher.update(data)
            self._sink(data)
            return
        self._gathered += data
        if len(self._gathered) >= self.GATHER:
            self._pass_on()

    def _pass_on(self) -> None:
        if self._gathered:
            self._hasher.update(self._gathered)
            self._sink(self._gathered)
            self._gathered = bytearray()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, oid: Oid) -> bool:
        return oid in self._entries

    def add(self, oid: Oid, record: bytes | bytearray | memoryview) -> None:
        if oid in self._entries:
            return
        self._entries[oid] = PackEntry(oid, self.size, len(record))
        self._emit(record)

    def finish(self) -> tuple[Oid, PackIndex]:
        entries = tuple(sorted(self._entries.values(), key=lambda e: e.oid.raw))
        index_offset = self.size
        index = b"".join(_ENTRY.pack(e.oid.raw, e.offset, e.length) for e in entries)
        self._emit(index)
        index_hash = blake3.blake3(index).digest()
        if self.keyring_id == NO_KEYRING:
            self._emit(_FOOTER.pack(index_offset, len(entries), 0, index_hash, END_MAGIC))
        else:
            self._emit(_KEYED_FOOTER.pack(index_offset, len(entries), 0, index_hash,
                                          self.keyring_id, KEYED_END_MAGIC))
        self._pass_on()
        return Oid(self._hasher.digest()), PackIndex(entries, index_offset, self.keyring_id)


class PackWriter(PackStream):
    """A pack built in memory; ``finish`` returns its name, bytes and index."""

    def __init__(self, keyring_id: bytes = NO_KEYRING) -> None:
        self._buffer = bytearray()
        super().__init__(self._buffer.extend, keyring_id)

    def record(self, oid: Oid) -> memoryview | None:
        """A record added but not yet finished, read back from the buffer."""
        entry = self._entries.get(oid)
        if entry is None:
            return None
        self._pass_on()
        return memoryview(self._buffer)[entry.offset:entry.offset + entry.length]

    def finish(self) -> tuple[Oid, bytearray, PackIndex]:  # type: ignore[override]
        pack, index = super().finish()
        return pack, self._buffer, index


def read_index(load: Callable[[int, int], bytes], pack_size: int, name: str) -> PackIndex:
    """Read a pack's index through ``load(offset, size)`` with two reads from its tail.

    Everything is bounds-checked: a hostile footer cannot make us read outside the pack or
    allocate more than the pack's size.
    """
    if pack_size < MIN_PACK_SIZE:
        raise CorruptPack(f"pack {name}: too small ({pack_size} bytes)")
    # The last 8 bytes say the version, and so the footer's size: read what the larger
    # footer needs (the smaller is its tail).
    tail_size = min(pack_size, KEYED_FOOTER_SIZE)
    tail = load(pack_size - tail_size, tail_size)
    if len(tail) != tail_size:
        raise CorruptPack(f"pack {name}: short read of the footer")
    end_magic = tail[-8:]
    if end_magic[:7] != END_MAGIC[:7]:
        raise CorruptPack(f"pack {name}: not a vst pack (bad footer magic)")
    if end_magic == END_MAGIC:
        index_offset, count, reserved, index_hash, _ = _FOOTER.unpack(tail[-FOOTER_SIZE:])
        keyring_id, footer_size, header = NO_KEYRING, FOOTER_SIZE, MAGIC
    elif end_magic == KEYED_END_MAGIC and tail_size == KEYED_FOOTER_SIZE:
        index_offset, count, reserved, index_hash, keyring_id, _ = _KEYED_FOOTER.unpack(tail)
        footer_size, header = KEYED_FOOTER_SIZE, KEYED_MAGIC
        if keyring_id == NO_KEYRING:
            raise CorruptPack(f"pack {name}: a keyed pack names no keyring")
    else:
        raise UnsupportedFormat(f"pack {name}: unsupported pack version {end_magic[7]}")
    index_size = count * _ENTRY.size
    if reserved != 0 or index_offset < len(header) \
            or index_offset + index_size + footer_size != pack_size:
        raise CorruptPack(f"pack {name}: footer does not fit the pack")
    index = load(index_offset, index_size) if index_size else b""
    if len(index) != index_size or blake3.blake3(index).digest() != index_hash:
        raise CorruptPack(f"pack {name}: index checksum mismatch")
    return PackIndex(_parse_entries(index, index_offset, name), index_offset, keyring_id)


def _parse_entries(index: bytes, index_offset: int, name: str) -> tuple[PackEntry, ...]:
    entries = [PackEntry(Oid(raw), offset, length)
               for raw, offset, length in _ENTRY.iter_unpack(index)]
    for before, after in itertools.pairwise(entries):
        if before.oid.raw >= after.oid.raw:
            raise CorruptPack(f"pack {name}: index not sorted or not unique")
    end = len(MAGIC)
    for entry in sorted(entries, key=lambda e: e.offset):
        if entry.offset < end or entry.length < RECORD_HEADER.size \
                or entry.offset + entry.length > index_offset:
            raise CorruptPack(f"pack {name}: index entry for {entry.oid} out of bounds")
        end = entry.offset + entry.length
    return tuple(entries)


def parse_pack(data: bytes | memoryview, name: str) -> PackIndex:
    """Check a whole pack in memory: header, footer, index (not the records' contents)."""
    if len(data) < MIN_PACK_SIZE:
        raise CorruptPack(f"pack {name}: too small ({len(data)} bytes)")
    if data[:7] != MAGIC[:7]:
        raise CorruptPack(f"pack {name}: not a vst pack (bad magic)")
    if data[:8] not in (MAGIC, KEYED_MAGIC):
        raise UnsupportedFormat(f"pack {name}: unsupported pack version {data[7]}")
    view = memoryview(data)
    index = read_index(lambda offset, size: bytes(view[offset:offset + size]), len(data), name)
    if data[:8] != (MAGIC if index.keyring_id == NO_KEYRING else KEYED_MAGIC):
        raise CorruptPack(f"pack {name}: header and footer disagree on the version")
    return index
