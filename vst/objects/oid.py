"""The object id value type."""

from __future__ import annotations

from vst.errors import UsageError

OID_SIZE = 32
HEX_SIZE = 2 * OID_SIZE
MIN_PREFIX = 4
_HEX_DIGITS = frozenset("0123456789abcdef")


class Oid:
    """A 32-byte object id (BLAKE3, plain or keyed). Hashable, ordered by its bytes."""

    __slots__ = ("raw",)
    raw: bytes

    def __init__(self, raw: bytes) -> None:
        if len(raw) != OID_SIZE:
            raise ValueError(f"an object id is {OID_SIZE} bytes, not {len(raw)}")
        object.__setattr__(self, "raw", bytes(raw))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Oid is immutable")

    @classmethod
    def from_hex(cls, text: str) -> Oid:
        if not is_full_hex(text):
            raise UsageError(f"not a valid object id: '{text}'")
        return cls(bytes.fromhex(text))

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def short(self, length: int = 12) -> str:
        return self.raw.hex()[:length]

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"Oid({self.raw.hex()[:16]}...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Oid) and other.raw == self.raw

    def __lt__(self, other: Oid) -> bool:
        return self.raw < other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __reduce__(self) -> tuple[type[Oid], tuple[bytes]]:
        return (Oid, (self.raw,))


ZERO_OID = Oid(bytes(OID_SIZE))
_new_object = object.__new__
_set_raw = Oid.__dict__["raw"].__set__


def trusted_oid(raw: bytes) -> Oid:
    """An Oid from exactly OID_SIZE ``bytes`` the caller has checked, a fixed-width field of
    a record it parsed: half the cost of ``Oid(raw)``, for decoders of many ids."""
    oid = _new_object(Oid)
    _set_raw(oid, raw)
    return oid


def is_hex(text: str) -> bool:
    return bool(text) and set(text) <= _HEX_DIGITS


def is_full_hex(text: str) -> bool:
    return len(text) == HEX_SIZE and is_hex(text)


def is_prefix(text: str) -> bool:
    """True for text a user may type as an abbreviated id (4 to 64 lower-case hex digits)."""
    return MIN_PREFIX <= len(text) <= HEX_SIZE and is_hex(text)
