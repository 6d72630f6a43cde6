"""``vst serve --stdio``: one store, served over stdin and stdout to one client.

Run by ``ssh`` (docs/ssh.md). It holds no key and sees no plaintext: packs arrive sealed,
are checked against their names (and, unencrypted, record by record: others dedup against
them) and written to the store's volumes by the collection's policy; records leave as they
are stored, for the client to open and verify.

What the server allows is fixed when it starts, by its own command line: ``--restrict-to``
(only stores under these folders, after resolving symlinks), ``--append-only`` (refs
only move forward, nothing is overwritten; no operation deletes anything in any mode) and
``--read-only``. Under a forced command (``command="..."`` in ``authorized_keys``) the
store asked for comes from ``SSH_ORIGINAL_COMMAND``, where a client may add
``--read-only`` or ``--append-only`` and nothing else: it can narrow the modes, never
widen them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, BinaryIO, NamedTuple

import blake3

from vst import __version__
from vst.errors import (
    CorruptPack,
    NotAStore,
    ProtocolError,
    Refused,
    UsageError,
    VstError,
)
from vst.objects.oid import Oid, is_full_hex
from vst.ssh.protocol import PROTOCOL, Channel, error_message, field, widen_pipe

MAX_IDS = 65536  # ids in one batch ("have", "objects", "settle")
MAX_RECORDS_OUT = 16 * 1024 * 1024  # bytes of records in one "objects" answer (at least one)
MAX_PACK = 1024**3 + 64 * 1024 * 1024  # a pack's target size is at most 1 GiB, plus a record
MAX_KEYRING = 1024 * 1024
MAX_REFLOG_OUT = 64 * 1024 * 1024
MAX_PACK_IN_MEMORY = 64 * 1024 * 1024  # larger packs are received into a spool file
STORING = 2  # packs received and waiting to be made durable
# Requests answered at once, while packs are still being stored: they do not depend on
# those packs (a client knows what it is sending; the others read other files).
UNORDERED = frozenset({"have", "collections", "keyrings", "keyring.read", "ref.read",
                       "policy"})


@dataclass(frozen=True)
class Modes:
    read_only: bool = False
    append_only: bool = False
    restrict_to: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        return [name for name, on in (("read-only", self.read_only),
                                      ("append-only", self.append_only)) if on]


def requested(command_path: str | None, modes: Modes) -> tuple[str, Modes]:
    """The store path to serve and the modes, from the server's own arguments and, under
    a forced command, what the client asked for (``SSH_ORIGINAL_COMMAND``)."""
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    if original is None:
        if command_path is None:
            raise UsageError("no store to serve: give its path")
        return command_path, modes
    try:
        words = shlex.split(original)
    except ValueError as exc:
        raise Refused(f"cannot parse the command asked for: {exc}") from None
    if len(words) < 2 or words[1] != "serve":
        raise Refused("only 'vst serve --stdio PATH' may be run with this key")
    path = None
    for word in words[2:]:
        if word == "--stdio":
            continue
        if word == "--read-only":
            modes = replace(modes, read_only=True)
        elif word == "--append-only":
            modes = replace(modes, append_only=True)
        elif word.startswith("-"):
            # --restrict-to, --debug, anything else: the key's command line decides those.
            raise Refused(f"option '{word}' may not be asked for with this key")
        elif path is not None:
            raise Refused("more than one store path asked for")
        else:
            path = word
    if command_path is not None:
        return command_path, modes  # the key names the one store it may use
    if path is None:
        raise Refused("no store path asked for")
    return path, modes


def confine(path: str, roots: tuple[str, ...]) -> str:
    """``path`` with every symlink resolved, refused unless inside one of ``roots``
    (also resolved): compared by path components, never by string prefix."""
    real = os.path.realpath(os.path.expanduser(path))
    if roots:
        for root in roots:
            real_root = os.path.realpath(os.path.expanduser(root))
            if os.path.commonpath([real, real_root]) == real_root:
                break
        else:
            raise Refused(f"'{path}' is outside the folders this key may use")
    return real


class Server:
    def __init__(self, channel: Channel, store: Any, real_path: str, modes: Modes) -> None:
        self.channel = channel
        self.store = store
        self.real_path = real_path
        self.modes = modes
        self.append_only = modes.append_only or store.append_only
        self._send_lock = threading.Lock()  # warnings come from the storing thread too
        self._storing = ThreadPoolExecutor(1, thread_name_prefix="vst-serve-store")
        self._storing_slots = threading.BoundedSemaphore(STORING)
        self._stores: set[Future[Any]] = set()  # packs being made durable
        self._request = 0  # the id of the request being handled (for its progress)
        self.ops: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
            "collections": (self.collections, False),
            "keyrings": (self.keyrings, False),
            "keyring.read": (self.keyring_read, False),
            "ref.read": (self.ref_read, False),
            "reflog": (self.reflog, False),
            "have": (self.have, False),
            "objects": (self.objects, False),
            "prefix": (self.prefix, False),
            "packs_of": (self.packs_of, False),
            "policy": (self.policy, False),
            "short_packs": (self.short_packs, False),
            "scrub": (self.scrub, False),
            "check_copies": (self.check_copies, False),
            "collection.create": (self.collection_create, True),
            "keyring.write": (self.keyring_write, True),
            "ref.update": (self.ref_update, True),
            "pack.put": (self.pack_put, True),
            "settle": (self.settle, True),
            "replicate": (self.replicate, False),  # read-only: --dry-run only
        }

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Answer requests until the client ends the session. Each answer carries the id
        of its request, so a pack can be made durable while the next requests come in and
        are answered; its answer leaves as soon as it is stored."""
        try:
            self._serve()
        finally:
            self._storing.shutdown(wait=True)  # the packs under way are answered

    def _serve(self) -> None:
        while True:
            message = self.channel.receive()
            if message is None:
                return
            op, request = message.get("op"), message.get("id")
            if not isinstance(request, int) or isinstance(request, bool):
                request = None
            try:
                if request is None:
                    raise ProtocolError("a request without an id")
                handler, writes = self.ops.get(op, (None, False)) if isinstance(op, str) \
                    else (None, False)
                if handler is None:
                    self.channel.drain(message, 0)
                    raise ProtocolError(f"unknown operation {str(op)[:40]!r}")
                if writes and self.modes.read_only:
                    self._skip_data(message)
                    raise Refused("this store is served read-only")
                if op not in UNORDERED:
                    # Packs first, refs last: what comes after packs sees them stored
                    # and indexed.
                    wait(list(self._stores))
                self._check_still_there()
                self._request = request
                answer = handler(message)
            except ProtocolError as exc:
                # The stream may be out of step: say why, and end the session.
                self._reply(request, exc)
                return
            except VstError as exc:
                answer = exc
            except Exception as exc:  # a bug: the client hears of it, the session ends
                self._reply(request, _internal_error(exc))
                raise
            if isinstance(answer, Future):
                assert request is not None
                self._stores.add(answer)
                answer.add_done_callback(partial(self._stored, request))
            else:
                self._reply(request, answer)

    def _stored(self, request: int, future: Future[Any]) -> None:
        """A pack is durable (or failed): answer its request, from the storing thread."""
        self._stores.discard(future)
        try:
            answer = future.result()
        except VstError as exc:
            answer = exc
        except Exception as exc:  # a bug while storing a pack: said, not hidden
            answer = _internal_error(exc)
        self._reply(request, answer)

    def _reply(self, request: int | None, answer: Any) -> None:
        tag = {} if request is None else {"id": request}
        if isinstance(answer, VstError):
            self._send({**error_message(answer), **tag})
            return
        try:
            with self._send_lock:
                if isinstance(answer, _WithData):
                    self.channel.send({**tag, "ok": answer.result}, answer.data)
                else:
                    self.channel.send({**tag, "ok": answer})
        except VstError:
            pass  # the client is gone: the next receive() ends the session

    def _send(self, message: dict[str, Any]) -> None:
        try:
            with self._send_lock:
                self.channel.send(message)
        except VstError:
            pass  # the client is gone: nobody to tell

    def _skip_data(self, message: dict[str, Any]) -> None:
        self.channel.drain(message, MAX_PACK)

    def _check_still_there(self) -> None:
        # The store's folder (or a folder above it) swapped for a symlink after the start
        # would send the next operation elsewhere: the session ends instead.
        if os.path.realpath(self.real_path) != self.real_path:
            raise ProtocolError("the store's path changed during the session")

    def warn(self, text: str) -> None:
        self._send({"warn": text})

    # -- reading ------------------------------------------------------------------------------

    def collections(self, _message: dict[str, Any]) -> Any:
        # As data, not in the answer itself: a store may hold more collections than one
        # message can list.
        listing = [{"name": c.name, "head": c.head.hex if c.head else None,
                    "keyring": self.store.collection_keyring(c.name),
                    "policy": self.store.collection_policy(c.name)}
                   for c in self.store.collections()]
        return _WithData(None, json.dumps(listing, separators=(",", ":")).encode())

    def keyrings(self, _message: dict[str, Any]) -> Any:
        return self.store.keyrings.names()

    def keyring_read(self, message: dict[str, Any]) -> Any:
        file = self.store.keyrings.read(field(message, "name", str))
        return _WithData(None, file.encode())

    def ref_read(self, message: dict[str, Any]) -> Any:
        head = self.store.read_ref(field(message, "name", str))
        return head.hex if head else None

    def reflog(self, message: dict[str, Any]) -> Any:
        entries = self.store.reflog(field(message, "name", str))
        data = b"".join(entry.encode() for entry in entries)
        if len(data) > MAX_REFLOG_OUT:
            raise Refused("the reflog is too large to send")
        return _WithData(None, data)

    def _ids(self, message: dict[str, Any]) -> list[Oid]:
        raw = self.channel.body(message, 32 * MAX_IDS)
        if len(raw) % 32:
            raise ProtocolError("a batch of ids is not a multiple of 32 bytes")
        return [Oid(raw[i:i + 32]) for i in range(0, len(raw), 32)]

    def have(self, message: dict[str, Any]) -> Any:
        ids = self._ids(message)
        present = self.store.odb.has_many(ids)
        return _WithData(None, bytes(oid in present for oid in ids))

    def objects(self, message: dict[str, Any]) -> Any:
        ids = self._ids(message)
        found = self.store.odb.read_sealed_many(ids, MAX_RECORDS_OUT)
        keyrings: list[str | None] = []
        sizes: list[list[int]] = []
        for item in found:
            if item is None:
                sizes.append([-1, 0])
                continue
            keyring = item[1].hex() if item[1] else None
            if keyring not in keyrings:
                keyrings.append(keyring)
            sizes.append([len(item[0]), keyrings.index(keyring)])
        body = b"".join(item[0] for item in found if item is not None)
        return _WithData({"records": sizes, "keyrings": keyrings}, body)

    def prefix(self, message: dict[str, Any]) -> Any:
        return self.store.odb.resolve_prefix(field(message, "prefix", str)).hex

    def packs_of(self, message: dict[str, Any]) -> Any:
        return [pack.hex for pack in self.store.odb.packs_holding(self._ids(message))]

    def check_copies(self, message: dict[str, Any]) -> Any:
        packs = field(message, "packs", list)
        if len(packs) > MAX_IDS or not all(isinstance(p, str) for p in packs):
            raise ProtocolError("malformed list of packs")
        self.store.check_copies({_oid(p) for p in packs}, field(message, "collection", str))
        return None

    def policy(self, message: dict[str, Any]) -> Any:
        policy = self.store.policy_of(field(message, "collection", str, optional=True))
        return {"name": policy.name, "volumes": list(policy.volumes), "copies": policy.copies}

    def short_packs(self, message: dict[str, Any]) -> Any:
        short = self.store.short_packs(field(message, "collection", str))
        return {pack.hex: size for pack, size in short.items()}

    def scrub(self, message: dict[str, Any]) -> Any:
        """Scrub the volumes here (needs no key), with progress sent as it goes."""
        from vst.porcelain.scrub import scrub

        subset = message.get("subset")
        if subset is not None and not (isinstance(subset, list) and len(subset) == 2
                                       and all(isinstance(n, int) for n in subset)):
            raise ProtocolError("malformed subset")
        result = scrub(self.store, volume=field(message, "volume", str, optional=True),
                       subset=tuple(subset) if subset else None,
                       resume=bool(message.get("resume")), progress=self._progress_add)
        return dataclasses.asdict(result)

    def replicate(self, message: dict[str, Any]) -> Any:
        from vst.porcelain.replicate import replicate

        dry_run = bool(message.get("dry_run"))
        if self.modes.read_only and not dry_run:
            raise Refused("this store is served read-only", hint="use --dry-run")
        collections = field(message, "collections", list)
        if not all(isinstance(c, str) for c in collections):
            raise ProtocolError("malformed list of collections")
        result = replicate(self.store, collections, dry_run=dry_run,
                           on_start=self._progress_total, on_bytes=self._progress_add)
        return dataclasses.asdict(result)

    def _progress_total(self, total: int) -> None:
        self._send({"id": self._request, "progress": {"total": total}})

    def _progress_add(self, done: int) -> None:
        self._send({"id": self._request, "progress": {"add": done}})

    # -- writing ------------------------------------------------------------------------------

    def collection_create(self, message: dict[str, Any]) -> Any:
        self.store.create_collection(field(message, "name", str),
                                     keyring=field(message, "keyring", str, optional=True))
        return None

    def keyring_write(self, message: dict[str, Any]) -> Any:
        from vst.crypto.keyring import KeyringFile

        new = bool(message.get("new"))
        data = self.channel.body(message, MAX_KEYRING)
        if self.append_only and not new:
            raise Refused("the store is append-only: a keyring file is never rewritten")
        file = KeyringFile.decode(data, "the keyring sent")
        if file.store_id != self.store.store_id:
            raise Refused("the keyring sent belongs to another store")
        with self.store.keyrings.locked():
            self.store.keyrings.write(file, new=new)
        return None

    def ref_update(self, message: dict[str, Any]) -> Any:
        from vst.objects.commit import Signature

        name = field(message, "name", str)
        new = _oid(field(message, "new", str))
        expected_hex = field(message, "expected", str, optional=True)
        check_old = bool(message.get("check_old", True))
        if self.append_only and not check_old:
            raise Refused("the store is append-only: a ref moves only from the head the "
                          "client names")
        try:
            committer = Signature.decode(field(message, "committer", str).encode())
        except (ValueError, VstError):
            raise ProtocolError("malformed committer") from None
        problem = committer.problem()
        if problem:
            raise UsageError(f"committer: {problem}")
        was_append_only = self.store.append_only
        self.store.append_only = self.append_only
        try:
            previous = self.store.update_ref(
                name, new, _oid(expected_hex) if expected_hex else None, committer=committer,
                message=field(message, "message", str), check_old=check_old)
        finally:
            self.store.append_only = was_append_only
        return previous.hex if previous else None

    def pack_put(self, message: dict[str, Any]) -> Any:
        pack = _oid(field(message, "pack", str))
        collection = field(message, "collection", str, optional=True)
        size = message.get("data", 0)
        if size > MAX_PACK:
            raise ProtocolError(f"a pack of {size} bytes is over the {MAX_PACK}-byte limit")
        try:
            keyring = self._collection_keyring_id(collection)
        except VstError:
            self.channel.drain(message, MAX_PACK)
            raise
        odb = self.store.odb
        if odb.index.has_pack(pack):
            # Same name, same bytes: nothing to write (and nothing is ever overwritten).
            self.channel.drain(message, MAX_PACK)
            return {"volumes": len(odb.index.pack_volumes(pack)), "stored": False}
        hasher = blake3.blake3()
        if size <= MAX_PACK_IN_MEMORY:
            # Received and checked in memory, written out by the storing thread while
            # the next pack comes in; at most STORING packs wait for it.
            data = bytearray()

            def take(piece: bytes) -> None:
                hasher.update(piece)
                data.extend(piece)
            self.channel.read_data(message, MAX_PACK, take)
            if Oid(hasher.digest()) != pack:
                raise CorruptPack(f"pack {pack}: the bytes sent do not match its name")
            index = _checked_pack(lambda offset, length: data[offset:offset + length],
                                  size, pack, keyring)
            spool: tuple[int, str] | None = None
        else:
            fd, path = self.store.fs.open_spool(odb.spool_dir)
            try:
                def write(piece: bytes) -> None:
                    hasher.update(piece)
                    self.store.fs.write_all(fd, piece)
                self.channel.read_data(message, MAX_PACK, write)
                if Oid(hasher.digest()) != pack:
                    raise CorruptPack(f"pack {pack}: the bytes sent do not match its name")
                with open(path, "rb") as spooled:
                    index = _checked_pack(lambda offset, length: os.pread(
                        spooled.fileno(), length, offset), size, pack, keyring)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            spool = (fd, path)
        from vst.objects.odb import _Spooled

        placement = self.store.placement(collection)

        def store() -> Any:
            try:
                if spool is None:
                    fd, path = self.store.fs.open_spool(odb.spool_dir)
                    try:
                        self.store.fs.write_all(fd, data)
                    except BaseException:
                        os.close(fd)
                        os.unlink(path)
                        raise
                else:
                    fd, path = spool
                volumes = odb.store_spooled(_Spooled(pack, fd, path, size, index), placement)
                odb.index.add_packs([(pack, size, index, volumes)], owner=collection)
            finally:
                self._storing_slots.release()
            return {"volumes": len(volumes), "copies": placement.copies,
                    "policy": placement.policy, "stored": True}
        self._storing_slots.acquire()
        return self._storing.submit(store)

    def _collection_keyring_id(self, collection: str | None) -> bytes | None:
        """The keyring id the packs of ``collection`` must name (None: unencrypted)."""
        if collection is None:
            return None
        keyring = self.store.collection_keyring(collection)
        return self.store.keyrings.read(keyring).keyring_id if keyring else None

    def settle(self, message: dict[str, Any]) -> Any:
        collection = field(message, "collection", str, optional=True)
        if collection is not None:
            self.store.collection_policy(collection)  # exists
        reused = set(self._ids(message))
        short = self.store.odb.settle(reused, self.store.placement(collection), collection)
        return {pack.hex: copies for pack, copies in short.items()}


