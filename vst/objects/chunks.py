"""The chunks object: the ordered list of chunk ids and sizes that make up a large file.

Encoding (version 1), canonical and fixed-width:

    u8 version = 1
    N times: id (32 bytes) | u32 big-endian chunk size      N >= 2, every size > 0

A file of one chunk is stored as that chunk's blob, never as a chunks object of one entry,
so every file has exactly one id.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from vst.errors import CorruptObject
from vst.objects.oid import Oid

VERSION = 1
_ENTRY = struct.Struct(">32sI")


@dataclass(frozen=True, slots=True)
class ChunkRef:
    oid: Oid
    size: int


@dataclass(frozen=True, slots=True)
class ChunkList:
    chunks: tuple[ChunkRef, ...]

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)

    def encode(self) -> bytes:
        if len(self.chunks) < 2:
            raise ValueError("a chunks object holds at least two chunks")
        out = bytearray([VERSION])
        for chunk in self.chunks:
            if not 0 < chunk.size < 2**32:
                raise ValueError(f"chunk size out of range: {chunk.size}")
            out += _ENTRY.pack(chunk.oid.raw, chunk.size)
        return bytes(out)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[Oid, int]]) -> ChunkList:
        return cls(tuple(ChunkRef(oid, size) for oid, size in pairs))

    @classmethod
    def decode(cls, data: bytes, oid: Oid | None = None) -> ChunkList:
        name = f"chunks object {oid}" if oid else "chunks object"
        if not data or data[0] != VERSION:
            raise CorruptObject(f"{name}: unknown version")
        body = memoryview(data)[1:]
        if len(body) % _ENTRY.size:
            raise CorruptObject(f"{name}: truncated entry")
        count = len(body) // _ENTRY.size
        if count < 2:
            raise CorruptObject(f"{name}: fewer than two chunks")
        refs = []
        for raw, size in _ENTRY.iter_unpack(body):
            if size == 0:
                raise CorruptObject(f"{name}: empty chunk")
            refs.append(ChunkRef(Oid(raw), size))
        return cls(tuple(refs))

