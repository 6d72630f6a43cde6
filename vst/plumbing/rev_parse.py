"""Resolving revisions: ids, abbreviated ids, collections, ancestry and paths.

    REV   := BASE ( '~' [N] | '^' [N] )* [ ':' PATH ]
    BASE  := <64 hex> | <4+ hex prefix> | HEAD | COLLECTION | (COLLECTION | HEAD) '@{' N '}'

``HEAD`` is a working copy's base commit (the caller passes it in as ``head``: the working
copy's collection and base); ``HEAD@{N}`` is its collection's reflog. A collection name wins
over an id prefix that reads the same, as a branch does in git.
"""

from __future__ import annotations

import re

from vst.errors import NotFound, UsageError
from vst.objects.oid import Oid, is_full_hex, is_prefix
from vst.objects.types import ObjectType
from vst.store import Store

# A working copy's collection and base commit (None before its first commit).
Head = tuple[str, Oid | None]

_SUFFIX_RE = re.compile(r"([~^])(\d*)")
_REFLOG_RE = re.compile(r"(.+)@\{(\d+)\}\Z")


def rev_parse(store: Store, rev: str, head: Head | None = None) -> Oid:
    """The object ``rev`` names; ``head`` gives HEAD its meaning inside a working copy."""
    if not rev:
        raise UsageError("empty revision")
    spec, colon, path = rev.partition(":")
    oid = _resolve_spec(store, spec, rev, head)
    if colon:
        oid = resolve_path(store, peel_to_tree(store, oid), path, rev)
    return oid


def _resolve_spec(store: Store, spec: str, rev: str, head: Head | None) -> Oid:
    match = re.search(r"(?:[~^]\d*)*\Z", spec)
    assert match is not None
    base, suffixes = spec[:match.start()], spec[match.start():]
    oid = _resolve_base(store, base, rev, head)
    for op, digits in _SUFFIX_RE.findall(suffixes):
        count = int(digits) if digits else 1
        oid = _ancestor(store, oid, count, rev) if op == "~" else _parent(store, oid, count, rev)
    return oid


def _resolve_base(store: Store, base: str, rev: str, head: Head | None) -> Oid:
    if not base:
        raise UsageError(f"bad revision '{rev}'")
    reflog = _REFLOG_RE.match(base)
    if reflog:
        name = reflog.group(1)
        if name == "HEAD":
            name = _need_head(head, rev)[0]
        return _reflog_entry(store, name, int(reflog.group(2)), rev)
    if base == "HEAD":
        oid = _need_head(head, rev)[1]
        if oid is None:
            raise NotFound(f"'{rev}': the working copy has no commit yet")
        return oid
    if store.has_collection(base):
        tip = store.read_ref(base)
        if tip is None:
            raise NotFound(f"collection '{base}' has no commits yet")
        return tip
    if is_full_hex(base):
        return Oid.from_hex(base)
    if is_prefix(base):
        return store.odb.resolve_prefix(base)
    raise NotFound(f"unknown revision '{rev}'",
                   hint="name a collection, an object id, or an id prefix of 4+ hex digits")


def _need_head(head: Head | None, rev: str) -> Head:
    if head is None:
        raise NotFound(f"'{rev}': HEAD names a working copy's base commit, and this is not "
                       "a working copy", hint="name a collection or a commit id instead")
    return head


def _reflog_entry(store: Store, name: str, n: int, rev: str) -> Oid:
    if not store.has_collection(name):
        raise NotFound(f"no collection named '{name}' in '{rev}'")
    values = [entry.new for entry in reversed(store.reflog(name))]
    if n >= len(values):
        raise NotFound(f"reflog of '{name}' has only {len(values)} entries ('{rev}')")
    return values[n]


def _parent(store: Store, oid: Oid, n: int, rev: str) -> Oid:
    commit = store.odb.read_commit(peel_to_commit(store, oid))
    if n == 0:
        return oid
    if n > len(commit.parents):
        raise NotFound(f"'{rev}': commit {oid.short()} has no parent {n}")
    return commit.parents[n - 1]


def _ancestor(store: Store, oid: Oid, n: int, rev: str) -> Oid:
    for _ in range(n):
        oid = _parent(store, oid, 1, rev)
    return oid


def peel_to_commit(store: Store, oid: Oid) -> Oid:
    kind = store.odb.get_kind(oid)
    if kind != ObjectType.COMMIT:
        raise UsageError(f"{oid} is a {kind.label}, not a commit")
    return oid


def peel_to_tree(store: Store, oid: Oid) -> Oid:
    """A tree itself, or the tree of a commit."""
    kind = store.odb.get_kind(oid)
    if kind == ObjectType.COMMIT:
        return store.odb.read_commit(oid).tree
    if kind == ObjectType.TREE:
        return oid
    raise UsageError(f"{oid} is a {kind.label}, not a tree or commit")


def resolve_path(store: Store, tree: Oid, path: str, rev: str = "") -> Oid:
    oid = tree
    for part in [p for p in path.split("/") if p]:
        entry = store.odb.read_tree(peel_to_tree(store, oid)).get(part.encode())
        if entry is None:
            raise NotFound(f"path '{path}' does not exist in '{rev or tree}'")
        oid = entry.oid
    return oid
