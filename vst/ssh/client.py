"""A store reached over SSH: the client side of ``vst serve --stdio`` (docs/ssh.md).

``RemoteStore`` stands in for ``vst.store.Store`` in the commands that work on a remote
store (clone, commit, status, log, show, diff, restore, pull, drop, collection list and
create, the object and ref plumbing): the same methods, each one request or a few batched
ones. Keys never leave this process: objects are named, sealed, opened and verified here,
and the server stores and returns sealed records. A command that only makes sense on the
machine holding the store (volumes, policies, repair, ...) says so; scrub and replicate
are run by the server (vst/porcelain/scrub.py, replicate.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from vst.errors import (
    NotFound,
    ObjectMissing,
    ProtocolError,
    UsageError,
    VstError,
    WrongKey,
)
from vst.fsio import DEFAULT_FS
from vst.keyrings import Keyrings
from vst.objects.ids import PLAIN_IDS
from vst.objects.odb import ObjectDatabase, Placement, _Spooled
from vst.objects.oid import Oid, is_full_hex
from vst.objects.seal import UnexpectedSize, unseal
from vst.objects.types import ObjectType
from vst.ssh.connection import Connection
from vst.ssh.url import SshAddress

if TYPE_CHECKING:
    from vst.crypto.keyring import KeyringFile
    from vst.known import KnownState
    from vst.objects.commit import Signature
    from vst.objects.pack import PackIndex
    from vst.objects.tree import Tree
    from vst.policy import Policy
    from vst.store import Collection, ReflogEntry

Warn = Callable[[str], None]

BATCH = 65536  # ids per request: the server's limit
MAX_ANSWER = 300 * 1024 * 1024  # data in one answer: one record may be 256 MiB
SEND_PIECE = 1024 * 1024
MAX_PACK_IN_MEMORY = 64 * 1024 * 1024
MAX_LISTING = 256 * 1024 * 1024  # the list of collections (~200 bytes each)
MAX_AHEAD = 64 * 1024 * 1024  # subtrees held ahead of their reading


class RemoteIndex:
    """What the object database's writers ask of an index, answered by the server in
    batches, with what is known to be there remembered (a set of ids)."""

    path = None  # no file: worker processes cannot open it, and are not used

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._known: set[Oid] = set()
        self._lock = threading.Lock()

    def has(self, oid: Oid) -> bool:
        return oid in self.has_many([oid])

    def has_many(self, oids: Iterable[Oid]) -> set[Oid]:
        wanted = list(dict.fromkeys(oids))
        with self._lock:
            present = {oid for oid in wanted if oid in self._known}
        ask = [oid for oid in wanted if oid not in present]
        for start in range(0, len(ask), BATCH):
            batch = ask[start:start + BATCH]
            _, answer = self.connection.call("have", b"".join(o.raw for o in batch),
                                             limit=len(batch))
            if len(answer) != len(batch):
                raise ProtocolError(f"'{self.connection.url}' answered for "
                                    f"{len(answer)} ids of {len(batch)}")
            found = {oid for oid, flag in zip(batch, answer, strict=True) if flag}
            with self._lock:
                self._known |= found
            present |= found
        return present

    def add_packs(self, packs: Sequence[tuple[Oid, int, PackIndex, Sequence[str]]],
                  owner: str | None = None) -> None:
        # The server indexed each pack as it took it; what it holds is now known here.
        with self._lock:
            for _pack, _size, index, _volumes in packs:
                self._known.update(entry.oid for entry in index)

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _local_only(self.connection.url)


class RemoteObjectDatabase(ObjectDatabase):
    """The object database of a remote store: reads fetch sealed records in batches and
    open and verify them here; writers build packs here and stream them to the server."""

    def __init__(self, connection: Connection, spool_dir: str, pack_size: int,
                 compression_level: int, sealings: Callable[[bytes], Any], warn: Warn) -> None:
        self.connection = connection
        self.remote_index = RemoteIndex(connection)
        # Subtrees fetched ahead of their reading (read_tree): sealed record, keyring id.
        self._ahead: dict[Oid, tuple[bytes, bytes | None]] = {}
        self._ahead_bytes = 0
        super().__init__([], self.remote_index, PLAIN_IDS,  # type: ignore[arg-type]
                         pack_size, compression_level, spool_dir=spool_dir,
                         placement=_RemotePlacement(None), warn=warn, sealings=sealings)
        # Packs leave as soon as they are full: written to a spool file here they would
        # cost a second trip through the page cache (3 s a GiB of kernel time on a VM),
        # while the packs in memory are a few (IN_FLIGHT + 1) of pack_size each.
        self.spools_in_memory = pack_size <= MAX_PACK_IN_MEMORY

    # -- reading ------------------------------------------------------------------------------

    def _records(self, oids: list[Oid]) -> Iterator[tuple[int, memoryview, bytes | None]]:
        """(position, sealed record, keyring id) of each of ``oids`` the store holds, a
        few round trips for many objects; ObjectMissing for one it lacks."""
        done = 0
        while done < len(oids):
            batch = oids[done:done + BATCH]
            result, data = self.connection.call("objects", b"".join(o.raw for o in batch),
                                                limit=MAX_ANSWER)
            records = result.get("records") if isinstance(result, dict) else None
            keyrings = result.get("keyrings") if isinstance(result, dict) else None
            if not isinstance(records, list) or not isinstance(keyrings, list) \
                    or not 0 < len(records) <= len(batch):
                raise ProtocolError(f"'{self.connection.url}' sent a malformed answer")
            try:
                ids = [bytes.fromhex(k) if k is not None else None for k in keyrings]
                sizes = [(int(size), ids[number]) for size, number in records]
            except (TypeError, ValueError, IndexError):
                raise ProtocolError(f"'{self.connection.url}' sent a malformed answer") from None
            if sum(size for size, _ in sizes if size > 0) != len(data):
                raise ProtocolError(f"'{self.connection.url}' sent records of the wrong size")
            view, offset = memoryview(data), 0
            for number, (size, keyring) in enumerate(sizes):
                if size < 0:
                    raise ObjectMissing(f"object {batch[number]} not found")
                yield done + number, view[offset:offset + size], keyring
                offset += size
            done += len(records)

    def fetch_sealed(self, oids: list[Oid]) -> dict[Oid, tuple[bytes, bytes | None]]:
        """The sealed records of ``oids`` and their keyring ids, for worker processes to
        open (vst/checkout); ObjectMissing for one the store lacks."""
        return {oids[number]: (bytes(record), keyring)
                for number, record, keyring in self._records(oids)}

    def _read_record(self, oid: Oid, failed: Any = None) -> tuple[ObjectType, bytes]:
        ahead = self._ahead.pop(oid, None)
        if ahead is not None:
            self._ahead_bytes -= len(ahead[0])
            return unseal(ahead[0], oid, self.sealing(ahead[1]), f"'{self.connection.url}'")
        for _, record, keyring in self._records([oid]):
            return unseal(record, oid, self.sealing(keyring), f"'{self.connection.url}'")
        raise ObjectMissing(f"object {oid} not found")

    def read_tree(self, oid: Oid) -> Tree:
        """A tree, and its subtrees fetched ahead in one request: whoever walks a tree
        (clone, diff, log --stat, fsck) asks for them next, and a request each would be
        a round trip each, waiting behind whatever else is in flight."""
        tree = super().read_tree(oid)
        subtrees = [entry.oid for entry in tree.entries
                    if entry.kind == ObjectType.TREE and entry.oid not in self._ahead]
        if subtrees and self._ahead_bytes < MAX_AHEAD:
            try:
                for number, record, keyring in self._records(subtrees[:BATCH]):
                    self._ahead[subtrees[number]] = (bytes(record), keyring)
                    self._ahead_bytes += len(record)
            except ObjectMissing:
                pass  # said when that subtree is read
        return tree

    def read_many(self, wanted: list[tuple[Oid, int]], packs: dict[Oid, Any],
                  located: list[Any] | None = None) -> list[tuple[ObjectType, bytes] | None]:
        # No locations: the server looks its objects up itself.
        found: list[tuple[ObjectType, bytes] | None] = [None] * len(wanted)
        try:
            records = list(self._records([oid for oid, _ in wanted]))
        except ObjectMissing:
            return found  # each get() names what is missing
        for number, record, keyring in records:
            oid, size = wanted[number]
            try:
                read = unseal(record, oid, self.sealing(keyring), f"'{self.connection.url}'",
                              max_size=size)
            except UnexpectedSize:
                continue
            except WrongKey:
                raise  # nothing else will do better
            except VstError:
                continue  # get() says what is wrong
            if len(read[1]) == size:
                found[number] = read
        return found

    def packs_holding(self, oids: Iterable[Oid]) -> set[Oid]:
        wanted = list(oids)
        packs: set[Oid] = set()
        for start in range(0, len(wanted), BATCH):
            batch = wanted[start:start + BATCH]
            result, _ = self.connection.call("packs_of", b"".join(o.raw for o in batch))
            packs.update(_oid(text) for text in _expect(result, list, "packs_of"))
        return packs

    def resolve_prefix(self, prefix: str) -> Oid:
        result, _ = self.connection.call("prefix", prefix=prefix)
        return _oid(result)

    # -- writing ------------------------------------------------------------------------------

    def writer(self, placement: Placement | None = None, *, owner: str | None = None,
               sealing: Any = None, keep_indexes: bool = False) -> Any:
        return super().writer(_RemotePlacement(owner), owner=owner, sealing=sealing,
                              keep_indexes=keep_indexes)

    def store_spooled(self, spooled: _Spooled, placement: Placement,
                      copiers: Any = None) -> list[str]:
        """Stream the spooled pack to the server, which checks it against its name and
        writes it to the volumes of the collection's policy."""
        assert isinstance(placement, _RemotePlacement)
        if spooled.data is not None:
            view = memoryview(spooled.data)
            result = self.connection.call_streaming(
                "pack.put", spooled.size,
                (view[start:start + SEND_PIECE] for start in range(0, len(view), SEND_PIECE)),
                pack=spooled.pack.hex, collection=placement.collection)
        else:
            try:
                os.close(spooled.fd)  # opened for writing; read again below
                with open(spooled.path, "rb") as spool:
                    pieces = iter(lambda: spool.read(SEND_PIECE), b"")
                    result = self.connection.call_streaming(
                        "pack.put", spooled.size, pieces, pack=spooled.pack.hex,
                        collection=placement.collection)
            finally:
                try:
                    os.unlink(spooled.path)
                except OSError:
                    pass
        result = _expect(result, dict, "pack.put")
        volumes, copies = result.get("volumes"), result.get("copies")
        if isinstance(copies, int) and copies > 0:
            placement.copies = copies
        if isinstance(result.get("policy"), str):
            placement.policy = result["policy"]
        return ["remote"] * (volumes if isinstance(volumes, int) else 1)

    def settle(self, reused: set[Oid], placement: Placement, owner: str | None
               ) -> dict[Oid, int]:
        short: dict[Oid, int] = {}
        ids = list(reused)
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            result, _ = self.connection.call("settle", b"".join(o.raw for o in batch),
                                             collection=owner)
            short.update({_oid(pack): _count(copies) for pack, copies
                          in _expect(result, dict, "settle").items()})
        return short


