"""Computing object ids: BLAKE3 over the object header and content, keyed in encrypted keyrings."""

from __future__ import annotations

import blake3

from vst.objects.oid import Oid
from vst.objects.types import ObjectType, object_header


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
        hasher = blake3.blake3(key=self.key) if self.key is not None else blake3.blake3()
        hasher.update(object_header(kind, len(content)))
        hasher.update(content)
        return hasher.digest()


PLAIN_IDS = IdScheme()
