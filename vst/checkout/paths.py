"""The checkout's file-system side: paths checked component by component, directories
reached one component at a time from a descriptor (never following a symlink), and what is
in the way removed or renamed over, all through directory descriptors."""

from __future__ import annotations

import errno
import os
import stat

from vst.errors import Refused
from vst.objects.tree import name_problem

MAX_CHAIN = 64  # directory descriptors a walker keeps open (a tree may nest 1,000 deep)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RETRIES = 8  # attempts against a directory entry that keeps changing under us


def _shown(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _join(base: bytes, name: bytes) -> bytes:
    return base + b"/" + name if base else name


def _parts(path: bytes) -> list[bytes]:
    return path.split(b"/") if path else []


def split_path(path: bytes) -> list[bytes]:
    """The components of a relative ``b"/"``-separated path; Refused if any is unsafe."""
    if path.startswith(b"/"):
        raise Refused(f"refusing absolute path '{_shown(path)}'")
    parts = path.split(b"/")
    for part in parts:
        problem = name_problem(part)
        if problem:
            raise Refused(f"refusing path '{_shown(path)}': {problem}")
    return parts


class _Missing(Exception):
    """A directory on the way does not exist (and was not to be made)."""


# -- reaching directories, removing what is in the way -------------------------------------


class _Walker:
    """Reaches directories below the root one component at a time, never following a
    symlink. The chain of the last directory reached (and its ancestors) stays open, so a
    tree walked in order opens each directory once; only the deepest MAX_CHAIN stay open."""

    def __init__(self, root_fd: int, made: set[bytes] | None = None) -> None:
        self.root_fd = root_fd
        self.names: list[bytes] = []
        self.fds: list[int | None] = []
        self.made = made  # where to note the path of each directory this walker makes

    def reach(self, parts: list[bytes], *, create: bool, replace_last: bool = False) -> int:
        """A descriptor for directory ``parts`` (borrowed: valid until the next call).
        ``replace_last``: a file or symlink there is removed to make way for a directory."""
        keep = 0
        limit = min(len(parts), len(self.names))
        while keep < limit and self.names[keep] == parts[keep]:
            keep += 1
        self._truncate(keep)
        start = keep
        while start and self.fds[start - 1] is None:
            start -= 1
        fd = self.fds[start - 1] if start else self.root_fd
        assert fd is not None
        for i in range(start, len(parts)):
            fd = self._open(fd, parts, i, create, replace_last and i == len(parts) - 1)
            if i < keep:
                self.fds[i] = fd
            else:
                self.names.append(parts[i])
                self.fds.append(fd)
        for i in range(len(self.fds) - MAX_CHAIN):
            old = self.fds[i]
            if old is not None:
                os.close(old)
                self.fds[i] = None
        return fd

    def _open(self, parent: int, parts: list[bytes], i: int, create: bool,
              replace: bool) -> int:
        name = parts[i]
        for _ in range(_RETRIES):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise _Missing from None
                try:
                    os.mkdir(name, 0o777, dir_fd=parent)  # the umask applies, as for mkdir -p
                except FileExistsError:
                    continue
                if self.made is not None:
                    self.made.add(b"/".join(parts[:i + 1]))
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                if not replace:
                    raise _refuse(parent, parts, i) from None
                _remove_entry(parent, name)
                continue
            if replace:
                _make_writable(fd)
            return fd
        raise Refused(f"'{_shown(b'/'.join(parts[:i + 1]))}' keeps changing; giving up")

    def _truncate(self, keep: int) -> None:
        for fd in self.fds[keep:]:
            if fd is not None:
                os.close(fd)
        del self.names[keep:], self.fds[keep:]

    def forget(self, parts: list[bytes]) -> None:
        """Drop ``parts`` and below from the chain: it is about to be removed."""
        if self.names[:len(parts)] == parts:
            self._truncate(len(parts) - 1)

    def reset(self) -> None:
        self._truncate(0)


def _refuse(parent: int, parts: list[bytes], i: int) -> Refused:
    try:
        link = stat.S_ISLNK(os.stat(parts[i], dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        link = False
    return Refused(f"refusing to write below '{_shown(b'/'.join(parts[:i + 1]))}': it is "
                   f"{'a symbolic link' if link else 'not a directory'}",
                   hint="move it out of the way first")


def _make_writable(fd: int) -> None:
    """A restored read-only directory is restored into again: its final mode is set in
    finish(), so it may be opened up meanwhile (root needs no such thing)."""
    euid = os.geteuid()
    if euid:
        st = os.fstat(fd)
        if st.st_uid == euid and st.st_mode & 0o700 != 0o700:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)


def _remove_entry(parent: int, name: bytes | str) -> None:
    """Remove whatever is at ``name``: a directory recursively, never following a symlink."""
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):
        _remove_tree(parent, name)


def _remove_tree(parent: int, name: bytes | str) -> None:
    # An explicit stack of open directories, not recursion: a tree may nest very deep.
    try:
        top = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        os.unlink(name, dir_fd=parent)  # it became a file or symlink meanwhile
        return
    # (parent, name, descriptor, subdirectories left to remove, times listed)
    stack: list[tuple[int, bytes | str, int, list[str], list[int]]] = [
        (parent, name, top, [], [0])]
    try:
        while stack:
            up, dir_name, fd, subdirs, listed = stack[-1]
            if not subdirs:
                if listed[0] == _RETRIES:
                    raise Refused("a directory to remove keeps filling up; giving up")
                listed[0] += 1
                subdirs.extend(_remove_files(fd))
                if not subdirs:
                    stack.pop()
                    os.close(fd)
                    try:
                        os.rmdir(dir_name, dir_fd=up)
                    except FileNotFoundError:
                        pass
                    continue
            sub = subdirs.pop()
            try:
                stack.append((fd, sub, os.open(sub, _DIR_FLAGS, dir_fd=fd), [], [0]))
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                os.unlink(sub, dir_fd=fd)
    finally:
        for _, _, fd, _, _ in reversed(stack):
            os.close(fd)


def _remove_files(fd: int) -> list[str]:
    """Unlink everything in directory ``fd`` but its subdirectories; returns those."""
    subdirs = []
    with os.scandir(fd) as it:
        for child in it:
            if child.is_dir(follow_symlinks=False):
                subdirs.append(child.name)
                continue
            try:
                os.unlink(child.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                subdirs.append(child.name)
    return subdirs


def _rename_over(dir_fd: int, temp: bytes, name: bytes) -> None:
    """Rename ``temp`` over ``name``; a directory in the way is removed first."""
    for _ in range(_RETRIES):
        try:
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) \
                    or not _is_dir(dir_fd, name):
                raise
            _remove_tree(dir_fd, name)
    raise Refused(f"'{_shown(name)}' keeps changing; giving up")


def _is_dir(dir_fd: int, name: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_quietly(dir_fd: int, name: bytes) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
