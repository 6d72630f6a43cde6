"""What this client remembers of a store, to notice a store that lies about its past.

A store is not trusted with confidentiality (invariant 4), and neither with its own
history: whoever controls its directory (or a volume it was rebuilt from) could roll a
collection's head back, swap in a keyring whose key they know, or say that an encrypted
collection is not encrypted, so that the next commit is written in the clear. So the
client keeps, per store location, in its own state folder (never in the store):

    store_id = "<the store's id>"
    [collections.NAME]
    keyring = "<keyring id hex>"      (or "" for a collection first seen unencrypted)
    head = "<the newest head seen>"

and checks each command against it: a different store id at the same location is a
swapped store, a collection that was encrypted and is no longer (or whose keyring changed)
is refused (WrongKey: nothing is written with a key the store chose), and a head that does
not descend from the newest one seen is a rollback, reported as a warning (it may be
deliberate, as `update-ref` to an older commit is). The first sight of a store or collection
is trusted (as ssh trusts a new host key).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from typing import Any

from vst.errors import VstError, WrongKey
from vst.fsio import DEFAULT_FS, FileSystem, read_file
from vst.objects.oid import Oid, is_full_hex

Warn = Callable[[str], None]


class KnownState:
    def __init__(self, path: str, store_id: str, location: str, *,
                 fs: FileSystem = DEFAULT_FS, warn: Warn = lambda _: None) -> None:
        self.path = path
        self.location = location
        self.fs = fs
        self.warn = warn
        self._table = self._load()
        known_id = self._table.get("store_id")
        if isinstance(known_id, str) and known_id and known_id != store_id:
            warn(f"the store at '{location}' is not the one you used before (its id was "
                 f"{known_id}, it is now {store_id}): a different store, or a swapped one")
            self._table = {}
        self._table["store_id"] = store_id
        self._dirty = known_id != store_id

    def _load(self) -> dict[str, Any]:
        try:
            table = tomllib.loads(read_file(self.path).decode("utf-8"))
        except (VstError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return {}  # absent or unreadable: start afresh (trusting what is seen next)
        return table if isinstance(table, dict) else {}

    def _collection(self, name: str) -> dict[str, Any]:
        collections = self._table.setdefault("collections", {})
        if not isinstance(collections, dict):
            collections = self._table["collections"] = {}
        entry = collections.setdefault(name, {})
        if not isinstance(entry, dict):
            entry = collections[name] = {}
        return entry

    def check_keyring(self, collection: str, keyring_id: bytes | None) -> None:
        """Refuse a collection whose encryption the store changed behind this client's
        back; remember it on first sight."""
        entry = self._collection(collection)
        seen = entry.get("keyring")
        now = keyring_id.hex() if keyring_id is not None else ""
        if isinstance(seen, str) and seen != now:
            if not now:
                raise WrongKey(f"collection '{collection}' was encrypted when you last used "
                               "it, and the store now says it is not: refusing to read or "
                               "write it in the clear (a downgraded store?)",
                               hint=f"if that is right, delete [collections.{collection}] "
                                    f"from '{self.path}'")
            raise WrongKey(f"collection '{collection}' now uses keyring {now}, not {seen or 'none'} "
                           "as when you last used it: refusing keys the store chose "
                           "(a swapped store?)",
                           hint=f"if you changed it yourself, delete "
                                f"[collections.{collection}] from '{self.path}'")
        if seen is None:
            entry["keyring"] = now
            self._dirty = True

    def rekeyed(self, collection: str, keyring_id: bytes) -> None:
        """This client gave the collection a new keyring itself (a rotation)."""
        self._collection(collection)["keyring"] = keyring_id.hex()
        self._dirty = True

    def forget(self, collection: str) -> bool:
        collections = self._table.get("collections", {})
        if isinstance(collections, dict) and collection in collections:
            del collections[collection]
            self._dirty = True
            return True
        return False

    def saw_head(self, collection: str, head: Oid | None,
                 descends: Callable[[Oid, Oid], bool]) -> None:
        """Note ``head``; warn when it does not descend from the newest head seen before."""
        if head is None:
            return
        entry = self._collection(collection)
        seen = entry.get("head")
        if seen == head.hex:
            return
        if isinstance(seen, str) and is_full_hex(seen):
            try:
                newer = descends(head, Oid.from_hex(seen))
            except WrongKey:
                return  # no key to read the history with: it cannot be checked here
            except VstError:  # the old head cannot be read: say so rather than guess
                newer = False
            if not newer:
                # Said once: from now on this head is the one known (the move may have been
                # deliberate, and a warning on every command would teach users to ignore it).
                self.warn(f"collection '{collection}' is at {head.short()}, which does not "
                          f"descend from {seen[:12]}, the newest head you saw: rolled back "
                          "(or moved on purpose)")
        entry["head"] = head.hex
        self._dirty = True

    def moved(self, collection: str, head: Oid) -> None:
        """This client moved the head itself (no check: it chose the commit)."""
        entry = self._collection(collection)
        if entry.get("head") != head.hex:
            entry["head"] = head.hex
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        import tomli_w

        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            self.fs.makedirs(directory)
        try:
            self.fs.write_file(self.path, tomli_w.dumps(self._table).encode())
        except VstError as exc:  # a record of what was seen: losing it only warns less
            self.warn(f"cannot record what this store showed in '{self.path}': {exc}")
        self._dirty = False
