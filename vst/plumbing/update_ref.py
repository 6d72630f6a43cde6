"""``vst update-ref`` and ``vst show-ref``: move and list collection heads."""

from __future__ import annotations

from vst.objects.commit import Signature
from vst.objects.oid import ZERO_OID, Oid
from vst.store import Store

ANY = object()


def update_ref(store: Store, collection: str, new: Oid, old: Oid | object | None = ANY, *,
               committer: Signature, message: str = "update-ref") -> Oid | None:
    """Move ``collection`` to ``new``. With ``old`` given the move is a compare-and-swap:
    it happens only if the head is still ``old`` (``ZERO_OID`` or None: no commit yet)."""
    if old is ANY:
        return store.update_ref(collection, new, None, committer=committer, message=message,
                                check_old=False)
    expected = None if old is None or old == ZERO_OID else old
    assert expected is None or isinstance(expected, Oid)
    return store.update_ref(collection, new, expected, committer=committer, message=message)


def show_ref(store: Store) -> list[tuple[str, Oid]]:
    """(collection, head) for every collection that has a commit, sorted by name."""
    return [(c.name, c.head) for c in store.collections() if c.head is not None]
