"""``vst hash-object``: the id of a file's content object, optionally storing it."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import BinaryIO

from vst.errors import UsageError, from_os_error
from vst.ingest import Ingest, Stored
from vst.objects.chunking import ChunkParams
from vst.objects.odb import ObjectWriter
from vst.objects.seal import PLAIN
from vst.store import Store


def hash_object(store: Store | None, *, paths: Sequence[str] = (), stdin: BinaryIO | None = None,
                write: bool = False) -> list[Stored]:
    """Hash (and with ``write`` store) each path, then stdin if given, in that order.

    Without a store the id is computed with default chunking and plain ids, as for a new
    unencrypted store.
    """
    if write and store is None:
        raise UsageError("hash-object -w needs a store")
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise from_os_error(exc, f"cannot open '{path}'") from exc
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"'{path}' is not a regular file")
    params = store.chunk_params if store else ChunkParams()
    level = store.compression_level if store else 0
    writer: ObjectWriter | None = store.odb.writer() if write and store else None
    try:
        with Ingest(params, writer.sealing if writer is not None else PLAIN, writer,
                    level) as ingest:
            results = [ingest.add_file(os.fsencode(p)) for p in paths]
            if stdin is not None:
                results.append(ingest.add_stream(stdin))
            ingest.finish()
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return results
