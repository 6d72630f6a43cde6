"""``vst push-blob``: copy objects to another store, sending only what it lacks.

Each object is read verified from this store and re-hashed as it is written to the other,
so a mismatch (a corrupt read, or stores with different id keys) stops the push before any
ref could point at it. With ``-r`` objects are sent children first, so an interrupted push
never leaves a tree in the destination without the objects it names; without ``-r`` only
the named objects are sent, as asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vst.errors import CorruptObject
from vst.objects.oid import Oid
from vst.plumbing.reachable import reachable
from vst.store import Store

_BATCH = 1000


def push_blob(source: Store, destination: Store, oids: Iterable[Oid], *, recursive: bool = False,
              on_sent: Callable[[Oid], None] | None = None) -> list[Oid]:
    wanted = list(reachable(source, oids)) if recursive else \
        [(oid, source.odb.get_kind(oid)) for oid in oids]
    missing: list[Oid] = []
    for start in range(0, len(wanted), _BATCH):
        batch = [oid for oid, _ in wanted[start:start + _BATCH]]
        held = destination.odb.has_many(batch)
        missing.extend(oid for oid in batch if oid not in held)
    sent = []
    with destination.odb.writer() as writer:
        for oid in missing:
            kind, content = source.odb.get(oid)
            if writer.put(kind, content) != oid:
                raise CorruptObject(f"object {oid} hashes differently in '{destination.path}'",
                                    hint="the stores use different id keys")
            sent.append(oid)
            if on_sent:
                on_sent(oid)
    return sent