def _internal_error(exc: Exception) -> VstError:
    return VstError(f"internal error on the server: {type(exc).__name__}: {exc}",
                    hint="run 'vst serve' there with --debug, and report it")


class _WithData(NamedTuple):
    """An answer with data."""

    result: Any
    data: bytes


def _oid(text: str) -> Oid:
    if not is_full_hex(text):
        raise ProtocolError("malformed object id")
    return Oid.from_hex(text)


def _checked_pack(load: Callable[[int, int], bytes | bytearray], size: int, pack: Oid,
                  keyring: bytes | None) -> Any:
    """The index of a pack read through ``load(offset, length)``, checked as a reader would
    (header, footer, index), naming ``keyring`` (None: an unencrypted pack), and its
    records: in an unencrypted pack every record must be unencrypted and hold what its id
    says (other collections dedup against it); in a keyring's pack every record must be
    framed as an encrypted one (only the keyring's holders can open it)."""
    from vst.crypto.records import OVERHEAD
    from vst.objects.pack import KEYED_MAGIC, MAGIC, MIN_PACK_SIZE, read_index
    from vst.objects.seal import HEADER, INNER, NO_KEYRING, PLAIN, read_header, verify_record

    name = pack.hex
    if size < MIN_PACK_SIZE:
        raise CorruptPack(f"pack {name}: too small ({size} bytes)")
    index = read_index(lambda offset, length: bytes(load(offset, length)), size, name)
    if index.keyring_id != (keyring or NO_KEYRING):
        raise CorruptPack(f"pack {name}: sealed for another keyring than the collection's")
    if bytes(load(0, 8)) != (KEYED_MAGIC if keyring else MAGIC):
        raise CorruptPack(f"pack {name}: header and footer disagree on the version")
    where = f"pack {name} as sent"
    for entry in index:
        if keyring:  # the framing is all that can be checked: its header will do
            header = read_header(bytes(load(entry.offset, HEADER.size)), where)
            if not header.encrypted:
                raise CorruptPack(f"pack {name}: object {entry.oid} is not encrypted in a "
                                  "keyring's pack")
            if header.oid != entry.oid or entry.length < HEADER.size + OVERHEAD + INNER.size:
                raise CorruptPack(f"pack {name}: object {entry.oid} is not framed as an "
                                  "encrypted record")
            continue
        record = bytes(load(entry.offset, entry.length))
        if read_header(record, where).encrypted:
            raise CorruptPack(f"pack {name}: object {entry.oid} is encrypted in an "
                              "unencrypted pack")
        verify_record(record, entry.oid, PLAIN, where)
    return index


