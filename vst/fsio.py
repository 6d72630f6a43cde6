"""The one place where vst makes bytes durable on a local filesystem.

Every durable write in vst (packs on a local volume, refs, reflogs, configs, meta mirrors)
goes through a ``FileSystem`` so tests can record, fail or cut any single step. The
primitive steps (``_open``, ``_write``, ``_fsync``, ``_rename``, ``_link``, ``_unlink``,
``_mkdir``) are methods for exactly that reason: a test subclass overrides them.

The protocol (see ../docs/design.md, "crash consistency"):

    temp file in the same directory -> write -> fsync(file) -> rename (or link, when the
    target must not be overwritten) -> fsync(directory)

and every directory created on the way is made durable by fsyncing its parent. An fsync
that fails is final: the error propagates and the temp file is removed; we never retry the
fsync on the same descriptor, because a retried fsync can report success after the kernel
dropped the dirty pages (the "fsyncgate" finding).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from vst.errors import Locked, from_os_error


class FileSystem:
    """Durable file operations. Paths are ``str``; errors come out as ``VstError``."""

    # -- primitives (override in tests) ---------------------------------------------------

    def _open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def _write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)

    def _close(self, fd: int) -> None:
        os.close(fd)

    def _rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def _link(self, src: str, dst: str) -> None:
        os.link(src, dst)

    def _unlink(self, path: str) -> None:
        os.unlink(path)

    def _mkdir(self, path: str, mode: int = 0o755) -> None:
        os.mkdir(path, mode)

    # -- composed operations --------------------------------------------------------------

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` (a file or a whole directory) to ``dst`` durably: the parent of
        ``dst`` is fsynced after. OSError as rename(2) raises it."""
        self._rename(src, dst)
        self.fsync_dir(os.path.dirname(dst) or ".")

    def fsync_dir(self, path: str) -> None:
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(fd)
        finally:
            self._close(fd)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and missing parents, each made durable in its parent."""
        try:
            self._makedirs(os.path.abspath(path))
        except OSError as exc:
            raise from_os_error(exc, f"cannot create directory '{path}'") from exc

    def _makedirs(self, path: str) -> None:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent != path:
            self._makedirs(parent)
        try:
            self._mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            return
        self.fsync_dir(parent)

    def write_file(self, path: str, data: bytes | bytearray | memoryview, *, overwrite: bool = True,
                   mode: int = 0o644) -> bool:
        """Atomically and durably put ``data`` at ``path``: ``write_pieces`` of one piece."""
        return self.write_pieces(path, (data,), overwrite=overwrite, mode=mode)

    def write_pieces(self, path: str, pieces: Iterable[bytes | bytearray | memoryview], *,
                     overwrite: bool = True, mode: int = 0o644) -> bool:
        """Atomically and durably put the concatenation of ``pieces`` at ``path``, each
        piece written as it comes: a large file made as it is written is never whole in
        memory. An exception from ``pieces`` leaves ``path`` as it was.

        With ``overwrite=False`` an existing file is left alone and False is returned (used
        for content-addressed files, whose existing copy has the same name and so the same
        content, or is checked by scrub). Returns True when this call wrote the file.
        """
        directory = os.path.dirname(path) or "."
        token = os.urandom(8).hex()
        temp = os.path.join(directory, f".tmp-{token}-{os.path.basename(path)}")
        # The previous version stays linked under a second name until the new one is
        # durable: if anything fails once the new content is visible (the directory fsync
        # above all), the write is undone, so a failed write never leaves a ref moved.
        backup = os.path.join(directory, f".tmp-{token}-old-{os.path.basename(path)}")
        placed = kept_backup = False
        try:
            self._write_temp(temp, pieces, mode)
            try:
                if overwrite:
                    try:
                        self._link(path, backup)
                        kept_backup = True
                    except FileNotFoundError:
                        pass
                    self._rename(temp, path)
                    placed = True
                else:
                    # link() fails with EEXIST instead of replacing: no-overwrite, atomically.
                    try:
                        self._link(temp, path)
                    except FileExistsError:
                        self._unlink(temp)
                        return False
                    placed = True
                    self._unlink(temp)
                self.fsync_dir(directory)
            except BaseException:
                if placed:
                    self._undo(path, backup if kept_backup else None)
                    kept_backup = False
                raise
            finally:
                _remove_quietly(temp)
                if kept_backup:
                    _remove_quietly(backup)
        except OSError as exc:
            raise from_os_error(exc, f"cannot write '{path}'") from exc
        return True

    def _undo(self, path: str, backup: str | None) -> None:
        """Put back what was at ``path`` before a write whose directory fsync failed."""
        try:
            if backup is not None:
                os.rename(backup, path)
            else:
                os.unlink(path)
        except OSError:
            pass

    def _write_temp(self, temp: str, pieces: Iterable[bytes | bytearray | memoryview],
                    mode: int) -> None:
        fd = self._open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            try:
                for piece in pieces:
                    data = memoryview(piece)
                    while data:
                        written = self._write(fd, data)
                        data = data[written:]
                    del data  # no view left on a piece once it is written
                self._fsync(fd)
            finally:
                self._close(fd)
        except BaseException:
            _remove_quietly(temp)
            raise

    # -- spool files: written piece by piece, then linked into place --------------------------

    def open_spool(self, directory: str) -> tuple[int, str]:
        """A new temporary file in ``directory`` to fill with ``write_all``; returns (fd, path).
        Temporary names start with '.tmp-', which volume listings skip."""
        path = os.path.join(directory, f".tmp-{os.urandom(8).hex()}-spool")
        try:
            return self._open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), path
        except OSError as exc:
            raise from_os_error(exc, f"cannot create '{path}'") from exc

    def write_all(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._write(fd, view):]
        except OSError as exc:
            raise from_os_error(exc, "cannot write a temporary file") from exc

    def sync_and_close(self, fd: int) -> None:
        """fsync then close; an fsync failure is final (never retried) and closes too."""
        try:
            try:
                self._fsync(fd)
            finally:
                self._close(fd)
        except OSError as exc:
            raise from_os_error(exc, "cannot sync a temporary file") from exc

    def link_file(self, source: str, target: str) -> bool:
        """Durably give the (already synced) file ``source`` the name ``target``, never
        replacing an existing ``target`` (False then). Undone if the directory fsync fails."""
        try:
            try:
                self._link(source, target)
            except FileExistsError:
                return False
            try:
                self.fsync_dir(os.path.dirname(target) or ".")
            except BaseException:
                _remove_quietly(target)
                raise
        except OSError as exc:
            raise from_os_error(exc, f"cannot write '{target}'") from exc
        return True

    def append(self, path: str, data: bytes) -> None:
        """Append ``data`` to ``path`` (created if missing) and make it durable.

        Appends are for logs whose readers tolerate a torn last line (reflogs): a crash
        can leave a partial record at the end, never damage earlier ones.
        """
        try:
            created = not os.path.exists(path)
            fd = self._open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[self._write(fd, view):]
                self._fsync(fd)
            finally:
                self._close(fd)
            if created:
                self.fsync_dir(os.path.dirname(path) or ".")
        except OSError as exc:
            raise from_os_error(exc, f"cannot append to '{path}'") from exc

    def remove(self, path: str) -> None:
        """Durably remove ``path``; a missing file is not an error."""
        try:
            try:
                self._unlink(path)
            except FileNotFoundError:
                return
            self.fsync_dir(os.path.dirname(path) or ".")
        except OSError as exc:
            raise from_os_error(exc, f"cannot remove '{path}'") from exc


def flock_within(fd: int, timeout: float) -> bool:
    """Take an exclusive flock() on ``fd``, waiting up to ``timeout`` seconds (0: not at
    all); False when another process still holds it then. The one waiting loop of every
    lock vst takes (collections, the store's config, config files, working copies)."""
    import fcntl
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise from_os_error(exc, "cannot take a lock") from None
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


@contextmanager
def lock_file(path: str, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock() on the file ``path`` (made if missing) for the ``with``
    block, waiting up to ``timeout`` seconds; Locked ("<what> is locked by another
    process") if it stays held. flock locks vanish with their process: a crash never
    leaves a stale lock behind."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not flock_within(fd, timeout):
            raise Locked(f"{what} is locked by another process")
        yield
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_file(path: str) -> bytes:
    """Read a whole local file, translating OS errors."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise from_os_error(exc, f"cannot read '{path}'") from exc


DEFAULT_FS = FileSystem()
