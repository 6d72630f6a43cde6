"""Strict reading and pinned writing of the small TOML files of vst.crypto (KEK files,
keyring files, command requests).

Written by hand rather than through a TOML library so the bytes are pinned by the golden
vectors; read with tomllib and then checked field by field: every field must be present
with its exact type and length, and no other field may appear. Any failure is a
``CorruptKey`` naming the file (``where``), never a traceback.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from typing import Any

from vst.errors import CorruptKey

MAX_FILE_SIZE = 1 << 20
_HEX = frozenset("0123456789abcdef")

Field = tuple[str, "int | str | bytes"]


def quote(text: str) -> str:
    """A TOML basic string. JSON's escapes are valid TOML; DEL is the one character TOML
    forbids raw that JSON leaves alone."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def emit_table(fields: Iterable[Field], header: str | None = None) -> str:
    """``key = value`` lines (bytes are written as lowercase hex), optionally under a
    ``[[header]]`` line."""
    lines = [f"[[{header}]]"] if header else []
    for key, value in fields:
        if isinstance(value, bytes):
            lines.append(f"{key} = \"{value.hex()}\"")
        elif isinstance(value, str):
            lines.append(f"{key} = {quote(value)}")
        else:
            lines.append(f"{key} = {int(value)}")
    return "\n".join(lines) + "\n"


def parse(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_FILE_SIZE:
        raise CorruptKey(f"{where}: too large for a key file ({len(data)} bytes)")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorruptKey(f"{where}: not a valid key file ({exc})") from None


class Fields:
    """Typed, strict access to one TOML table; ``done()`` refuses fields nobody read."""

    def __init__(self, table: object, where: str) -> None:
        if not isinstance(table, dict):
            raise CorruptKey(f"{where}: expected a table")
        self.table: dict[str, Any] = table
        self.where = where
        self._seen: set[str] = set()

    def _get(self, key: str) -> Any:
        if key not in self.table:
            raise CorruptKey(f"{self.where}: missing field '{key}'")
        self._seen.add(key)
        return self.table[key]

    def has(self, key: str) -> bool:
        return key in self.table

    def string(self, key: str, *, max_length: int = 1024) -> str:
        value = self._get(key)
        if not isinstance(value, str) or len(value) > max_length:
            raise CorruptKey(f"{self.where}: field '{key}' is not a valid string")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CorruptKey(f"{self.where}: field '{key}' is not an integer in "
                             f"[{low}, {high}]")
        return value

    def hex(self, key: str, size: int) -> bytes:
        value = self._get(key)
        if not isinstance(value, str) or len(value) != 2 * size or not _HEX.issuperset(value):
            raise CorruptKey(f"{self.where}: field '{key}' is not {size} bytes of "
                             f"lowercase hex")
        return bytes.fromhex(value)

    def fingerprint(self, key: str) -> str:
        return self.hex(key, 16).hex()

    def tables(self, key: str) -> list[Any]:
        if key not in self.table:
            self._seen.add(key)
            return []
        value = self._get(key)
        if not isinstance(value, list):
            raise CorruptKey(f"{self.where}: field '{key}' is not an array of tables")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self._seen)
        if unknown:
            raise CorruptKey(f"{self.where}: unknown field '{unknown[0]}'")
