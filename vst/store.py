"""A store: its config, collections, refs (moved by compare-and-swap), reflogs, volumes and
object database.

Layout of a store directory (see docs/format.md):

    config.toml              store id, format, chunking and pack parameters, volumes
    collections/NAME.toml    one file per collection (exists before its first commit)
    refs/NAME                the collection's head: hex commit id + LF
    logs/NAME                reflog: "<old> <new> <committer> <time> <tz>\\t<message>\\n"
    locks/NAME.lock          flock()ed while a ref moves
    keys/  hooks/            key envelopes, hooks
    index.sqlite             object index (a cache)
    volumes/default/         the embedded local volume of a new store

Every volume mirrors config.toml, collections/, refs/, logs/ and keys/ under ``meta/``, so a
store can be rebuilt from any one volume (invariant 5).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from vst.errors import (
    AlreadyExists,
    CorruptConfig,
    CorruptRef,
    NotAStore,
    NotFound,
    RefConflict,
    Refused,
    UnsupportedFormat,
    UsageError,
    VolumeError,
    VstError,
    WrongKey,
    WrongVolume,
)
from vst.fsio import DEFAULT_FS, FileSystem, lock_file, read_file
from vst.objects.chunking import ChunkParams
from vst.objects.ids import PLAIN_IDS
from vst.objects.oid import ZERO_OID, Oid, is_full_hex
from vst.policy import (
    DEFAULT_POLICY,
    Policy,
    check_name,
    check_policy_name,
    parse_policies,
    policy_problem,
)
from vst.remotes.local import LocalVolume
from vst.remotes.volume import Volume

if TYPE_CHECKING:
    from vst.known import KnownState
    from vst.objects.commit import Signature

STORE_FORMAT = 1
VOLUME_FORMAT = 1
DESCRIPTOR = "volume.toml"
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
DEFAULT_COMPRESSION = 2  # zstd: on text 15% faster than 3 for 7% more bytes
LOCK_TIMEOUT = 10.0
_COLLECTION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}\Z")
# The keys a [volumes.NAME] table may hold besides url and id: where to reach an S3
# volume, never how to authenticate (boto3's chain supplies credentials).
S3_OPTIONS = ("endpoint_url", "region", "profile")

Warn = Callable[[str], None]


def _ignore(_message: str) -> None:
    pass


def check_volume_name(name: str) -> str:
    return check_name(name, "volume")


def check_collection_name(name: str) -> str:
    if not _COLLECTION_RE.match(name) or name.endswith(".lock") or name.endswith(".toml") \
            or ".." in name or name == "HEAD":
        raise UsageError(f"invalid collection name '{name}'",
                         hint="use letters, digits, '.', '_' and '-', starting with a letter, "
                              "digit or '_'")
    return name


class VolumeSpec(NamedTuple):
    """A volume as config.toml describes it. ``url`` is an absolute path for a local
    volume (a relative one in the config is taken from the store) or ``s3://BUCKET/PREFIX``."""

    name: str
    url: str
    volume_id: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None

    @property
    def kind(self) -> str:
        return "s3" if self.url.startswith("s3://") else "local"


def open_volume(spec: VolumeSpec, fs: FileSystem = DEFAULT_FS) -> Volume:
    """The backend for ``spec``. Makes no request: an unreachable volume fails on first use.
    boto3 is imported only for an S3 volume."""
    if spec.kind == "s3":
        from vst.remotes.s3 import S3Volume

        return S3Volume(spec.url, endpoint_url=spec.endpoint_url, region=spec.region,
                        profile=spec.profile)
    return LocalVolume(spec.url, fs)


class ReflogEntry(NamedTuple):
    old: Oid
    new: Oid
    committer: Signature
    message: str

    def encode(self) -> bytes:
        message = self.message.replace("\n", " ")
        return f"{self.old} {self.new} ".encode() + self.committer.encode() + \
            b"\t" + message.encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> ReflogEntry:
        from vst.objects.commit import Signature

        head, _, message = line.partition(b"\t")
        old, new, who = head.split(b" ", 2)
        return cls(Oid.from_hex(old.decode()), Oid.from_hex(new.decode()),
                   Signature.decode(who), message.decode("utf-8", "replace"))


class Collection(NamedTuple):
    name: str
    head: Oid | None


def _dumps(table: dict[str, Any]) -> str:
    import tomli_w  # only writers need it: keeps read-only commands quick to start

    return tomli_w.dumps(table)


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex


def _interrupted_move(last: ReflogEntry, head: Oid | None) -> bool:
    """A last reflog line for a move that a crash stopped before the ref was written (the
    line is appended first, as git does): it records a head that never was."""
    return last.new != head and last.old == (head or ZERO_OID)


