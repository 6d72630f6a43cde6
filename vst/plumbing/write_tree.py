"""``vst write-tree DIR``: store a directory recursively and return its tree id.

Files go through the ingest pipeline in parallel; trees are built bottom-up once every file
has its id. The walk itself makes no per-file system call: the directory listing's entry
types decide, and each file's status comes from the worker that opened it, so what is
recorded (mode, size, mtime) describes the very file descriptor that was read.

Symlinks are stored as links (their target in a blob), never followed; sockets, FIFOs and
devices are skipped with a warning; '.vst' (a working copy's state) is skipped.
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
from vst.objects.tree import Tree, TreeEntry, entry_mode, name_problem
from vst.objects.types import ObjectType
from vst.store import Store

Warn = Callable[[str], None]


@dataclass(slots=True)
class _Dir:
    st: os.stat_result
    entries: list[tuple[bytes, os.stat_result | None, Stored | _Dir]] = field(
        default_factory=list)
    oid: Oid | None = None


def write_tree(store: Store, directory: str, *, warn: Warn = lambda _: None,
               on_bytes: Callable[[int], None] | None = None, processes: bool = True) -> Oid:
    """Store ``directory``; ``processes`` allows worker processes for many small files."""
    root = os.fsencode(directory)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise from_os_error(exc, f"cannot open directory '{directory}'") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"'{directory}' is not a directory")
    odb = store.odb
    with odb.writer() as writer, Ingest(store.chunk_params, writer.sealing, writer,
                                        store.compression_level, on_bytes=on_bytes,
                                        processes=processes) as ingest:
        top = _Dir(st)
        # Explicit stacks, not recursion: a directory may nest deeper than Python's
        # recursion limit.
        dirs = [top]
        pending = [(top, root)]
        while pending:
            node, path = pending.pop()
            for _name, sub_path, sub in _scan(ingest, node, path, warn):
                dirs.append(sub)
                pending.append((sub, sub_path))
        ingest.finish()
        for node in reversed(dirs):  # every directory after all of its subdirectories
            node.oid = _store_tree(writer, node, warn)
        assert top.oid is not None
        return top.oid


def _scan(ingest: Ingest, node: _Dir, path: bytes,
          warn: Warn) -> list[tuple[bytes, bytes, _Dir]]:
    """List one directory into ``node``; returns its subdirectories to scan next."""
    subdirs = []
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
            if child.is_file(follow_symlinks=False):
                node.entries.append((name, None, ingest.add_path(child.path)))
            elif child.is_dir(follow_symlinks=False):
                sub = _Dir(child.stat(follow_symlinks=False))
                node.entries.append((name, sub.st, sub))
                subdirs.append((name, child.path, sub))
            elif child.is_symlink():
                child_st = child.stat(follow_symlinks=False)
                target = os.readlink(child.path)
                node.entries.append((name, child_st, ingest.add_bytes(ObjectType.BLOB, target)))
            else:
                warn(f"skipping '{shown}': not a regular file, directory or symlink")
        except FileNotFoundError:
            continue  # deleted while we looked
        except OSError as exc:
            raise from_os_error(exc, f"cannot read '{shown}'") from exc
    return subdirs


def _store_tree(writer: ObjectWriter, node: _Dir, warn: Warn) -> Oid:
    entries = []
    for name, listed_st, child in node.entries:
        if isinstance(child, _Dir):
            assert child.oid is not None, "subdirectories are stored first"
            entries.append(TreeEntry(name, entry_mode(child.st.st_mode), ObjectType.TREE,
                                     child.oid, 0, child.st.st_mtime_ns))
            continue
        if child.skipped:
            warn(f"skipping '{os.fsdecode(name)}': {child.skipped}")
            continue
        assert child.oid is not None, "ingest.finish() resolves every file"
        if child.mode:  # a file: its status as the worker opened it
            mode, mtime_ns = child.mode, child.mtime_ns
        else:  # a symlink's target, stored as bytes: the status from the listing
            assert listed_st is not None
            mode, mtime_ns = entry_mode(listed_st.st_mode), listed_st.st_mtime_ns
        entries.append(TreeEntry(name, mode, child.kind, child.oid, child.size, mtime_ns))
    return writer.put(ObjectType.TREE, Tree.from_entries(entries).encode())
