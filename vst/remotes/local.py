"""A volume in a local directory (a disk, a mounted NAS share...)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from vst.errors import NotFound, VolumeUnreachable, VstError, from_os_error
from vst.fsio import DEFAULT_FS, FileSystem
from vst.remotes.volume import Volume, VolumeInfo, check_name

_TEMP_PREFIX = ".tmp-"


class LocalVolume(Volume):
    adopts_files = True
    def __init__(self, root: str, fs: FileSystem = DEFAULT_FS) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self.fs = fs

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *check_name(name).split("/"))

    def check_reachable(self) -> None:
        if not os.path.isdir(self.root):
            raise VolumeUnreachable(f"volume '{self.root}' is not reachable: no such directory")

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        path = self._path(name)
        try:
            with open(path, "rb", buffering=0) as f:
                if offset:
                    f.seek(offset)
                return f.readall() if size is None else _read_exactly(f, size)
        except FileNotFoundError:
            self.check_reachable()
            raise NotFound(f"'{name}' not found on volume '{self.url}'") from None
        except OSError as exc:
            raise from_os_error(exc, f"cannot read '{name}' on volume '{self.url}'") from exc

    def will_load(self, name: str, offset: int, size: int) -> None:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, VstError):
            return  # load() says what is wrong, if it comes
        try:
            os.posix_fadvise(fd, offset, size, os.POSIX_FADV_WILLNEED)
        except (OSError, AttributeError):  # no fadvise here: a hint only
            pass
        finally:
            os.close(fd)

    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        path = self._path(name)
        self.check_reachable()
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            self.fs.makedirs(directory)
        return self.fs.write_file(path, data, overwrite=overwrite)

    def store_file(self, name: str, path: str, *, take: bool = False) -> bool:
        if not take:
            # A hard link would make two "copies" one inode: one bad sector, both lost.
            return super().store_file(name, path)
        target = self._path(name)
        self.check_reachable()
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            self.fs.makedirs(directory)
        try:
            return self.fs.link_file(path, target)
        except VstError as exc:
            # Another filesystem (EXDEV): copy instead of linking.
            if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EXDEV:
                raise
        return super().store_file(name, path)

    def size(self, name: str) -> int:
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError:
            self.check_reachable()
            raise NotFound(f"'{name}' not found on volume '{self.url}'") from None
        except OSError as exc:
            raise from_os_error(exc, f"cannot stat '{name}' on volume '{self.url}'") from exc

    def delete(self, name: str) -> None:
        self.fs.remove(self._path(name))

    def list(self, prefix: str = "") -> Iterator[str]:
        self.check_reachable()
        start = os.path.join(self.root, *prefix.rstrip("/").split("/")) if prefix else self.root
        base = len(self.root) + 1
        for directory, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for filename in sorted(filenames):
                if not filename.startswith(_TEMP_PREFIX):
                    yield os.path.join(directory, filename)[base:].replace(os.sep, "/")

    def info(self) -> VolumeInfo:
        self.check_reachable()
        try:
            st = os.statvfs(self.root)
        except OSError:
            return VolumeInfo(self.url, "local", None)
        return VolumeInfo(self.url, "local", st.f_bavail * st.f_frsize)


def _read_exactly(f: object, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        piece = f.read(remaining)  # type: ignore[attr-defined]
        if not piece:
            break
        chunks.append(piece)
        remaining -= len(piece)
    return b"".join(chunks)
