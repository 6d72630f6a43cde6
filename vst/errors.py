"""The exception hierarchy. Each class carries the exit code the CLI maps it to.

The table of codes is published in docs/scripting.md; codes are only ever added.
Library code raises these; only ``vst.cli`` turns them into messages and exit codes.
"""

from __future__ import annotations

import errno as _errno


class VstError(Exception):
    """Root of every error vst reports to the user. ``hint`` is an optional second line."""

    exit_code = 4

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(VstError):
    """The command line asked for something malformed (bad id syntax, bad option value)."""

    exit_code = 2


class PartialSuccess(VstError):
    exit_code = 3


class Refused(VstError):
    """Refused because it would lose data or write outside its target: a hostile path or a
    symlink in the way of a restore, a drop with uncommitted changes or unstored objects."""

    exit_code = 5


class NotAWorkingCopy(VstError):
    exit_code = 6


class CorruptKey(VstError):
    """A key file or keyring envelope that does not parse or is structurally wrong (bad
    field, wrong length, KDF parameters below the minimum). 7, not 1x: 10-19 are all taken,
    and 20-29 mean volumes. A key that merely does not open something is ``WrongKey``."""

    exit_code = 7


# -- store and local state: 10-19 -------------------------------------------------------


class NotAStore(VstError):
    exit_code = 10


class Locked(VstError):
    exit_code = 11


class WrongKey(VstError):
    exit_code = 12


class ObjectMissing(VstError):
    exit_code = 13


class Corrupt(VstError):
    """Bytes that do not decode or do not match their id: objects, packs, refs, configs."""

    exit_code = 14


class CorruptObject(Corrupt):
    pass


class CorruptPack(Corrupt):
    pass


class CorruptRef(Corrupt):
    pass


class CorruptConfig(Corrupt):
    pass


class UnsupportedFormat(VstError):
    exit_code = 15


class RefConflict(VstError):
    """A compare-and-swap on a ref lost: someone else moved it first."""

    exit_code = 16


class NotFound(VstError):
    """An unknown revision, collection, pack or path."""

    exit_code = 17


class AlreadyExists(VstError):
    exit_code = 18


class HookRejected(VstError):
    """A pre-hook (pre-commit, commit-msg, pre-drop, pre-receive) exited non-zero."""

    exit_code = 19


# -- volumes and remotes: 20-29 ---------------------------------------------------------


class VolumeError(VstError):
    exit_code = 20


class VolumeUnreachable(VolumeError):
    exit_code = 20


class AccessDenied(VolumeError):
    exit_code = 21


class VolumeFull(VolumeError):
    exit_code = 22


class ProtocolError(VolumeError):
    exit_code = 23


class WrongVolume(VolumeError):
    """The volume belongs to another store, or is not a vst volume at all."""

    exit_code = 24


class VolumeIOError(VolumeError):
    exit_code = 25


class Interrupted(VstError):
    exit_code = 130


def from_os_error(exc: OSError, what: str) -> VstError:
    """Translate an OSError at an I/O boundary into the VstError a user should see."""
    reason = exc.strerror or str(exc)
    message = f"{what}: {reason}"
    if exc.errno == _errno.ENOSPC or exc.errno == _errno.EDQUOT:
        return VolumeFull(message)
    if exc.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
        return AccessDenied(message)
    if exc.errno == _errno.ENOENT:
        return NotFound(message)
    return VolumeIOError(message)
