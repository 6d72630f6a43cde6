"""Sealed records: how one object is stored inside a pack.

Layout (all integers big-endian):

    32  object id
    u8  object type         (ObjectType; 0 is reserved for encrypted records, whose real
                             type travels inside the ciphertext so the store cannot see it)
    u8  flags               bit 0: body is zstd-compressed
                            bit 1: body is AEAD-encrypted (reserved for encrypted keyrings:
                                   nonce | ciphertext | tag, with the id and type as
                                   associated data; refused by this version)
    u64 plaintext length
    ... body

Compression is kept only when it makes the body smaller. Reading a record re-derives the
object id from the plaintext and compares it with the id asked for: a record is never used
unverified (invariant 2).
"""

from __future__ import annotations

import struct
import threading
from typing import Any, NamedTuple

from vst.errors import CorruptObject, UnsupportedFormat
from vst.objects.ids import IdScheme
from vst.objects.oid import Oid
from vst.objects.types import MAX_OBJECT_SIZE, ObjectType

HEADER = struct.Struct(">32sBBQ")
FLAG_ZSTD = 0x01
FLAG_ENCRYPTED = 0x02
_KNOWN_FLAGS = FLAG_ZSTD

# Below this, compression is always tried. Above it, a few samples are compressed first and
# the whole object only if they shrink: incompressible data (media, archives, encrypted
# files) then costs a few microseconds instead of a full zstd pass.
_SAMPLE_THRESHOLD = 128 * 1024
_SAMPLE_SIZE = 16 * 1024
_SAMPLE_MIN_GAIN = 0.97

_local = threading.local()
_zstd: Any = None


def _zstandard() -> Any:
    global _zstd
    if _zstd is None:
        import zstandard

        _zstd = zstandard
    return _zstd


def _compressor(level: int) -> Any:
    # zstandard compressor objects are not thread-safe: one per thread and level.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = _zstandard().ZstdCompressor(level=level)
    return compressor


def _decompressor() -> Any:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = _zstandard().ZstdDecompressor()
    return decompressor


def _worth_compressing(content: bytes | memoryview, compressor: Any) -> bool:
    size = len(content)
    if size < _SAMPLE_THRESHOLD:
        return True
    view = memoryview(content)
    samples = [view[:_SAMPLE_SIZE], view[size // 2:size // 2 + _SAMPLE_SIZE],
               view[size - _SAMPLE_SIZE:]]
    packed = sum(len(compressor.compress(sample)) for sample in samples)
    return packed < _SAMPLE_MIN_GAIN * _SAMPLE_SIZE * len(samples)


def seal(oid: Oid, kind: ObjectType, content: bytes | memoryview, level: int = 3) -> bytes:
    """Encode one object as a record. ``level`` 0 stores without compression."""
    flags = 0
    body: bytes | memoryview = content
    if level > 0 and content:
        compressor = _compressor(level)
        if _worth_compressing(content, compressor):
            packed = compressor.compress(content)
            if len(packed) < len(content):
                body, flags = packed, FLAG_ZSTD
    return HEADER.pack(oid.raw, kind, flags, len(content)) + body


class RecordHeader(NamedTuple):
    oid: Oid
    kind: ObjectType
    flags: int
    plain_size: int


def read_header(record: bytes | memoryview, where: str) -> RecordHeader:
    """Decode a record's header without touching its body (enough for ``cat-file -t``)."""
    if len(record) < HEADER.size:
        raise CorruptObject(f"record in {where}: truncated header")
    raw_oid, raw_kind, flags, plain_size = HEADER.unpack_from(record)
    oid = Oid(raw_oid)
    if flags & ~(_KNOWN_FLAGS | FLAG_ENCRYPTED):
        raise UnsupportedFormat(f"object {oid} in {where}: unknown record flags {flags:#x}")
    if flags & FLAG_ENCRYPTED:
        raise UnsupportedFormat(f"object {oid} in {where}: encrypted records are not "
                                "supported by this version of vst")
    try:
        kind = ObjectType(raw_kind)
    except ValueError:
        raise CorruptObject(f"object {oid} in {where}: unknown type {raw_kind}") from None
    if plain_size > MAX_OBJECT_SIZE:
        raise CorruptObject(f"object {oid} in {where}: implausible size {plain_size}")
    return RecordHeader(oid, kind, flags, plain_size)


def unseal(record: bytes | memoryview, expected: Oid, ids: IdScheme,
           where: str) -> tuple[ObjectType, bytes]:
    """Decode and verify one record; ``where`` names the pack and volume in errors."""
    header = read_header(record, where)
    if header.oid != expected:
        raise CorruptObject(f"object {expected} in {where}: record holds {header.oid}")
    body = memoryview(record)[HEADER.size:]
    if header.flags & FLAG_ZSTD:
        content = _decompress(body, header.plain_size, expected, where)
    else:
        content = bytes(body)
    if len(content) != header.plain_size:
        raise CorruptObject(f"object {expected} in {where}: length mismatch")
    if ids.compute(header.kind, content) != expected:
        raise CorruptObject(f"object {expected} in {where}: content does not match its id")
    return header.kind, content


def _decompress(body: memoryview, plain_size: int, oid: Oid, where: str) -> bytes:
    zstd = _zstandard()
    # A frame that states its own size makes zstandard allocate that much whatever
    # max_output_size says: refuse any stated size but the one the header promised.
    try:
        stated = zstd.frame_content_size(body[:18])
    except zstd.ZstdError:
        stated = -1
    if stated not in (-1, plain_size):
        raise CorruptObject(f"object {oid} in {where}: compressed frame claims {stated} "
                            f"bytes, the record {plain_size}")
    try:
        # max_output_size bounds memory when the frame does not state its size; a frame
        # that states a different size than the header is rejected below by length.
        return bytes(_decompressor().decompress(body, max_output_size=plain_size))
    except zstd.ZstdError as exc:
        raise CorruptObject(f"object {oid} in {where}: cannot decompress ({exc})") from None