class _RemotePlacement(Placement):
    """A writer's placement on a remote store: the server applies the collection's policy;
    ``copies`` becomes the policy's once the server has said it."""

    def __init__(self, collection: str | None) -> None:
        super().__init__("remote", [], 1, frozenset(), {})
        self.collection = collection


class RemoteKeyrings(Keyrings):
    """The store's keyring files, read and written through the server (they hold no
    secret); opened here with the user's keys, as for a local store."""

    def __init__(self, connection: Connection, store_id: str) -> None:
        super().__init__("", store_id, DEFAULT_FS, lambda _name, _data: None)
        self.connection = connection
        self._files: dict[str, KeyringFile] = {}

    def names(self) -> list[str]:
        result, _ = self.connection.call("keyrings")
        names = _expect(result, list, "keyrings")
        if not all(isinstance(name, str) for name in names):
            raise ProtocolError(f"'{self.connection.url}' sent a malformed list of keyrings")
        return names

    def exists(self, name: str) -> bool:
        return name in self.names()

    def read(self, name: str) -> KeyringFile:
        from vst.crypto.keyring import KeyringFile

        # Read once a command: opening a collection asks for its keyring several times.
        if name not in self._files:
            _, data = self.connection.call("keyring.read", limit=1024 * 1024, name=name)
            self._files[name] = KeyringFile.decode(bytes(data),
                                                   f"{self.connection.url} keys/{name}.toml")
        return self._files[name]

    @contextmanager
    def locked(self) -> Iterator[None]:
        yield  # the server writes each keyring file under its lock

    def write(self, file: KeyringFile, *, new: bool = False) -> None:
        self._files.pop(file.name, None)
        self.connection.call("keyring.write", file.encode(), new=new)
        self._by_id = None

    def remove(self, name: str) -> None:
        raise UsageError("keyring files of a remote store are removed on its machine")


