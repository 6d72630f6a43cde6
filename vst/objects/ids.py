"""Computing object ids: BLAKE3 over the object header and content, keyed in encrypted keyrings."""

from __future__ import annotations

import blake3

from vst.objects.oid import Oid
from vst.objects.types import ObjectType, object_header

_JOIN_UP_TO = 64 * 1024  # content hashed in one call with its header, copied to join them


class IdScheme:
    """How a store names objects. ``key`` is the keyring's id key; None for plain BLAKE3.

    Keyed ids (BLAKE3 keyed mode) are what let an encrypted keyring hide whether it holds a
    known file: without the id key nobody can compute the id of a given plaintext.
    """

    __slots__ = ("key",)

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) != 32:
            raise ValueError("an id key is 32 bytes")
        self.key = key

    def compute(self, kind: ObjectType, content: bytes | memoryview) -> Oid:
        return Oid(self.digest(kind, content))

    def digest(self, kind: ObjectType, content: bytes | memoryview) -> bytes:
        """The raw id of an object: what ``compute`` wraps, for a reader that only compares
        it with the id it asked for."""
        header = object_header(kind, len(content))
        if len(content) <= _JOIN_UP_TO:
            # One call over header and content joined: fed in two update() calls, BLAKE3
            # hashed the content's 1 KiB chunks one at a time rather than side by side
            # (6.2 against 4.1 µs for 10 KiB). The copy costs more than that gain from
            # about 128 KiB.
            joined = b"".join((header, content))
            if self.key is not None:
                return blake3.blake3(joined, key=self.key).digest()
            return blake3.blake3(joined).digest()
        hasher = blake3.blake3(key=self.key) if self.key is not None else blake3.blake3()
        hasher.update(header)
        hasher.update(content)
        return hasher.digest()


PLAIN_IDS = IdScheme()
