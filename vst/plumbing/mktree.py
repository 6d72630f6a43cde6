"""``vst mktree``: build a tree object from ls-tree records."""

from __future__ import annotations

from collections.abc import Iterable

from vst.errors import ObjectMissing, UsageError
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.ls_tree import parse_record
from vst.plumbing.quoting import quote
from vst.store import Store


def parse_records(data: bytes, *, nul: bool = False) -> list[TreeEntry]:
    """Entries from ls-tree output; errors name the record number."""
    terminator = b"\0" if nul else b"\n"
    records = data.split(terminator)
    if records and records[-1] == b"":
        records.pop()
    entries = []
    seen: dict[bytes, int] = {}
    for number, record in enumerate(records, 1):
        try:
            path, entry = parse_record(record, nul=nul)
        except ValueError as exc:
            raise UsageError(f"mktree: record {number}: {exc}") from None
        if b"/" in path:
            raise UsageError(f"mktree: record {number}: path '{quote(path)}' has a '/'; "
                             "mktree builds one directory level")
        # Entry rules are checked here too, so the error names the record (and stays on one
        # line: the path is C-quoted, never printed raw).
        problem = entry.problem()
        if problem:
            raise UsageError(f"mktree: record {number}: '{quote(path)}': {problem}")
        if path in seen:
            raise UsageError(f"mktree: record {number}: duplicate name '{quote(path)}' "
                             f"(also record {seen[path]})")
        seen[path] = number
        entries.append(entry)
    return entries


def mktree(store: Store, entries: Iterable[TreeEntry], *, allow_missing: bool = False) -> Oid:
    """Store a tree made of ``entries`` and return its id.

    Every entry must be valid (tree.py's rules) and, unless ``allow_missing``, point at an
    object the store holds, of the type the entry says.
    """
    try:
        tree = Tree.from_entries(entries)
    except ValueError as exc:
        raise UsageError(f"mktree: {exc}") from None
    if not allow_missing:
        for entry in tree.entries:
            if not store.odb.has(entry.oid):
                raise ObjectMissing(f"mktree: entry '{quote(entry.name)}' "
                               f"points at missing object {entry.oid}")
            actual = store.odb.get_kind(entry.oid)
            if actual != entry.kind:
                raise UsageError(f"mktree: entry '{quote(entry.name)}': "
                                 f"{entry.oid} is a {actual.label}, not a {entry.kind.label}")
    with store.odb.writer() as writer:
        return writer.put(ObjectType.TREE, tree.encode())
