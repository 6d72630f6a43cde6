"""``vst cat-file``: an object's type, size, content; and the batch protocol."""

from __future__ import annotations

from collections.abc import Iterator

from vst.errors import Corrupt, CorruptObject, NotFound, ObjectMissing, UsageError
from vst.objects.oid import Oid
from vst.objects.types import ObjectType
from vst.plumbing.rev_parse import Head, rev_parse
from vst.store import Store


def exists(store: Store, name: str, head: Head | None = None) -> bool:
    """``-e``: the object can be read back and verifies against its id (an index entry
    alone is not enough: the pack may be gone or damaged)."""
    try:
        store.odb.get(rev_parse(store, name, head))
    except (NotFound, ObjectMissing, UsageError, Corrupt):
        return False
    return True


def pretty(kind: ObjectType, content: bytes) -> bytes:
    """``-p``: trees as ls-tree records, chunk lists as '<id> <size>' lines, others raw."""
    if kind == ObjectType.TREE:
        from vst.objects.tree import Tree
        from vst.plumbing.ls_tree import Listed, format_record

        tree = Tree.decode(content)
        return b"".join(format_record(Listed(e.name, e)) for e in tree.entries)
    if kind == ObjectType.CHUNKS:
        from vst.objects.chunks import ChunkList

        return b"".join(f"{c.oid} {c.size}\n".encode() for c in ChunkList.decode(content).chunks)
    return content


def file_content(store: Store, oid: Oid) -> Iterator[bytes]:
    """The bytes of the file whose content object is ``oid`` (a blob or a chunks object),
    every piece verified before it is yielded."""
    kind, content = store.odb.get(oid)
    if kind == ObjectType.BLOB:
        yield content
    elif kind == ObjectType.CHUNKS:
        from vst.objects.chunks import ChunkList

        for chunk in ChunkList.decode(content, oid).chunks:
            data = store.odb.get_typed(chunk.oid, ObjectType.BLOB)
            if len(data) != chunk.size:
                raise CorruptObject(f"chunk {chunk.oid} of {oid} has {len(data)} bytes, "
                               f"the list says {chunk.size}")
            yield data
    else:
        raise UsageError(f"{oid} is a {kind.label}, not file content")


def batch(store: Store, names: Iterator[bytes], *, contents: bool,
          head: Head | None = None) -> Iterator[bytes]:
    """Answers for ``--batch`` / ``--batch-check``, one per input line, in git's format:

        <id> SP <type> SP <size> LF [<content> LF]
        <name> SP missing LF
    """
    for raw in names:
        name = raw.rstrip(b"\n").decode("utf-8", "replace")
        try:
            oid = rev_parse(store, name, head)
            kind, content = store.odb.get(oid)
        except (NotFound, ObjectMissing, UsageError):
            yield f"{name} missing\n".encode()
            continue
        header = f"{oid} {kind.label} {len(content)}\n".encode()
        yield header + content + b"\n" if contents else header
