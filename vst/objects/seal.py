"""Sealed records: how one object is stored inside a pack.

Layout (all integers big-endian):

    32  object id
    u8  object type         (ObjectType; 0 in encrypted records, whose real type travels
                             inside the ciphertext so the store cannot see it)
    u8  flags               bit 0: body is zstd-compressed
                            bit 1: body is encrypted (then the only flag set outside)
    u64 plaintext length    (0 in encrypted records: the sizes are inside too)
    ... body

An encrypted record's body is the keyring's RecordCipher seal (vst/crypto/records.py:
salt | AES-256-GCM ciphertext | tag, the object id and keyring id as associated data) of

    u8  object type  |  u8 flags (bit 0: zstd)  |  u64 plaintext length  |  body

so the type, the compression and the exact size are authenticated and hidden; what stays
visible is the object id (keyed: it reveals nothing about the content) and the record's
length.

Compression is kept only when it makes the body smaller. Reading a record re-derives the
object id from the plaintext (keyed BLAKE3 in an encrypted keyring) and compares it with the
id asked for: a record is never used unverified (invariant 2).
"""

from __future__ import annotations

import struct
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from vst.errors import CorruptObject, UnsupportedFormat, WrongKey
from vst.objects.ids import PLAIN_IDS, IdScheme
from vst.objects.oid import Oid
from vst.objects.types import KINDS, MAX_OBJECT_SIZE, ObjectType

if TYPE_CHECKING:
    from vst.crypto.records import RecordCipher

HEADER = struct.Struct(">32sBBQ")
INNER = struct.Struct(">BBQ")  # an encrypted record's plaintext header
FLAG_ZSTD = 0x01
FLAG_ENCRYPTED = 0x02
_KNOWN_FLAGS = FLAG_ZSTD
NO_KEYRING = bytes(16)


class UnexpectedSize(CorruptObject):
    """The object is larger than the caller said it would be (refused before it is
    decompressed)."""


class Sealing(NamedTuple):
    """How one keyring's objects are named and sealed: its id (16 bytes, zeros for the
    unencrypted), its ids (keyed BLAKE3 when encrypted) and its record cipher (None when
    unencrypted)."""

    keyring_id: bytes
    ids: IdScheme
    cipher: RecordCipher | None

    @property
    def encrypted(self) -> bool:
        return self.cipher is not None

    def portable(self) -> tuple[bytes, bytes | None, bytes | None]:
        """What a worker process needs to rebuild this sealing (``rebuilt``): the keyring
        id, the id key and the data key. Sent to workers over the fork server's local
        socket, never written anywhere."""
        cipher = self.cipher
        return self.keyring_id, self.ids.key, cipher.dek if cipher is not None else None

    @classmethod
    def rebuilt(cls, portable: tuple[bytes, bytes | None, bytes | None]) -> Sealing:
        keyring_id, id_key, dek = portable
        if dek is None:
            return PLAIN if id_key is None else cls(keyring_id, IdScheme(id_key), None)
        from vst.crypto.records import RecordCipher

        return cls(keyring_id, IdScheme(id_key), RecordCipher(dek, keyring_id))


PLAIN = Sealing(NO_KEYRING, PLAIN_IDS, None)

