"""``vst write-tree DIR``: store a directory recursively and return its tree id.

Files go through the ingest pipeline in parallel; trees are built bottom-up once every file
has its id. Symlinks are stored as links (their target in a blob), never followed; sockets,
FIFOs and devices are skipped with a warning; '.vst' (a working copy's state) is skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from vst.errors import UsageError, from_os_error
from vst.ingest import Ingest, Stored
from vst.objects.odb import ObjectWriter
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry, name_problem
from vst.objects.types import ObjectType
from vst.store import Store


@dataclass(slots=True)
class _Dir:
    st: os.stat_result
    entries: list[tuple[bytes, os.stat_result, Stored | _Dir]] = field(default_factory=list)


def write_tree(store: Store, directory: str, *, warn: Callable[[str], None] = lambda _: None,
               on_bytes: Callable[[int], None] | None = None) -> Oid:
    root = os.fsencode(directory)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise from_os_error(exc, f"cannot open directory '{directory}'") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"'{directory}' is not a directory")
    odb = store.odb
    with odb.writer() as writer, Ingest(store.chunk_params, odb.ids, writer,
                                        store.compression_level, on_bytes=on_bytes) as ingest:
        tree = _scan(ingest, root, st, warn)
        ingest.finish()
        return _store_tree(writer, tree)


def _scan(ingest: Ingest, path: bytes, st: os.stat_result, warn: Callable[[str], None]) -> _Dir:
    node = _Dir(st)
    try:
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise from_os_error(exc, f"cannot read directory '{os.fsdecode(path)}'") from exc
    for child in children:
        name = child.name
        if name.lower() == b".vst":
            continue
        shown = os.fsdecode(child.path)
        problem = name_problem(name)
        if problem:
            warn(f"skipping '{shown}': {problem}")
            continue
        try:
            child_st = child.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted while we looked
        except OSError as exc:
            raise from_os_error(exc, f"cannot stat '{shown}'") from exc
        mode = child_st.st_mode
        if stat.S_ISDIR(mode):
            node.entries.append((name, child_st, _scan(ingest, child.path, child_st, warn)))
        elif stat.S_ISREG(mode):
            node.entries.append((name, child_st, ingest.add_file(child.path, child_st.st_size)))
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(child.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise from_os_error(exc, f"cannot read link '{shown}'") from exc
            node.entries.append((name, child_st, ingest.add_bytes(ObjectType.BLOB, target)))
        else:
            warn(f"skipping '{shown}': not a regular file, directory or symlink")
    return node


def _store_tree(writer: ObjectWriter, node: _Dir) -> Oid:
    entries = []
    for name, st, child in node.entries:
        mode = stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode)
        if isinstance(child, _Dir):
            oid = _store_tree(writer, child)
            entries.append(TreeEntry(name, mode, ObjectType.TREE, oid, 0, st.st_mtime_ns))
        else:
            assert child.oid is not None, "ingest.finish() resolves every file"
            entries.append(TreeEntry(name, mode, child.kind, child.oid, child.size,
                                     st.st_mtime_ns))
    return writer.put(ObjectType.TREE, Tree.from_entries(entries).encode())