def _parse_toml(data: bytes, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorruptConfig(f"cannot parse '{name}': {exc}") from None


def _get(table: dict[str, Any], section: str, key: str, kind: type, default: Any, name: str) -> Any:
    values = table.get(section, {})
    if not isinstance(values, dict):
        raise CorruptConfig(f"'{name}': {section} must be a table")
    value = values.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptConfig(f"'{name}': {section}.{key} must be a {kind.__name__}")
    return value


class Store:
    """An open store. Create with ``Store.init`` or ``Store.open``."""

    def __init__(self, path: str, config: dict[str, Any], *, fs: FileSystem = DEFAULT_FS,
                 warn: Warn = _ignore) -> None:
        self.path = path
        self.config = config
        self.fs = fs
        self.warn = warn
        name = self._file("config.toml")
        store = config.get("store")
        if not isinstance(store, dict):
            raise CorruptConfig(f"'{name}': no [store] table")
        if "format" not in store or "id" not in store:
            raise CorruptConfig(f"'{name}': [store] needs a format and an id")
        store_format = _get(config, "store", "format", int, 0, name)
        if store_format != STORE_FORMAT:
            raise UnsupportedFormat(f"store '{path}' has format {store_format}; this vst "
                                    f"reads format {STORE_FORMAT}")
        self.store_id = _get(config, "store", "id", str, "", name)
        # Refs only move forward (to a descendant of the head): see set_append_only.
        self.append_only = _get(config, "store", "append_only", bool, False, name)
        defaults = ChunkParams()
        self.chunk_params = ChunkParams(
            _get(config, "chunking", "min", int, defaults.min, name),
            _get(config, "chunking", "avg", int, defaults.avg, name),
            _get(config, "chunking", "max", int, defaults.max, name))
        problem = self.chunk_params.problem()
        if problem:
            raise CorruptConfig(f"'{name}': {problem}")
        self.pack_size = _get(config, "pack", "target_size", int, DEFAULT_PACK_SIZE, name)
        self.compression_level = _get(config, "pack", "compression_level", int,
                                      DEFAULT_COMPRESSION, name)
        if not 1024 <= self.pack_size <= 1024**3 or not 0 <= self.compression_level <= 22:
            raise CorruptConfig(f"'{name}': pack.target_size or pack.compression_level "
                                "out of range")
        self._volume_specs = self._read_volume_specs(name)
        self._policies = parse_policies(config, tuple(v.name for v in self._volume_specs), name)
        from vst.keyrings import Keyrings

        # Set ``keyrings.source`` to open encrypted collections (the CLI sets the user's).
        self.keyrings = Keyrings(self._file("keys"), self.store_id, fs, self._mirror,
                                 self._unmirror)
        # What this client remembers of the store (vst/known.py); the CLI sets it.
        self.known: KnownState | None = None
        self._volumes: list[Any] | None = None
        # Volumes found unreachable or not this store's when opened: name -> why.
        self.unavailable: dict[str, str] = {}
        self._backends: dict[str, Volume] = {}
        self._odb: Any = None

    # -- creating and opening ---------------------------------------------------------------

    @classmethod
    def init(cls, path: str, *, fs: FileSystem = DEFAULT_FS, warn: Warn = _ignore,
             chunk_params: ChunkParams | None = None, pack_size: int = DEFAULT_PACK_SIZE,
             compression_level: int = DEFAULT_COMPRESSION) -> Store:
        path = os.path.abspath(path)
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise AlreadyExists(f"'{path}' already exists and is not an empty directory")
        params = chunk_params or ChunkParams()
        problem = params.problem()
        if problem:
            raise UsageError(problem)
        store_id = _new_id()
        config = {
            "store": {"format": STORE_FORMAT, "id": store_id},
            "chunking": {"min": params.min, "avg": params.avg, "max": params.max},
            "pack": {"target_size": pack_size, "compression_level": compression_level},
            "volumes": {"default": {"url": "volumes/default", "id": _new_id()}},
        }
        for sub in ("collections", "refs", "logs", "locks", "keys", "hooks", "tmp",
                    "volumes/default"):
            fs.makedirs(os.path.join(path, sub))
        store = cls(path, config, fs=fs, warn=warn)
        for spec in store._volume_specs:
            store._write_descriptor(open_volume(spec, fs), spec.volume_id)
        # config.toml last: a directory without it is not (yet) a store.
        store._write_config()
        return store

    @classmethod
    def open(cls, path: str, *, fs: FileSystem = DEFAULT_FS, warn: Warn = _ignore) -> Store:
        path = os.path.abspath(path)
        config_path = os.path.join(path, "config.toml")
        if not os.path.isfile(config_path):
            raise NotAStore(f"not a vst store: '{path}'",
                            hint="create one with 'vst store init PATH'")
        return cls(path, _parse_toml(read_file(config_path), config_path), fs=fs, warn=warn)

    def _file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def _write_config(self) -> None:
        data = _dumps(self.config).encode()
        self.fs.write_file(self._file("config.toml"), data)
        self._mirror("config.toml", data)

    # The sections of config.toml that `vst config --store` may change. Everything else
    # ([store], [chunking], [pack], [volumes]...) fixes the format: changing chunking would
    # break dedup, changing an id would orphan volumes. An allow-list, so that sections added
    # later are protected until someone decides otherwise (docs/format.md, "config files").
    USER_SECTIONS = frozenset({"user", "core", "commit", "hooks"})

    def edit_user_config(self, edit: Callable[[dict[str, Any]], Any]) -> Any:
        """Change the user-level sections (USER_SECTIONS) of config.toml.

        Under the store's config lock, config.toml is read again (another process may have
        changed it), ``edit`` changes that table in place and returns a result, and the table
        is written durably and mirrored to every volume (unless ``edit`` changed nothing). An
        edit that touches any other section raises UsageError and nothing is written.
        """
        import copy

        name = self._file("config.toml")
        # Not a valid collection name (those cannot start with '.'), so it cannot collide.
        with self._ref_lock(".config", "the store's config"):
            table = _parse_toml(read_file(name), name)
            before = copy.deepcopy(table)
            result = edit(table)
            changed = {key for key in before.keys() | table.keys()
                       if before.get(key) != table.get(key)}
            if changed - self.USER_SECTIONS:
                raise UsageError(f"cannot change [{sorted(changed - self.USER_SECTIONS)[0]}] "
                                 "in the store's config.toml",
                                 hint="only these sections can be set there: "
                                      + ", ".join(sorted(self.USER_SECTIONS)))
            if changed:
                type(self)(self.path, table, fs=self.fs)  # still a valid config
                previous, self.config = self.config, table
                try:
                    self._write_config()
                except BaseException:
                    self.config = previous
                    raise
        return result

    # -- volumes ------------------------------------------------------------------------------

    def _read_volume_specs(self, name: str) -> list[VolumeSpec]:
        volumes = self.config.get("volumes", {})
        if not isinstance(volumes, dict) or not volumes:
            raise CorruptConfig(f"'{name}': no volumes configured")
        return [self._volume_spec(vol_name, table, name)
                for vol_name, table in sorted(volumes.items())]

    def _volume_spec(self, vol_name: str, table: Any, name: str) -> VolumeSpec:
        if not isinstance(table, dict) or not isinstance(table.get("url"), str) \
                or not isinstance(table.get("id"), str):
            raise CorruptConfig(f"'{name}': volume '{vol_name}' needs a url and an id")
        url = table["url"]
        options: dict[str, str] = {}
        for key in S3_OPTIONS:
            value = table.get(key)
            if value is not None and not isinstance(value, str):
                raise CorruptConfig(f"'{name}': volumes.{vol_name}.{key} must be a string")
            if value:
                options[key] = value
        if url.startswith("s3://"):
            from vst.remotes.s3 import parse_s3_url

            try:
                parse_s3_url(url)
            except UsageError as exc:
                raise CorruptConfig(f"'{name}': volume '{vol_name}': {exc.message}") from None
        elif "://" in url:
            raise UnsupportedFormat(f"'{name}': volume '{vol_name}' at '{url}': this version "
                                    "of vst supports local directories and s3:// volumes only")
        else:
            if options:
                raise CorruptConfig(f"'{name}': volume '{vol_name}': "
                                    f"{', '.join(sorted(options))} apply to s3:// volumes only")
            url = os.path.join(self.path, url)
        return VolumeSpec(vol_name, url, table["id"], **options)

    def volume_specs(self) -> list[VolumeSpec]:
        """The configured volumes, in the order of their names; nothing is opened."""
        return list(self._volume_specs)

    def _write_descriptor(self, backend: Volume, volume_id: str) -> None:
        descriptor = {"volume": {"format": VOLUME_FORMAT, "id": volume_id,
                                 "store": self.store_id}}
        backend.store(DESCRIPTOR, _dumps(descriptor).encode())

    def _check_descriptor(self, backend: Volume, name: str, volume_id: str) -> None:
        try:
            raw = backend.load(DESCRIPTOR)
        except NotFound:
            raise WrongVolume(f"volume '{name}' at '{backend.url}' is not a vst volume "
                              f"(no {DESCRIPTOR})") from None
        table = _parse_toml(raw, f"{backend.url}/{DESCRIPTOR}").get("volume", {})
        if not isinstance(table, dict) or table.get("store") != self.store_id \
                or table.get("id") != volume_id:
            raise WrongVolume(f"volume '{name}' at '{backend.url}' belongs to another store "
                              f"or is another volume", hint="check the disk or the URL")

    def backend(self, spec: VolumeSpec) -> Volume:
        """The backend of one of the store's volumes, opened once (an S3 client is costly to
        make, and a mirror write happens on every ref move). Not checked: see volumes()."""
        if spec.name not in self._backends:
            self._backends[spec.name] = open_volume(spec, self.fs)
        return self._backends[spec.name]

    def claim_volume(self, backend: Volume) -> str:
        """Make ``backend`` a volume of this store, before it is added to config.toml: write
        a descriptor with a new volume id and return the id. A volume another store owns is
        refused (WrongVolume), one this store already uses too (AlreadyExists); the
        descriptor of an add that was interrupted before config.toml changed is taken over,
        so running the add again resumes it."""
        try:
            raw = backend.load(DESCRIPTOR)
        except NotFound:
            volume_id = _new_id()
            self._write_descriptor(backend, volume_id)
            return volume_id
        table = _parse_toml(raw, f"{backend.url}/{DESCRIPTOR}").get("volume", {})
        if not isinstance(table, dict) or table.get("store") != self.store_id \
                or not isinstance(table.get("id"), str):
            raise WrongVolume(f"'{backend.url}' is a volume of another store",
                              hint="a volume belongs to one store; use another prefix or "
                                   "directory")
        for spec in self._volume_specs:
            if spec.volume_id == table["id"]:
                raise AlreadyExists(f"'{backend.url}' is already this store's volume "
                                    f"'{spec.name}'")
        return str(table["id"])

    def add_volume(self, name: str, table: dict[str, str]) -> VolumeSpec:
        """Record a volume (``table``: url, id and the S3 options) in config.toml, which is
        read again and written under the config lock, and mirrored to every volume, the new
        one included. The caller has claimed the volume and copied the packs to it first."""
        check_volume_name(name)
        config_name = self._file("config.toml")
        with self._ref_lock(".config", "the store's config"):
            config = _parse_toml(read_file(config_name), config_name)
            volumes = config.setdefault("volumes", {})
            if not isinstance(volumes, dict):
                raise CorruptConfig(f"'{config_name}': volumes must be a table")
            if name in volumes:
                raise AlreadyExists(f"volume '{name}' already exists")
            volumes[name] = dict(table)
            self._adopt_config(config, name)
        return next(spec for spec in self._volume_specs if spec.name == name)

    def _adopt_config(self, config: dict[str, Any], changed_volume: str) -> None:
        """Take ``config`` (validated by opening a Store on it first) as this store's, with
        its volumes opened afresh, and write it durably and to every volume's meta/."""
        fresh = type(self)(self.path, config, fs=self.fs, warn=self.warn)
        self.close()
        self.config = config
        self._volume_specs = fresh._volume_specs
        self._policies = fresh._policies
        self._volumes = None
        self._backends.pop(changed_volume, None)
        self._write_config()

    def remove_volume(self, name: str) -> VolumeSpec:
        """Drop the volume ``name`` from config.toml (read again and written under the
        config lock, mirrored to the remaining volumes; nothing on the volume itself is
        touched). NotFound for an unknown name, Refused for the store's last volume."""
        config_name = self._file("config.toml")
        with self._ref_lock(".config", "the store's config"):
            config = _parse_toml(read_file(config_name), config_name)
            volumes = config.get("volumes")
            if not isinstance(volumes, dict) or name not in volumes:
                raise NotFound(f"no volume named '{name}'", hint="see 'vst volume list'")
            if len(volumes) == 1:
                raise Refused(f"volume '{name}' is the store's last volume",
                              hint="add another volume first ('vst volume add')")
            removed = self._volume_spec(name, volumes.pop(name), config_name)
            self._drop_from_policies(config, name)
            self._adopt_config(config, name)
        return removed

    def _drop_from_policies(self, config: dict[str, Any], volume: str) -> None:
        """Take ``volume`` out of every policy naming it, with no more copies than volumes
        left (said through ``warn``). Refused for a policy with no other volume: what its
        collections should use instead is the user's decision."""
        policies = config.get("policies", {})
        if not isinstance(policies, dict):
            return
        changes = []  # said only once every policy could take the change
        for name, entry in sorted(policies.items()):
            listed = entry.get("volumes", []) if isinstance(entry, dict) else []
            if volume not in listed:
                continue
            rest = [v for v in listed if v != volume]
            if not rest:
                raise Refused(f"volume '{volume}' is the only volume of policy '{name}'",
                              hint=f"change the policy first ('vst policy set {name} "
                                   "--volumes ...')")
            entry["volumes"] = rest
            if entry.get("copies", 0) > len(rest):
                entry["copies"] = len(rest)
                changes.append(f"policy '{name}' now keeps {len(rest)} "
                               f"cop{'y' if len(rest) == 1 else 'ies'}, on "
                               + ", ".join(f"'{v}'" for v in rest))
        for change in changes:
            self.warn(change)

    def check_volume(self, spec: VolumeSpec) -> Volume:
        """The backend of ``spec`` once its descriptor says it is this store's volume
        (VolumeError when it cannot be reached, WrongVolume when it is another)."""
        backend = self.backend(spec)
        self._check_descriptor(backend, spec.name, spec.volume_id)
        return backend

    def volumes(self) -> list[Any]:
        """The store's volumes that are available (``VolumeRef``), each checked against
        its descriptor. One that cannot be reached, or is not this store's (the wrong disk
        mounted), is left out, named in ``unavailable`` and reported once through ``warn``:
        reads use the other copies and writes go to the policy's other volumes. With none
        available, the first volume's error is raised."""
        if self._volumes is None:
            from vst.objects.odb import VolumeRef

            refs = []
            failures: list[VstError] = []
            for spec in self._volume_specs:
                try:
                    backend = self.check_volume(spec)
                except VolumeError as exc:
                    failures.append(exc)
                    self.unavailable[spec.name] = exc.message
                    continue
                refs.append(VolumeRef(spec.name, spec.volume_id, backend))
            if not refs:
                raise failures[0]
            for name, why in sorted(self.unavailable.items()):
                self.warn(f"volume '{name}' is unavailable: {why}")
            self._volumes = refs
        return self._volumes

    def _mirror(self, name: str, data: bytes) -> None:
        """Copy a metadata file to every volume's meta/. A volume that cannot take it is
        reported, not fatal: the local write already succeeded and scrub re-mirrors."""
        for spec in self._volume_specs:
            if spec.name in self.unavailable:
                continue  # already reported; 'vst replicate' mirrors again once it is back
            try:
                self.backend(spec).store(f"meta/{name}", data)
            except VstError as exc:
                self.warn(f"cannot mirror {name} to volume '{spec.name}': {exc}")

    def _unmirror(self, name: str) -> None:
        """Delete a metadata file's copy from every volume's meta/ (best effort, as
        ``_mirror``)."""
        for spec in self._volume_specs:
            if spec.name in self.unavailable:
                continue
            try:
                self.backend(spec).delete(f"meta/{name}")
            except NotFound:
                pass
            except VstError as exc:
                self.warn(f"cannot remove meta/{name} from volume '{spec.name}': {exc}")

    def set_collection_keyring(self, name: str, keyring: str) -> None:
        """Point collection ``name`` at keyring ``keyring`` (a rotation's last step)."""
        self.keyrings.read(keyring)
        path = self._file("collections", f"{name}.toml")
        with self._ref_lock(name):
            table = self._collection_table(name)
            table["keyring"] = keyring
            data = _dumps({"collection": table}).encode()
            self.fs.write_file(path, data)
            self._mirror(f"collections/{name}.toml", data)

    # -- object database ----------------------------------------------------------------------

    @property
    def odb(self) -> Any:
        if self._odb is None:
            from vst.objects.index import ObjectIndex
            from vst.objects.odb import ObjectDatabase

            spool_dir = self._file("tmp")
            if not os.path.isdir(spool_dir):
                self.fs.makedirs(spool_dir)
            volumes = self.volumes()
            self._odb = ObjectDatabase(volumes, ObjectIndex(self._file("index.sqlite")),
                                       PLAIN_IDS, self.pack_size, self.compression_level,
                                       spool_dir=spool_dir, fs=self.fs,
                                       placement=self.placement(None), warn=self.warn,
                                       sealings=self.keyrings.sealing_by_id)
        return self._odb

    def writer(self, collection: str | None = None) -> Any:
        """An ObjectWriter putting new packs where ``collection``'s policy says (the
        default policy when None), recording what it writes and reuses as the
        collection's, naming and sealing objects with its keyring (if it has one)."""
        return self.odb.writer(self.placement(collection), owner=collection,
                               sealing=partial(self.sealing, collection))

    def sealing(self, collection: str | None) -> Any:
        """How ``collection``'s objects are named and sealed: its keyring's, opened with
        the user's keys (WrongKey when none opens it), or unencrypted. A collection whose
        encryption changed since this client last used it is refused (``known``)."""
        return sealing_of(self, collection)

    # -- policies -----------------------------------------------------------------------------

    def policies(self) -> dict[str, Policy]:
        """Every policy by name, the default among them (implicit unless configured)."""
        return dict(self._policies)

    def policy_of(self, collection: str | None) -> Policy:
        """The policy ``collection`` follows (the default for None, or for a collection
        naming a policy that is no longer configured: never fewer copies than that)."""
        name = DEFAULT_POLICY if collection is None else self.collection_policy(collection)
        return self._policies.get(name, self._policies[DEFAULT_POLICY])

    def placement(self, collection: str | None) -> Any:
        """Where a writer for ``collection`` puts new packs now (an odb ``Placement``): its
        policy's volumes that are available, in the policy's order."""
        from vst.objects.odb import Placement

        policy = self.policy_of(collection)
        available = {ref.name: ref for ref in self.volumes()}
        return Placement(policy.name, [available[n] for n in policy.volumes if n in available],
                         policy.copies, self.policy_volume_ids(policy),
                         {n: self.unavailable[n] for n in policy.volumes
                          if n in self.unavailable})

    def policy_volume_ids(self, policy: Policy) -> frozenset[str]:
        """The volume ids of ``policy``'s volumes."""
        ids = {spec.name: spec.volume_id for spec in self._volume_specs}
        return frozenset(ids[name] for name in policy.volumes)

    def short_packs(self, collection: str, index: Any = None) -> dict[Oid, int]:
        """The packs of ``collection`` (pack -> size) with fewer copies on its policy's
        volumes than the policy asks, by the index's record of the packs its commits wrote
        and reused (``vst replicate`` and ``vst index rebuild`` refresh it from a walk)."""
        policy = self.policy_of(collection)
        ids = self.policy_volume_ids(policy)
        owned = (index or self.odb.index).owned(collection)
        return {pack: size for pack, size, _count, copies in owned
                if len(copies & ids) < policy.copies}

    def set_policy(self, name: str, volumes: tuple[str, ...], copies: int | None) -> Policy:
        """Create or change the policy ``name`` (``copies`` None: one on each volume)."""
        check_policy_name(name)
        copies = len(volumes) if copies is None else copies
        problem = policy_problem(volumes, copies, tuple(v.name for v in self._volume_specs))
        if problem:
            raise UsageError(f"policy '{name}': {problem}")

        def edit(config: dict[str, Any]) -> None:
            config.setdefault("policies", {})[name] = {"volumes": list(volumes),
                                                       "copies": copies}
        self._edit_config(edit)
        return self._policies[name]

    def remove_policy(self, name: str) -> None:
        """Forget the policy ``name``; refused while a collection follows it. Removing a
        configured ``default`` brings back the implicit one."""
        if name not in self._policies or self._policies[name].implicit:
            raise NotFound(f"no policy named '{name}'", hint="see 'vst policy list'")
        users = [c for c in self.collection_names() if self.collection_policy(c) == name]
        if users:
            raise Refused(f"policy '{name}' is used by collection '{users[0]}'"
                          + (f" and {len(users) - 1} more" if len(users) > 1 else ""),
                          hint="give them another policy first ('vst collection set-policy')")

        def edit(config: dict[str, Any]) -> None:
            policies = config.get("policies", {})
            policies.pop(name, None)
            if not policies:
                config.pop("policies", None)
        self._edit_config(edit)

    def _edit_config(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Change config.toml's format sections under the config lock: read again, edited,
        checked by opening a Store on it, written durably and mirrored."""
        config_name = self._file("config.toml")
        with self._ref_lock(".config", "the store's config"):
            config = _parse_toml(read_file(config_name), config_name)
            edit(config)
            fresh = type(self)(self.path, config, fs=self.fs, warn=self.warn)
            self.config = config
            self._policies = fresh._policies
            self._write_config()

    def close(self) -> None:
        if self.known is not None:
            self.known.save()
        if self._odb is not None:
            self._odb.index.close()
            self._odb = None

    def check_copies(self, packs: set[Oid], collection: str) -> None:
        """Refused unless each of ``packs`` is found at its full size on as many of
        ``collection``'s policy volumes as the policy asks for (what ``vst drop`` needs):
        asked of the volumes themselves, for the index is a cache."""
        from vst.objects.odb import pack_name

        policy = self.policy_of(collection)
        volumes = [ref for ref in self.volumes() if ref.name in policy.volumes]
        others = [ref for ref in self.volumes() if ref.name not in policy.volumes]
        sizes = {row.pack: row.size for row in self.odb.index.packs()}
        missing, short = [], []
        for pack in sorted(packs, key=lambda p: p.hex):
            name = pack_name(pack)
            copies = sum(1 for ref in volumes if _has(ref.backend, name, sizes.get(pack)))
            if copies == 0 and not any(_has(ref.backend, name, sizes.get(pack))
                                       for ref in others):
                missing.append(pack)
            elif copies < policy.copies:
                short.append(pack)
        if missing:
            raise Refused(f"{len(missing)} pack(s) holding this working copy's commit are on "
                          f"no volume (first: {missing[0]})",
                          hint="run 'vst fsck --full' on the store; the files here are the "
                               "only copy")
        if short:
            out = [name for name in policy.volumes if name in self.unavailable]
            raise Refused(f"{len(short)} pack(s) holding this working copy's commit have "
                          f"fewer than the {policy.copies} copies policy '{policy.name}' asks "
                          f"(first: {short[0]})"
                          + (f"; unavailable: {', '.join(out)}" if out else ""),
                          hint="run 'vst replicate' (once the volumes are back), then drop")

    # -- collections --------------------------------------------------------------------------

    def create_collection(self, name: str, *, keyring: str | None = None) -> None:
        """Create collection ``name``, encrypted with the existing keyring ``keyring`` when
        given (see ``keyrings.create``), unencrypted otherwise."""
        check_collection_name(name)
        path = self._file("collections", f"{name}.toml")
        table: dict[str, Any] = {"name": name, "created": int(time.time())}
        if keyring is not None:
            self.keyrings.read(keyring)  # exists and parses
            table["keyring"] = keyring
        data = _dumps({"collection": table}).encode()
        with self._ref_lock(name):
            if os.path.exists(path):
                raise AlreadyExists(f"collection '{name}' already exists")
            self.fs.write_file(path, data, overwrite=False)
        self._mirror(f"collections/{name}.toml", data)

    def _collection_table(self, name: str) -> dict[str, Any]:
        self._require_collection(name)
        path = self._file("collections", f"{name}.toml")
        table = _parse_toml(read_file(path), path).get("collection")
        if not isinstance(table, dict):
            raise CorruptConfig(f"'{path}': no [collection] table")
        return table

    def collection_keyring(self, name: str) -> str | None:
        """The keyring ``name``'s objects are sealed with (None: unencrypted)."""
        keyring = self._collection_table(name).get("keyring")
        if keyring is not None and not isinstance(keyring, str):
            raise CorruptConfig(f"collection '{name}': keyring must be a string")
        return keyring

    def collection_policy(self, name: str) -> str:
        """The name of the policy ``name`` follows (``default`` unless set)."""
        policy = self._collection_table(name).get("policy", DEFAULT_POLICY)
        if not isinstance(policy, str):
            raise CorruptConfig(f"collection '{name}': policy must be a string")
        return policy

    def set_collection_policy(self, name: str, policy: str) -> None:
        if policy not in self._policies:
            raise NotFound(f"no policy named '{policy}'", hint="see 'vst policy list'")
        path = self._file("collections", f"{name}.toml")
        with self._ref_lock(name):
            table = self._collection_table(name)
            if policy == DEFAULT_POLICY:
                table.pop("policy", None)
            else:
                table["policy"] = policy
            data = _dumps({"collection": table}).encode()
            self.fs.write_file(path, data)
            self._mirror(f"collections/{name}.toml", data)

    def has_collection(self, name: str) -> bool:
        return bool(_COLLECTION_RE.match(name)) and \
            os.path.isfile(self._file("collections", f"{name}.toml"))

    def collection_names(self) -> list[str]:
        try:
            names = os.listdir(self._file("collections"))
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".toml") and not n.startswith("."))

    def collections(self) -> Iterator[Collection]:
        for name in self.collection_names():
            yield Collection(name, self.read_ref(name))

    def _require_collection(self, name: str) -> None:
        if not self.has_collection(name):
            raise NotFound(f"no collection named '{name}'",
                           hint="see 'vst collection list'")

    # -- refs ---------------------------------------------------------------------------------

    def read_ref(self, name: str) -> Oid | None:
        """The collection's head, or None before its first commit."""
        self._require_collection(name)
        path = self._file("refs", name)
        try:
            raw = read_file(path)
        except NotFound:
            return None
        text = raw.decode("ascii", "replace")
        if not text.endswith("\n") or not is_full_hex(text[:-1]):
            raise CorruptRef(f"ref '{name}' is corrupt ({path})")
        head = Oid.from_hex(text[:-1])
        if self.known is not None:
            self.known.saw_head(name, head, self._descends)
        return head

    @contextmanager
    def _ref_lock(self, name: str, what: str | None = None) -> Iterator[None]:
        """An exclusive flock() on the collection's lock file (``what`` names the locked
        thing in the error, when it is not a collection). flock locks vanish with their
        process, so a crash never leaves a stale lock behind."""
        lock_dir = self._file("locks")
        if not os.path.isdir(lock_dir):
            self.fs.makedirs(lock_dir)
        with lock_file(os.path.join(lock_dir, f"{name}.lock"), LOCK_TIMEOUT,
                       what or f"collection {name!r}"):
            yield

    def update_ref(self, name: str, new: Oid, expected: Oid | None, *, committer: Signature,
                   message: str, check_old: bool = True) -> Oid | None:
        """Move ``name`` to ``new`` if it still points at ``expected`` (None: no commit yet).

        With ``check_old=False`` the move is unconditional (still serialised by the lock).
        ``new`` must be a commit in the store. Returns the previous head.

        The store's ``hooks/pre-receive`` runs before the move, ``hooks/post-receive`` after
        it (docs/hooks.md); their output goes to ``warn``. A pre-receive that fails raises
        HookRejected and nothing moves.
        """
        from vst.hooks import run_hook, run_pre_hook

        self._require_collection(name)
        self._check_is_commit(new)
        hooks_dir = self._file("hooks")
        hook_env = {"VST_STORE": self.path, "VST_COLLECTION": name}
        with self._ref_lock(name):
            current = self.read_ref(name)
            if check_old and current != expected:
                raise RefConflict(
                    f"cannot update '{name}': expected {expected or 'no commit'}, "
                    f"found {current or 'no commit'}",
                    hint="someone else committed first; pull their commit and retry")
            if current == new:
                return current
            if self.append_only and current is not None \
                    and self._descends_if_readable(new, current) is False:
                raise Refused(f"cannot update '{name}': the store is append-only and {new} "
                              f"does not descend from the head {current}",
                              hint="only commits on top of the head are accepted here")
            receive_line = f"{current or ZERO_OID} {new} {name}\n".encode()
            # Under the lock, so that what the hook approves is what lands.
            said = run_pre_hook(hooks_dir, "pre-receive", stdin=receive_line, env=hook_env,
                                cwd=self.path, warn=self.warn)
            if said.strip():
                self.warn(f"pre-receive: {said.rstrip()}")
            data = f"{new}\n".encode()
            if self.collection_keyring(name) is not None:
                committer, message = reflog_view(committer, message)
            # The reflog first, then the ref (git's order): a crash in between leaves a log
            # line for a move that did not happen, never a move with no log line. A ref
            # write that fails takes its log line back out.
            entry = ReflogEntry(current or ZERO_OID, new, committer, message).encode()
            log_before = self._reflog_bytes(name, current)
            try:
                self._append_reflog(name, log_before, entry)
                self.fs.write_file(self._file("refs", name), data)
            except BaseException:
                # Neither a ref write nor a reflog append that failed (its fsync, say) may
                # leave a log line for a move that did not happen.
                self.fs.write_file(self._file("logs", name), log_before)
                raise
            # Mirrors under the lock too, so concurrent writers cannot leave an older head
            # in a volume's meta/ than in refs/.
            self._mirror(f"refs/{name}", data)
            self._mirror(f"logs/{name}", log_before + entry)
            if self.known is not None:
                self.known.moved(name, new)
        # Outside the lock: the move is done, and a slow hook must not hold up other writers.
        after = run_hook(hooks_dir, "post-receive", stdin=receive_line, env=hook_env,
                         cwd=self.path, warn=self.warn)
        if after.output.strip():
            self.warn(f"post-receive: {after.output.rstrip()}")
        if after.problem:
            self.warn(f"the 'post-receive' hook {after.problem}")
        return current

    def _descends_if_readable(self, commit: Oid, ancestor: Oid) -> bool | None:
        """``_descends``, or None when the commits are encrypted and no key is given (a
        server, which stores sealed objects it cannot read): the move is then kept in the
        reflog, which no client can rewrite, and the clients that know the head catch a
        move that does not descend from it (vst/known.py)."""
        try:
            return self._descends(commit, ancestor)
        except WrongKey:
            if self.keyrings.source is not None:
                raise
            return None

    def _descends(self, commit: Oid, ancestor: Oid) -> bool:
        return descends(self.odb, commit, ancestor)

    def set_append_only(self, on: bool) -> None:
        """Make the store append-only (or not): no ref may then move except forward. What
        a local user can edit, they can undo; against a client that must not, the store is
        served over SSH with ``--append-only``, which no client flag widens."""
        def edit(config: dict[str, Any]) -> None:
            if on:
                config["store"]["append_only"] = True
            else:
                config["store"].pop("append_only", None)
        self._edit_config(edit)
        self.append_only = on

    def _reflog_bytes(self, name: str, head: Oid | None) -> bytes:
        """The reflog's complete lines, without what a crash left behind: a torn last line,
        or the line of a move whose ref write never happened."""
        try:
            log = read_file(self._file("logs", name))
        except NotFound:
            return b""
        log = log[:log.rfind(b"\n") + 1]
        last_start = log.rfind(b"\n", 0, len(log) - 1) + 1
        if log:
            try:
                last = ReflogEntry.decode(log[last_start:-1])
            except (ValueError, VstError):
                return log  # reflog() reports the damage; a move must not depend on it
            if _interrupted_move(last, head):
                return log[:last_start]
        return log

    def _append_reflog(self, name: str, log: bytes, entry: bytes) -> None:
        path = self._file("logs", name)
        if os.path.exists(path) and os.path.getsize(path) == len(log):
            self.fs.append(path, entry)
        else:
            # Missing, or a crash cut the previous append short: appending would glue this
            # entry to the torn record and corrupt both, so the log is rewritten whole.
            self.fs.write_file(path, log + entry)

    def _check_is_commit(self, oid: Oid) -> None:
        from vst.objects.types import ObjectType

        # A verified read, not the record header alone: the type byte of a damaged record
        # must not let a ref point at something that is not a commit.
        try:
            kind = self.odb.get(oid)[0]
        except WrongKey:
            if self.keyrings.source is not None:
                raise
            # Served without keys: an encrypted record's type is sealed inside it. That it
            # exists is what can be checked; the clients that read it check the rest.
            self.odb.read_sealed(oid)
            return
        if kind != ObjectType.COMMIT:
            raise UsageError(f"{oid} is not a commit")

    def reflog(self, name: str) -> list[ReflogEntry]:
        """Oldest first. A torn last line (a crash mid-append) is skipped."""
        self._require_collection(name)
        path = self._file("logs", name)
        try:
            raw = read_file(path)
        except NotFound:
            return []
        entries = []
        lines = raw.split(b"\n")
        complete, torn = lines[:-1], lines[-1]
        for number, line in enumerate(complete, 1):
            try:
                entries.append(ReflogEntry.decode(line))
            except (ValueError, VstError):
                raise CorruptRef(f"reflog of '{name}' is corrupt at line {number} "
                                 f"({path})") from None
        if torn:
            self.warn(f"reflog of '{name}' ends with an incomplete line; ignored")
        if entries and _interrupted_move(entries[-1], self.read_ref(name)):
            entries.pop()
        return entries