# Below this, compression is always tried. Above it, a few samples are compressed first and
# the whole object only if they shrink: incompressible data (media, archives, encrypted
# files) then costs a few microseconds instead of a full zstd pass.
_SAMPLE_THRESHOLD = 128 * 1024
_SAMPLE_SIZE = 16 * 1024
_SAMPLE_MIN_GAIN = 0.97
_SAMPLE_SURE_GAIN = 0.6  # a first sample this compressible settles it (text, logs, code)

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
    first = len(compressor.compress(view[:_SAMPLE_SIZE]))
    if first < _SAMPLE_SURE_GAIN * _SAMPLE_SIZE:  # clearly compressible: no need to look on
        return True
    packed = first + sum(len(compressor.compress(sample)) for sample in
                         (view[size // 2:size // 2 + _SAMPLE_SIZE], view[size - _SAMPLE_SIZE:]))
    return packed < _SAMPLE_MIN_GAIN * _SAMPLE_SIZE * 3


def _compress(content: bytes | memoryview, level: int) -> tuple[bytes | memoryview, int]:
    if level > 0 and content:
        compressor = _compressor(level)
        if _worth_compressing(content, compressor):
            packed = compressor.compress(content)
            if len(packed) < len(content):
                return packed, FLAG_ZSTD
    return content, 0


def seal(oid: Oid, kind: ObjectType, content: bytes | memoryview, level: int = 3,
         cipher: RecordCipher | None = None) -> bytes | bytearray:
    """Encode one object as a record, encrypted with ``cipher`` when given. ``level`` 0
    stores without compression."""
    body, flags = _compress(content, level)
    if cipher is None:
        return HEADER.pack(oid.raw, kind, flags, len(content)) + body
    # Built in one buffer: the body is encrypted straight into the record.
    return cipher.seal_record(HEADER.pack(oid.raw, 0, FLAG_ENCRYPTED, 0), oid.raw,
                              (INNER.pack(kind, flags, len(content)), body))


class RecordHeader(NamedTuple):
    oid: Oid
    kind: ObjectType | None  # None when encrypted: the type is inside
    flags: int
    plain_size: int  # 0 when encrypted

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & FLAG_ENCRYPTED)


def read_header(record: bytes | memoryview, where: str) -> RecordHeader:
    """Decode a record's header without touching its body: the framing that scrub checks
    without any key."""
    raw_oid, kind, flags, plain_size = _header_fields(record, where)
    return RecordHeader(Oid(raw_oid), kind, flags, plain_size)


def _header_fields(record: bytes | memoryview, where: str
                   ) -> tuple[bytes, ObjectType | None, int, int]:
    """``read_header``'s checks and fields, the id left raw: ``unseal`` runs once a file
    of a restore, and an Oid and a header tuple a record were a tenth of its Python."""
    if len(record) < HEADER.size:
        raise CorruptObject(f"record in {where}: truncated header")
    raw_oid, raw_kind, flags, plain_size = HEADER.unpack_from(record)
    if flags == FLAG_ENCRYPTED:
        if raw_kind != 0 or plain_size != 0:
            raise CorruptObject(f"object {Oid(raw_oid)} in {where}: an encrypted record "
                                "shows a type or size")
        return raw_oid, None, flags, 0
    return raw_oid, _checked_kind(Oid(raw_oid), raw_kind, flags, plain_size, where), flags, \
        plain_size


def _checked_kind(oid: Oid, raw_kind: int, flags: int, plain_size: int,
                  where: str) -> ObjectType:
    """The type of a record whose header (outer, or inner for an encrypted one) holds
    these fields, once they are checked."""
    if flags & ~_KNOWN_FLAGS:
        raise UnsupportedFormat(f"object {oid} in {where}: unknown record flags {flags:#x}")
    kind = KINDS.get(raw_kind)
    if kind is None:
        raise CorruptObject(f"object {oid} in {where}: unknown type {raw_kind}")
    if plain_size > MAX_OBJECT_SIZE:
        raise CorruptObject(f"object {oid} in {where}: implausible size {plain_size}")
    return kind


def unseal(record: bytes | memoryview, expected: Oid, sealing: Sealing | IdScheme,
           where: str, *, max_size: int = MAX_OBJECT_SIZE) -> tuple[ObjectType, bytes]:
    """Decode and verify one record; ``where`` names the pack and volume in errors. An
    encrypted record needs the sealing of its keyring (WrongKey without one); a plain
    one is verified with plain ids whatever the sealing. ``max_size`` refuses larger
    objects before they are decompressed."""
    if isinstance(sealing, IdScheme):
        sealing = Sealing(NO_KEYRING, sealing, None)
    raw_oid, header_kind, flags, plain_size = _header_fields(record, where)
    if raw_oid != expected.raw:
        raise CorruptObject(f"object {expected} in {where}: record holds {Oid(raw_oid)}")
    sealed = memoryview(record)[HEADER.size:]
    body: bytes | memoryview = sealed
    if header_kind is None:  # encrypted
        # The content comes back as its own bytes: bytes() below does not copy it again.
        kind, flags, plain_size, body = _open(sealed, expected, sealing, where)
        ids = sealing.ids
    elif sealing.encrypted:
        # An encrypted keyring's objects are all sealed: a plain record in its pack was put
        # there by someone else (even with the right content, which it would then reveal).
        raise CorruptObject(f"object {expected} in {where}: an unencrypted record among an "
                            "encrypted keyring's")
    else:
        kind, ids = header_kind, PLAIN_IDS
    if plain_size > max_size:
        raise UnexpectedSize(f"object {expected} in {where}: {plain_size} bytes, more than "
                             f"the {max_size} expected")
    content = _decompress(body, plain_size, expected, where) if flags & FLAG_ZSTD \
        else bytes(body)
    if len(content) != plain_size:
        raise CorruptObject(f"object {expected} in {where}: length mismatch")
    if ids.digest(kind, content) != expected.raw:
        raise CorruptObject(f"object {expected} in {where}: content does not match its id")
    return kind, content


def verify_record(record: bytes | memoryview, expected: Oid, sealing: Sealing | None,
                  where: str) -> tuple[ObjectType, int] | None:
    """Check one record as scrub and fsck do: unsealed and re-hashed against its id when
    its key is at hand ((type, size) returned); an encrypted record whose keyring is not
    open (``sealing`` None) has only its framing checked (None returned): what needs no
    key."""
    header = read_header(record, where)
    if header.oid != expected:
        raise CorruptObject(f"object {expected} in {where}: record holds {header.oid}")
    if header.encrypted and (sealing is None or not sealing.encrypted):
        from vst.crypto.records import OVERHEAD

        if len(record) < HEADER.size + OVERHEAD + INNER.size:
            raise CorruptObject(f"object {expected} in {where}: truncated record")
        return None
    kind, content = unseal(record, expected, sealing or PLAIN, where)
    return kind, len(content)


def _open(body: memoryview, oid: Oid, sealing: Sealing, where: str
          ) -> tuple[ObjectType, int, int, bytes]:
    if sealing.cipher is None:
        raise WrongKey(f"object {oid} in {where} is encrypted, and no key for its keyring "
                       "was given")
    from vst.crypto.records import AuthenticationFailed

    try:
        inner, content = sealing.cipher.open_split(oid.raw, body, INNER.size)
    except AuthenticationFailed:
        raise CorruptObject(f"object {oid} in {where}: does not authenticate (tampered, "
                            "moved, or sealed with another key)") from None
    raw_kind, flags, plain_size = INNER.unpack_from(inner)
    return _checked_kind(oid, raw_kind, flags, plain_size, where), flags, plain_size, content


def _decompress(body: bytes | memoryview, plain_size: int, oid: Oid, where: str) -> bytes:
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