def serve_stdio(path: str | None, modes: Modes, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None) -> None:
    """Serve one session on stdin/stdout; errors before the greeting are sent as the
    greeting (the client shows them), and end the session."""
    channel = Channel(stdin or sys.stdin.buffer, stdout or sys.stdout.buffer, "the client")
    widen_pipe(channel.reader)
    widen_pipe(channel.writer)
    try:
        store_path, modes = requested(path, modes)
        real = confine(store_path, modes.restrict_to)
        from vst.store import Store

        if not os.path.isfile(os.path.join(real, "config.toml")):
            raise NotAStore(f"'{store_path}' is not a vst store")
        server_warnings: list[str] = []
        store = Store.open(real, warn=server_warnings.append)
    except VstError as exc:
        channel.send(error_message(exc))
        return
    server = Server(channel, store, real, modes)
    store.warn = server.warn
    try:
        channel.send({"vst": "serve", "protocols": [PROTOCOL], "version": __version__})
        hello = channel.receive()
        if hello is None:
            return
        if hello.get("op") != "hello" or hello.get("protocol") != PROTOCOL:
            channel.send(error_message(ProtocolError(
                f"this server speaks protocol {PROTOCOL} only")))
            return
        channel.send({"ok": {
            "store_id": store.store_id,
            "modes": modes.describe() + (["append-only"] if store.append_only
                                         and not modes.append_only else []),
            "pack_size": store.pack_size,
            "compression_level": store.compression_level,
            "chunking": store.chunk_params._asdict(),
        }})
        for text in server_warnings:
            server.warn(text)
        server.run()
    except VstError as exc:
        server._send(error_message(exc))
    finally:
        store.close()