class RemoteStore:
    """A store served by ``vst serve --stdio`` at the other end of ``connection``."""

    def __init__(self, address: SshAddress, connection: Connection, warn: Warn) -> None:
        from vst.objects.chunking import ChunkParams

        info = connection.info
        self.address = address
        self.path = address.url  # what working copies record, and messages name
        self.connection = connection
        self.warn = warn
        self.store_id: str = info["store_id"]
        self.append_only = "append-only" in info.get("modes", [])
        self.pack_size = int(info.get("pack_size", 16 * 1024 * 1024))
        self.compression_level = int(info.get("compression_level", 3))
        try:
            self.chunk_params = ChunkParams(**info["chunking"])
        except (KeyError, TypeError):
            raise ProtocolError(f"'{self.path}' sent no chunking parameters") from None
        self.known: KnownState | None = None
        self.keyrings = RemoteKeyrings(connection, self.store_id)
        self.unavailable: dict[str, str] = {}
        self._collections: dict[str, dict[str, Any]] | None = None
        self._odb: RemoteObjectDatabase | None = None
        self._spool_dir: str | None = None

    @classmethod
    def connect(cls, address: SshAddress, ssh_command: str, remote_vst: str,
                warn: Warn) -> RemoteStore:
        return cls(address, Connection(address.argv(ssh_command, remote_vst), address.url,
                                       warn), warn)

    def __getattr__(self, name: str) -> Any:
        # What a local store has and this one does not (volumes, policies, the index...):
        # the command needs the machine holding the store.
        if name.startswith("__"):
            raise AttributeError(name)
        raise _local_only(self.path)

    @property
    def odb(self) -> RemoteObjectDatabase:
        if self._odb is None:
            self._spool_dir = tempfile.mkdtemp(prefix="vst-spool-")
            self._odb = RemoteObjectDatabase(self.connection, self._spool_dir, self.pack_size,
                                             self.compression_level,
                                             self.keyrings.sealing_by_id, self.warn)
        return self._odb

    def close(self) -> None:
        if self.known is not None:
            self.known.save()
        self.connection.close()
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)

    # -- collections --------------------------------------------------------------------------

    def _listing(self, refresh: bool = False) -> dict[str, dict[str, Any]]:
        if self._collections is None or refresh:
            _, data = self.connection.call("collections", limit=MAX_LISTING)
            try:
                listing = json.loads(data)
                self._collections = {item["name"]: item for item in listing}
            except (ValueError, TypeError, KeyError):
                raise ProtocolError(f"'{self.path}' sent a malformed list of "
                                    "collections") from None
        return self._collections

    def _collection(self, name: str) -> dict[str, Any]:
        table = self._listing().get(name) or self._listing(refresh=True).get(name)
        if table is None:
            raise NotFound(f"no collection named '{name}'", hint="see 'vst collection list'")
        return table

    def has_collection(self, name: str) -> bool:
        return name in self._listing() or name in self._listing(refresh=True)

    def collection_names(self) -> list[str]:
        return sorted(self._listing(refresh=True))

    def collections(self) -> Iterator[Collection]:
        from vst.store import Collection

        for name, table in sorted(self._listing(refresh=True).items()):
            head = _oid(table["head"]) if table.get("head") else None
            if head is not None and self.known is not None:
                self.known.saw_head(name, head, self._descends)
            yield Collection(name, head)

    def collection_keyring(self, name: str) -> str | None:
        return self._collection(name).get("keyring")

    def collection_policy(self, name: str) -> str:
        return str(self._collection(name).get("policy", "default"))

    def create_collection(self, name: str, *, keyring: str | None = None) -> None:
        self.connection.call("collection.create", name=name, keyring=keyring)
        self._collections = None

    def sealing(self, collection: str | None) -> Any:
        from vst.store import sealing_of

        return sealing_of(self, collection)

    def writer(self, collection: str | None = None) -> Any:
        return self.odb.writer(owner=collection, sealing=partial(self.sealing, collection))

    def policy_of(self, collection: str | None) -> Policy:
        from vst.policy import Policy

        result, _ = self.connection.call("policy", collection=collection)
        try:
            return Policy(str(result["name"]), tuple(map(str, result["volumes"])),
                          _count(result["copies"]))
        except (KeyError, TypeError):
            raise ProtocolError(f"'{self.path}' sent a malformed policy") from None

    def short_packs(self, collection: str, index: Any = None) -> dict[Oid, int]:
        result, _ = self.connection.call("short_packs", collection=collection)
        return {_oid(pack): _count(size)
                for pack, size in _expect(result, dict, "short_packs").items()}

    def check_copies(self, packs: set[Oid], collection: str) -> None:
        self.connection.call("check_copies", collection=collection,
                             packs=sorted(p.hex for p in packs))

    # -- refs ---------------------------------------------------------------------------------

    def read_ref(self, name: str) -> Oid | None:
        result, _ = self.connection.call("ref.read", name=name)
        head = _oid(result) if result else None
        if head is not None and self.known is not None:
            self.known.saw_head(name, head, self._descends)
        return head

    def update_ref(self, name: str, new: Oid, expected: Oid | None, *, committer: Signature,
                   message: str, check_old: bool = True) -> Oid | None:
        if self.collection_keyring(name) is not None:
            from vst.store import reflog_view

            committer, message = reflog_view(committer, message)
        result, _ = self.connection.call(
            "ref.update", name=name, new=new.hex, expected=expected.hex if expected else None,
            check_old=check_old, committer=committer.encode().decode("utf-8", "replace"),
            message=message)
        if self.known is not None:
            self.known.moved(name, new)
        return _oid(result) if result else None

    def reflog(self, name: str) -> list[ReflogEntry]:
        from vst.store import ReflogEntry

        _, data = self.connection.call("reflog", limit=64 * 1024 * 1024, name=name)
        try:
            return [ReflogEntry.decode(bytes(line)) for line in data.split(b"\n") if line]
        except (ValueError, VstError):
            raise ProtocolError(f"'{self.path}' sent a malformed reflog") from None

    def _descends(self, commit: Oid, ancestor: Oid) -> bool:
        from vst.store import descends

        return descends(self.odb, commit, ancestor)


def _local_only(url: str) -> UsageError:
    return UsageError(f"this command works on a local store only, and '{url}' is reached "
                      "over SSH", hint="run it on the machine that holds the store")


def _expect(result: Any, kind: type, op: str) -> Any:
    """``result`` of ``op`` if it is a ``kind``; a server that sends something else is
    answered with a protocol error, not a crash."""
    if not isinstance(result, kind):
        raise ProtocolError(f"the server sent a malformed answer to '{op}'")
    return result


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError("the server sent a malformed count")
    return value


def _oid(text: object) -> Oid:
    if not isinstance(text, str) or not is_full_hex(text):
        raise ProtocolError("the server sent a malformed object id")
    return Oid.from_hex(text)
