"""``vst log``: walk a commit's history, newest first, and the ways to print a commit.

The walk follows every parent (merges included), each commit once, ordered by committer
time like git's default: a heap of the commits seen but not yet shown, newest on top.
Changes are always taken against the first parent (an empty tree for a root commit); with
paths, only commits whose changes touch them are shown.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from vst.objects.commit import Commit, Signature
from vst.objects.oid import Oid
from vst.plumbing.diff_tree import Change, diff_trees
from vst.plumbing.rev_parse import peel_to_commit
from vst.store import Store

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class LogEntry:
    oid: Oid
    commit: Commit
    changes: tuple[Change, ...] | None = None  # against the first parent, when asked for


def log(store: Store, start: Oid, *, max_count: int | None = None, paths: Sequence[bytes] = (),
        with_changes: bool = False) -> Iterator[LogEntry]:
    """The commits reachable from ``start``, newest committer time first (ties: the order
    they were reached in). With ``paths``, only commits that change something at or below
    them; ``with_changes`` attaches those changes (all of them, without ``paths``)."""
    odb = store.odb
    start = peel_to_commit(store, start)
    order = itertools.count()
    first: Commit = odb.read_commit(start)
    heap = [(-first.committer.time, next(order), start)]
    waiting = {start: first}  # commits in the heap, read once
    seen = {start}
    shown = 0
    while heap and (max_count is None or shown < max_count):
        _, _, oid = heapq.heappop(heap)
        commit = waiting.pop(oid)
        for parent in commit.parents:
            if parent not in seen:
                seen.add(parent)
                waiting[parent] = odb.read_commit(parent)
                heapq.heappush(heap, (-waiting[parent].committer.time, next(order), parent))
        changes = None
        if paths or with_changes:
            base = None
            if commit.parents:
                parent_commit = waiting.get(commit.parents[0]) or \
                    odb.read_commit(commit.parents[0])
                base = parent_commit.tree
            changes = diff_trees(store, base, commit.tree, paths)
            if paths and not changes:
                continue
        shown += 1
        yield LogEntry(oid, commit, tuple(changes) if with_changes and changes is not None
                       else None)


# -- presenting a commit ------------------------------------------------------------------------


def _offset(sig: Signature) -> str:
    sign = "-" if sig.tz_minutes < 0 else "+"
    hours, minutes = divmod(abs(sig.tz_minutes), 60)
    return f"{sign}{hours:02d}{minutes:02d}"


def format_date(sig: Signature) -> str:
    """git's default date: ``Tue Nov 14 23:13:20 2023 +0100``, in the signature's zone."""
    try:
        local = dt.datetime.fromtimestamp(sig.time + 60 * sig.tz_minutes, dt.UTC)
    except (OverflowError, OSError, ValueError):  # beyond what datetime represents
        return f"@{sig.time} {_offset(sig)}"
    return (f"{_DAYS[local.weekday()]} {_MONTHS[local.month - 1]} {local.day} "
            f"{local:%H:%M:%S} {local.year} {_offset(sig)}")


def rfc3339_utc(seconds: int) -> str | None:
    """``2023-11-14T22:13:20Z``; None for a time outside years 1 to 9999."""
    try:
        t = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t:%H:%M:%S}Z"


def _message_lines(message: bytes) -> list[bytes]:
    lines = message.rstrip(b"\n").split(b"\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def subject(commit: Commit) -> bytes:
    lines = _message_lines(commit.message)
    return lines[0] if lines else b""


def format_commit(oid: Oid, commit: Commit) -> bytes:
    """git's ``medium`` format: id, merge parents, author, date, the indented message."""
    out = [b"commit %s\n" % oid.hex.encode()]
    if len(commit.parents) > 1:
        out.append(b"Merge: %s\n" % b" ".join(p.short().encode() for p in commit.parents))
    author = commit.author
    out.append(f"Author: {author.name} <{author.email}>\n".encode())
    out.append(f"Date:   {format_date(author)}\n".encode())
    lines = _message_lines(commit.message)
    if lines:
        out.append(b"\n" + b"".join(b"    " + line + b"\n" for line in lines))
    return b"".join(out)


def format_oneline(oid: Oid, commit: Commit) -> bytes:
    return oid.short().encode() + b" " + subject(commit) + b"\n"


def _person(sig: Signature) -> dict[str, Any]:
    return {"name": sig.name, "email": sig.email, "time": rfc3339_utc(sig.time)}


def commit_record(entry: LogEntry) -> dict[str, Any]:
    """The ``--json`` record of a commit; ``changes`` only when the entry has them."""
    commit = entry.commit
    record: dict[str, Any] = {
        "type": "commit", "id": entry.oid.hex, "tree": commit.tree.hex,
        "parents": [p.hex for p in commit.parents],
        "author": _person(commit.author), "committer": _person(commit.committer),
        "message": commit.message.decode("utf-8", "replace"),
    }
    if entry.changes is not None:
        record["changes"] = [{"status": c.status,
                              "path": c.path.decode("utf-8", "surrogateescape")}
                             for c in entry.changes]
    return record