def _has(backend: Volume, name: str, size: int | None) -> bool:
    try:
        return backend.size(name) == size
    except VstError:
        return False


def descends(odb: Any, commit: Oid, ancestor: Oid) -> bool:
    """Whether ``ancestor`` is ``commit`` or reached from it through parents (a walk
    that ends at once for the usual move, whose first parent is the head)."""
    seen: set[Oid] = set()
    queue = [commit]
    while queue:
        oid = queue.pop(0)
        if oid == ancestor:
            return True
        if oid in seen:
            continue
        seen.add(oid)
        queue.extend(odb.read_commit(oid).parents)
    return False


def reflog_view(committer: Signature, message: str) -> tuple[Signature, str]:
    """What the reflog of an encrypted collection keeps of a move: the store must not
    learn its contents, so ids, times and the kind of move ("commit", "pull"), not the
    message or who moved it. A client of a store over SSH sends only this."""
    return dataclasses.replace(committer, name="-", email="-"), message.split(":", 1)[0]


def sealing_of(store: Any, collection: str | None) -> Any:
    """``Store.sealing``, for a store here or over SSH (vst/ssh/client.py)."""
    if collection is None:
        return store.keyrings.sealing(None)
    keyring = store.collection_keyring(collection)
    if store.known is not None:
        store.known.check_keyring(collection,
                                  store.keyrings.read(keyring).keyring_id if keyring else None)
    return store.keyrings.sealing(keyring)
