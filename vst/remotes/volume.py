"""The volume interface: a flat namespace of immutable, atomically written files.

Names are relative, '/'-separated, made of ``[A-Za-z0-9._-]`` segments (never '.' or
'..'). Every backend (local directory, S3, a wrapper adding retries or faults) implements
exactly these methods, and the contract suite in tests/ runs against each.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from typing import NamedTuple

from vst.errors import NotFound, UsageError

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")


def check_name(name: str) -> str:
    parts = name.split("/")
    if not all(_SEGMENT.match(part) for part in parts):
        raise UsageError(f"invalid volume object name '{name}'")
    return name


class VolumeInfo(NamedTuple):
    url: str
    kind: str
    free_bytes: int | None


class Volume(abc.ABC):
    url: str

    # Whether store_file(take=True) may adopt the caller's file (a hard link) rather than
    # make a copy of it.
    adopts_files = False
    # Reached over a network (slower and dearer to read than a local disk).
    remote = False

    @abc.abstractmethod
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        """Return ``size`` bytes of ``name`` from ``offset`` (all of it when None).

        Raises NotFound when the name does not exist. May return fewer bytes only when the
        object is shorter than asked; callers check lengths.
        """

    def will_load(self, name: str, offset: int, size: int) -> None:
        """A hint that ``load(name, offset, size)`` comes soon, so a volume that can start
        reading ahead does (a local disk); the others ignore it. Never raises."""
        return None

    @abc.abstractmethod
    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        """Make ``data`` durable under ``name``. Never is a partial object visible under
        ``name``, even after a crash. With ``overwrite=False`` an existing object is kept
        and False returned. Returns True when written."""

    def store_file(self, name: str, path: str, *, take: bool = False) -> bool:
        """Make the content of the local, already synced file ``path`` durable under
        ``name``, never overwriting (False when ``name`` exists). With ``take`` the caller
        gives the file up, so a backend may adopt it (a hard link) instead of copying; without
        it the volume must end up with its own copy. Backends that can do better than reading
        the file into memory (a link, a multipart upload) override this."""
        from vst.fsio import read_file

        return self.store(name, read_file(path), overwrite=False)

    @abc.abstractmethod
    def size(self, name: str) -> int:
        """The size in bytes of ``name``; NotFound when missing."""

    def exists(self, name: str) -> bool:
        try:
            self.size(name)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Durably remove ``name``; a missing name is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Names that start with ``prefix`` (a directory-like prefix ending in '/', or ''),
        in no particular order; temporary files of unfinished writes are never listed."""

    @abc.abstractmethod
    def info(self) -> VolumeInfo:
        """What the volume is and how much room it has left (None when unknown)."""
