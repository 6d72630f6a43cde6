"""Ignore rules: ``.vstignore`` files (gitignore semantics) and cache directories.

A ``.vstignore`` may sit in any directory of a working copy. Its patterns are relative to
its own directory and follow gitignore(5), through the ``pathspec`` library's
GitIgnoreSpec: ``#`` comments, ``!`` negation, ``dir/`` for directories only, a leading or
middle ``/`` anchors the pattern to the file's directory, ``**`` spans directories. A deeper
file overrides a shallower one (the deepest file with a pattern matching the path decides).
As in git, nothing inside an ignored directory can be re-included: the walker does not
enter it, and ``enter()`` on one gives rules that ignore everything.

A directory holding a valid ``CACHEDIR.TAG`` (https://bford.info/cachedir/) is not stored
at all (``is_cache_dir``); the walker reports it, as restic and borg do with
``--exclude-caches``.

Names are bytes. They are matched as UTF-8 decoded with ``surrogateescape``, so a name that
is not UTF-8 never fails and can still be matched by a pattern written with the same bytes.

How entries are matched: pathspec compiles each pattern to a regular expression (its
GitIgnoreSpec patterns), but its ``check_file`` folds the "inside an excluded directory"
rule into every path check, with priorities that differ from git for directories: ``!*/``
does not re-include a directory an earlier ``*`` excluded, and ``d/**`` excludes ``d``
itself (pathspec issue #137). The walker applies that rule itself by not entering ignored
directories, so each entry here gets git's plain rule: the last pattern that matches the
entry itself (not an ancestor of it) decides. A compiled pattern marks the slash after a
directory it matched with the group ``ps_d``; a match is an ancestor's when that group
ends before the path does.

Cost: the walker asks ``ignored()`` for every entry. Without any ``.vstignore`` the rules
stay ``IgnoreRules.none()``, whose ``ignored()`` returns False at once; with a few patterns
a call costs a few microseconds per ``.vstignore`` above the entry.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Collection
from typing import Any

IGNORE_FILE = b".vstignore"
CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
MAX_IGNORE_FILE = 1024 * 1024
DIR_MARK = "ps_d"  # pathspec's name for the group that matches a matched directory's '/'

Warn = Callable[[str], None]


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


class IgnoreRules:
    """The rules in force for the entries of one directory. Immutable: ``enter()`` returns
    the rules of a subdirectory, sharing what it can with its parent."""

    __slots__ = ("_everything", "_layers", "_warn")

    def __init__(self, layers: tuple[tuple[int, Any], ...] = (), *, everything: bool = False,
                 warn: Warn | None = None) -> None:
        # (offset, patterns), deepest first: the compiled patterns of one .vstignore (see
        # _read), and the length of its directory's path (plus its '/') to cut from a path.
        self._layers = layers
        self._everything = everything
        self._warn = warn

    @classmethod
    def none(cls, warn: Warn | None = None) -> IgnoreRules:
        """No rules: ``ignored()`` is always False. Start a walk with it. ``warn`` hears of
        ``.vstignore`` files that cannot be read (they are then skipped)."""
        return cls(warn=warn)

    def enter(self, directory: bytes, rel_dir: bytes, names: Collection[bytes]) -> IgnoreRules:
        """The rules for the entries of ``directory`` (an absolute path; ``rel_dir`` is its
        path relative to the working copy root, b"" for the root; ``names`` its entries),
        adding ``directory/.vstignore`` if ``names`` holds one."""
        if self._everything:
            return self
        if rel_dir and self._layers and self.ignored(rel_dir, True):
            return IgnoreRules(everything=True, warn=self._warn)
        if IGNORE_FILE not in names:
            return self
        patterns = self._read(os.path.join(directory, IGNORE_FILE))
        if patterns is None:
            return self
        offset = len(_decode(rel_dir)) + 1 if rel_dir else 0
        return IgnoreRules(((offset, patterns), *self._layers), warn=self._warn)

    def ignored(self, rel_path: bytes, is_dir: bool) -> bool:
        """Whether the entry at ``rel_path`` (relative to the working copy root; an entry
        of the directory these rules were made for) is ignored."""
        if not self._layers:
            return self._everything
        path = _decode(rel_path)
        for offset, patterns in self._layers:
            relative = path[offset:]
            for regex, as_dir, excludes in patterns:  # last pattern first
                found = regex.search(relative)
                if found is not None and (as_dir is None or found.start(DIR_MARK) < 0):
                    return excludes  # matched the entry itself, not an ancestor
                if is_dir and as_dir is not None:
                    # A directory pattern ('build/', '*/') matches a directory when its
                    # mark is the slash at the very end.
                    found = as_dir.search(relative + "/")
                    if found is not None and found.start(DIR_MARK) >= 0:
                        return excludes
        return False

    def _read(self, path: bytes) -> Any:
        """The compiled patterns of one .vstignore, last first, as (regex, regex anchored at
        the end or None, excludes?) triples; None if it has no patterns or cannot be read.
        Symbolic links are not followed (as git does since 2.32 for .gitignore): a link
        could make the rules depend on a file outside the working copy."""
        from pathspec import GitIgnoreSpec

        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self._say(path, exc.strerror or str(exc))
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self._say(path, "not a regular file")
                return None
            data = b""
            while len(data) <= MAX_IGNORE_FILE:
                piece = os.read(fd, MAX_IGNORE_FILE + 1 - len(data))
                if not piece:
                    break
                data += piece
        except OSError as exc:
            self._say(path, exc.strerror or str(exc))
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_IGNORE_FILE:
            self._say(path, f"larger than {MAX_IGNORE_FILE} bytes")
            return None
        lines = _decode(data.removeprefix(b"\xef\xbb\xbf")).splitlines()
        patterns = []
        for pattern in reversed(GitIgnoreSpec.from_lines(lines).patterns):
            if pattern.include is None or pattern.regex is None:
                continue  # a comment or blank line
            regex = pattern.regex
            # Without a mark ('*', 'cache/**') every match is the entry's own.
            as_dir = re.compile(f"(?:{regex.pattern})\\Z") \
                if DIR_MARK in regex.groupindex else None
            patterns.append((regex, as_dir, bool(pattern.include)))
        return tuple(patterns) or None

    def _say(self, path: bytes, reason: str) -> None:
        if self._warn is not None:
            self._warn(f"ignoring '{os.fsdecode(path)}': {reason}")


def is_cache_dir(directory: bytes, names: Collection[bytes]) -> bool:
    """Whether ``directory`` (with entries ``names``) holds a valid CACHEDIR.TAG: a regular
    file (not a symlink) whose first 43 bytes are the signature. A tag that cannot be read
    does not count: better to store a cache than to lose data."""
    if CACHEDIR_TAG not in names:
        return False
    try:
        fd = os.open(os.path.join(directory, CACHEDIR_TAG),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.read(fd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False
    finally:
        os.close(fd)
