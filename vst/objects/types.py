"""Object types and the header every object id is computed over."""

from __future__ import annotations

import enum


class ObjectType(enum.IntEnum):
    """The four object types. The numbers are part of the sealed-record format."""

    BLOB = 1
    CHUNKS = 2
    TREE = 3
    COMMIT = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> ObjectType:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown object type '{label}'") from None


_LABELS = {kind: kind.label.encode() for kind in ObjectType}
KINDS = {int(kind): kind for kind in ObjectType}  # the types by number, without the enum call


def object_header(kind: ObjectType, length: int) -> bytes:
    """The bytes hashed before the content: ``b"<type> <length>\\0"``, as in git."""
    return b"%s %d\0" % (_LABELS[kind], length)


# Upper bound on one object's plaintext. Chunks are at most a few MiB; the bound exists for
# trees and chunk lists, and so that a hostile record cannot make a reader allocate without
# limit (a zstd bomb claims a huge plaintext length).
MAX_OBJECT_SIZE = 256 * 1024 * 1024
