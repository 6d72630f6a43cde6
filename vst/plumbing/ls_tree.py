"""``vst ls-tree``: list a tree, and the record format that ``vst mktree`` reads back.

Record (one per entry; stable, see docs/cli/vst-ls-tree.md):

    <mode> SP <type> SP <id> SP <size> SP <mtime_ns> [SP <key>=<hex value>]... TAB <path>

``mode`` is six octal digits (100644, 100755, 040755, 120777...), ``type`` the object type
(blob, chunks, tree). The record holds every field of an entry, so
``vst ls-tree T | vst mktree`` prints T again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vst.objects.oid import Oid, is_full_hex
from vst.objects.tree import TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.quoting import quote, unquote
from vst.plumbing.rev_parse import Head, peel_to_tree, rev_parse
from vst.store import Store


@dataclass(frozen=True, slots=True)
class Listed:
    path: bytes
    entry: TreeEntry


def ls_tree(store: Store, treeish: str, *, recursive: bool = False, show_trees: bool = False,
            paths: Sequence[bytes] = (), head: Head | None = None) -> Iterator[Listed]:
    """Entries of the tree ``treeish`` names, in tree order.

    With ``paths``, only entries equal to one of them or inside one of them. As in git, a
    directory path shows the directory's own entry, and with a trailing '/' its contents.
    Recursion shows subtrees themselves only with ``show_trees``.
    """
    root = peel_to_tree(store, rev_parse(store, treeish, head))
    # A trailing '/' asks for the contents: keep it as a path "inside" the directory.
    wanted = [p.strip(b"/") + (b"/" if p.endswith(b"/") else b"") for p in paths]
    yield from _walk(store, root, b"", recursive, show_trees, wanted)


def _walk(store: Store, tree: Oid, prefix: bytes, recursive: bool, show_trees: bool,
          wanted: list[bytes]) -> Iterator[Listed]:
    # Depth first with an explicit stack, not recursion: a tree may nest deeper than
    # Python's recursion limit.
    stack = [_entries(store, tree, prefix)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        path, entry = item
        matched = not wanted or any(path == w or (w.endswith(b"/") and path.startswith(w))
                                    or path.startswith(w + b"/") for w in wanted)
        on_the_way = any(w.startswith(path + b"/") for w in wanted)
        if entry.is_dir and (on_the_way or (matched and recursive)):
            if show_trees:
                yield Listed(path, entry)
            stack.append(_entries(store, entry.oid, path + b"/"))
        elif matched:
            yield Listed(path, entry)


def _entries(store: Store, tree: Oid, prefix: bytes) -> Iterator[tuple[bytes, TreeEntry]]:
    return iter([(prefix + e.name, e) for e in store.odb.read_tree(tree).entries])


def format_record(listed: Listed, *, long: bool = False, nul: bool = False) -> bytes:
    entry = listed.entry
    size = f"{entry.size:>7}" if long else str(entry.size)
    fields = [f"{entry.mode:06o}", entry.kind.label, entry.oid.hex, size, str(entry.mtime_ns)]
    fields += [f"{key}={value.hex()}" for key, value in entry.attrs]
    head = " ".join(fields).encode()
    if nul:
        return head + b"\t" + listed.path + b"\0"
    return head + b"\t" + quote(listed.path).encode() + b"\n"


def parse_record(record: bytes, *, nul: bool = False) -> tuple[bytes, TreeEntry]:
    """Parse one ls-tree record (without its terminator) into (path, entry).

    Raises ValueError with the reason; the caller adds the line number.
    """
    head, tab, raw_path = record.partition(b"\t")
    if not tab:
        raise ValueError("missing TAB before the path")
    fields = head.decode("ascii", "replace").split()
    if len(fields) < 5:
        raise ValueError("expected '<mode> <type> <id> <size> <mtime_ns>'")
    mode_text, kind_text, id_text, size_text, mtime_text, *attr_fields = fields
    try:
        mode = int(mode_text, 8)
        kind = ObjectType.from_label(kind_text)
        size = int(size_text)
        mtime_ns = int(mtime_text)
    except ValueError as exc:
        raise ValueError(str(exc) if "object type" in str(exc) else
                         "malformed mode, size or mtime") from None
    if not is_full_hex(id_text):
        raise ValueError(f"malformed object id '{id_text}'")
    attrs = []
    for field in attr_fields:
        key, eq, value = field.partition("=")
        if not eq:
            raise ValueError(f"malformed attribute '{field}'")
        try:
            attrs.append((key, bytes.fromhex(value)))
        except ValueError:
            raise ValueError(f"malformed attribute '{field}': the value is not hex") from None
    path = raw_path if nul else unquote(raw_path.decode("utf-8", "surrogateescape"))
    entry = TreeEntry(path, mode, kind, Oid.from_hex(id_text), size, mtime_ns, tuple(attrs))
    return path, entry
