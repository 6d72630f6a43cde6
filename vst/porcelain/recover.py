"""``vst recover --from URL STORE_PATH``: rebuild a lost store directory from one of its
volumes (invariant 5).

Every volume mirrors the store's metadata under ``meta/`` (config.toml, collections/,
refs/, logs/, keys/) beside its ``volume.toml`` descriptor and its packs. Recovering:

1. reads the source volume's descriptor and ``meta/config.toml`` and refuses a volume that
   is not one, or that belongs to another store than the config names;
2. writes the metadata into a temporary sibling of STORE_PATH, with the source volume's
   URL rewritten to the one it was reached by when that changed (a disk mounted elsewhere);
3. recreates, empty, the local volumes that lay inside STORE_PATH (the embedded
   ``volumes/default``), with their descriptors and metadata, so the store opens and new
   commits reach them (the index records no copy there: nothing refills them yet); other
   volumes that cannot be reached stay in the config and are reported;
4. indexes the packs of every reachable volume, then checks that every object reachable
   from each collection's head is indexed;
5. writes config.toml last and renames the directory into place: an interrupted recover
   leaves nothing at STORE_PATH, and running it again starts over.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from vst.errors import (
    CorruptConfig,
    NotAStore,
    NotFound,
    Refused,
    UsageError,
    VstError,
    WrongKey,
    WrongVolume,
    from_os_error,
)
from vst.fsio import DEFAULT_FS, FileSystem
from vst.keyrings import KeySource
from vst.objects.ids import PLAIN_IDS
from vst.objects.index import ObjectIndex
from vst.objects.odb import ObjectDatabase, VolumeRef
from vst.objects.oid import Oid
from vst.objects.types import ObjectType
from vst.plumbing.index_rebuild import index_volume
from vst.plumbing.reachable import children
from vst.porcelain.volume import MIRRORED, _volume_table
from vst.remotes.volume import Volume, check_name
from vst.store import DESCRIPTOR, VOLUME_FORMAT, Store, VolumeSpec, open_volume

Warn = Callable[[str], None]

REACHABLE = "reachable"
RECREATED = "recreated"
UNREACHABLE = "unreachable"
# The directories Store.init makes; the mirrored ones are filled from the volume's meta/.
STORE_DIRS = ("collections", "refs", "logs", "locks", "keys", "hooks", "tmp")
# One file per collection in these: a name with a '/' in it is not one vst wrote.
FLAT = ("collections", "refs", "logs")


@dataclass(frozen=True, slots=True)
class RecoveredVolume:
    name: str
    kind: str
    url: str  # as the recovered store reaches it (absolute for a local volume)
    volume_id: str
    state: str  # REACHABLE, RECREATED or UNREACHABLE
    source: bool  # the volume recovered from
    previous_url: str | None  # the URL the config held, when it was rewritten to ``url``
    packs: int  # packs indexed from it
    problem: str | None  # why it is unreachable


@dataclass(frozen=True, slots=True)
class RecoveredCollection:
    name: str
    head: Oid | None  # None before the collection's first commit
    objects: int  # objects reachable from the head that are indexed and readable
    missing: int  # objects reachable from the head that are not (at least: the objects
    #               below a missing tree are unknown)

    @property
    def complete(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True, slots=True)
class RecoverResult:
    path: str
    store_id: str
    collections: list[RecoveredCollection]
    volumes: list[RecoveredVolume]
    packs: int  # distinct packs indexed
    objects: int
    skipped: int  # files under packs/ that were not indexed (see index_volume)

    @property
    def incomplete(self) -> list[RecoveredCollection]:
        return [c for c in self.collections if not c.complete]


def recover(path: str, url: str, *, key_source: KeySource | None = None,
            endpoint_url: str | None = None,
            region: str | None = None, profile: str | None = None,
            fs: FileSystem = DEFAULT_FS, warn: Warn = lambda _: None,
            on_bytes: Callable[[int], None] = lambda _done: None) -> RecoverResult:
    """Rebuild the store at ``path`` from the volume at ``url`` (a directory or
    ``s3://BUCKET/PREFIX``, with the S3 options of ``vst volume add``).

    Refused when ``path`` exists and is not an empty directory; WrongVolume when ``url`` is
    not a vst volume or its descriptor names another store than its config; NotAStore when
    it holds no ``meta/config.toml``. Volumes that cannot be reached are reported (and
    passed to ``warn``), not fatal. ``on_bytes`` gets each indexed pack's size. A result
    with incomplete collections is still a recovered store: the caller decides the exit."""
    final = os.path.abspath(path)
    if os.path.lexists(final) and (os.path.islink(final) or not os.path.isdir(final)
                                   or os.listdir(final)):
        raise Refused(f"'{final}' already exists and is not an empty directory",
                      hint="recover into a new or empty directory")
    table = _volume_table(url, endpoint_url, region, profile)
    given = VolumeSpec("source", table["url"], "", table.get("endpoint_url"),
                       table.get("region"), table.get("profile"))
    source = open_volume(given, fs)
    volume_id, config = _read_source(source)
    specs, rewritten = _adopt_source(final, config, volume_id, table)
    temp = _fresh_temp(final, fs, warn)
    try:
        built = Store(temp, config, fs=fs, warn=warn)  # relative volume URLs lie in ``temp``
        built.keyrings.source = key_source  # to walk encrypted collections
        for sub in STORE_DIRS:
            fs.makedirs(os.path.join(temp, sub))
        meta = _copy_meta(source, temp, fs, warn)
        config_data = _dumps(config).encode()
        meta["config.toml"] = config_data
        temp_specs = {spec.name: spec for spec in built.volume_specs()}
        refs: list[VolumeRef] = []
        states: dict[str, tuple[str, str | None]] = {}
        for spec in specs:
            if spec.volume_id == volume_id:
                refs.append(VolumeRef(spec.name, spec.volume_id, source))
                states[spec.name] = (REACHABLE, None)
            elif _inside(spec, final):
                _recreate(temp_specs[spec.name], built.store_id, meta, fs)
                states[spec.name] = (RECREATED, None)
                warn(f"volume '{spec.name}' lay inside the store and is gone: recreated it "
                     "empty; run 'vst replicate' to copy its packs back")
            else:
                problem = _reach(spec, built.store_id, fs, refs)
                states[spec.name] = (REACHABLE if problem is None else UNREACHABLE, problem)
                if problem is not None:
                    warn(f"volume '{spec.name}' is unreachable, kept in the config: {problem}")
        checked = _index_and_check(temp, built, refs, warn, on_bytes)
        # config.toml last, as Store.init does: a directory without it is not (yet) a store.
        fs.write_file(os.path.join(temp, "config.toml"), config_data)
        _move_into_place(temp, final, fs)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if rewritten is not None:
        # The other volumes' mirrors still name the source's old URL. A stale mirror is
        # harmless (recover rewrites it again), so a failure is only reported.
        for ref in refs:
            try:
                ref.backend.store("meta/config.toml", config_data)
            except VstError as exc:
                warn(f"cannot mirror config.toml to volume '{ref.name}': {exc}")
    volumes = [RecoveredVolume(spec.name, spec.kind, spec.url, spec.volume_id,
                               states[spec.name][0], spec.volume_id == volume_id,
                               rewritten if spec.volume_id == volume_id else None,
                               checked.per_volume.get(spec.name, 0), states[spec.name][1])
               for spec in specs]
    return RecoverResult(final, built.store_id, checked.collections, volumes,
                         checked.packs, checked.objects, checked.skipped)


def _reach(spec: VolumeSpec, store_id: str, fs: FileSystem, refs: list[VolumeRef]
           ) -> str | None:
    """Open a volume other than the source; on success add it to ``refs``, else say why
    it cannot be used."""
    try:
        backend = open_volume(spec, fs)
        _check_descriptor(backend, spec, store_id)
    except VstError as exc:
        return exc.message
    refs.append(VolumeRef(spec.name, spec.volume_id, backend))
    return None


class _Indexed(NamedTuple):
    per_volume: dict[str, int]  # packs indexed from each volume, by name
    packs: int  # distinct packs
    objects: int
    skipped: int
    collections: list[RecoveredCollection]


def _index_and_check(temp: str, built: Store, refs: list[VolumeRef], warn: Warn,
                     on_bytes: Callable[[int], None]) -> _Indexed:
    """Index the packs of ``refs`` into the new index.sqlite, then check each collection
    against it."""
    index = ObjectIndex(os.path.join(temp, "index.sqlite"))
    try:
        per_volume: dict[str, int] = {}
        skipped = 0
        for ref in refs:
            per_volume[ref.name], skips = index_volume(index, ref, warn=warn, on_pack=on_bytes)
            skipped += skips
        objects, packs, _ = index.count()
        odb = ObjectDatabase(refs, index, PLAIN_IDS, built.pack_size, built.compression_level,
                             spool_dir=os.path.join(temp, "tmp"), fs=built.fs,
                             sealings=built.keyrings.sealing_by_id)
        collections = [_check_collection(odb, name, built.read_ref(name), warn)
                       for name in built.collection_names()]
    finally:
        index.close()
    return _Indexed(per_volume, packs, objects, skipped, collections)


def _dumps(table: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(table)


def _parse(data: bytes, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorruptConfig(f"cannot parse '{name}': {exc}") from None


def _descriptor(backend: Volume) -> dict[str, Any]:
    try:
        raw = backend.load(DESCRIPTOR)
    except NotFound:
        raise WrongVolume(f"'{backend.url}' is not a vst volume (no {DESCRIPTOR})",
                          hint="give the directory or s3:// prefix that holds volume.toml, "
                               "packs/ and meta/") from None
    table = _parse(raw, f"{backend.url}/{DESCRIPTOR}").get("volume")
    if not isinstance(table, dict) or not isinstance(table.get("id"), str) \
            or not isinstance(table.get("store"), str):
        raise CorruptConfig(f"'{backend.url}/{DESCRIPTOR}' needs a [volume] table with an id "
                            "and a store")
    return table


def _read_source(source: Volume) -> tuple[str, dict[str, Any]]:
    """The source's volume id and its copy of config.toml, once both agree on the store."""
    descriptor = _descriptor(source)
    try:
        raw = source.load("meta/config.toml")
    except NotFound:
        raise NotAStore(f"volume '{source.url}' holds no store metadata (no meta/config.toml)",
                        hint="recover from another of the store's volumes") from None
    config = _parse(raw, f"{source.url}/meta/config.toml")
    store = config.get("store")
    store_id = store.get("id") if isinstance(store, dict) else None
    if not isinstance(store_id, str):
        raise CorruptConfig(f"'{source.url}/meta/config.toml': no [store] table with an id")
    if descriptor["store"] != store_id:
        raise WrongVolume(f"volume '{source.url}' belongs to store {descriptor['store']}, "
                          f"but its meta/config.toml is the config of store {store_id}",
                          hint="recover from another of the store's volumes")
    return str(descriptor["id"]), config


def _adopt_source(final: str, config: dict[str, Any], volume_id: str,
                  table: dict[str, str]) -> tuple[list[VolumeSpec], str | None]:
    """The config's volumes (checked by opening a Store on the config), with the source's
    URL and S3 options rewritten in ``config`` to those it was reached by when they
    differ. Returns the volumes and the URL the config held, when it was rewritten."""
    specs = Store(final, config).volume_specs()
    spec = next((s for s in specs if s.volume_id == volume_id), None)
    if spec is None:
        raise WrongVolume(f"volume '{table['url']}' is not among the volumes its store's "
                          "config names (was it added by an interrupted 'vst volume add'?)",
                          hint="recover from another of the store's volumes")
    if (spec.url, spec.endpoint_url, spec.region, spec.profile) == (
            table["url"], table.get("endpoint_url"), table.get("region"), table.get("profile")):
        return specs, None
    config["volumes"][spec.name] = {**table, "id": volume_id}
    return Store(final, config).volume_specs(), spec.url


def _inside(spec: VolumeSpec, final: str) -> bool:
    return spec.kind == "local" and os.path.commonpath([spec.url, final]) == final


def _fresh_temp(final: str, fs: FileSystem, warn: Warn) -> str:
    """The directory the store is built in: a sibling of ``final``, so the last rename
    stays on one file system. Its name is fixed, so what an interrupted recover left is
    found and started over (everything in it came from the volumes)."""
    parent, name = os.path.split(final)
    temp = os.path.join(parent, f".{name}.vst-recover")
    if os.path.lexists(temp):
        warn(f"removing '{temp}', left by an interrupted recover")
        try:
            if os.path.isdir(temp) and not os.path.islink(temp):
                shutil.rmtree(temp)
            else:
                os.unlink(temp)
        except OSError as exc:
            raise from_os_error(exc, f"cannot remove '{temp}'") from exc
    fs.makedirs(temp)
    return temp


def _copy_meta(source: Volume, temp: str, fs: FileSystem, warn: Warn) -> dict[str, bytes]:
    """Write the mirrored directories of the source's meta/ into ``temp``; returns them by
    relative name. Names vst would not have written are skipped with a warning."""
    copied: dict[str, bytes] = {}
    for name in sorted(source.list("meta/")):
        relative = name[len("meta/"):]
        parts = relative.split("/")
        if relative == "config.toml":
            continue
        try:
            check_name(relative)
            ok = parts[0] in MIRRORED and len(parts) >= 2 and \
                (parts[0] not in FLAT or len(parts) == 2)
        except UsageError:
            ok = False
        if not ok:
            warn(f"ignoring unexpected file '{name}' on volume '{source.url}'")
            continue
        data = source.load(name)
        target = os.path.join(temp, *parts)
        fs.makedirs(os.path.dirname(target))
        fs.write_file(target, data)
        copied[relative] = data
    return copied


def _recreate(spec: VolumeSpec, store_id: str, meta: dict[str, bytes],
              fs: FileSystem) -> None:
    """An empty volume at ``spec.url`` with its descriptor and a copy of the metadata."""
    fs.makedirs(spec.url)
    backend = open_volume(spec, fs)
    descriptor = {"volume": {"format": VOLUME_FORMAT, "id": spec.volume_id,
                             "store": store_id}}
    backend.store(DESCRIPTOR, _dumps(descriptor).encode())
    for relative, data in meta.items():
        backend.store(f"meta/{relative}", data)


def _check_descriptor(backend: Volume, spec: VolumeSpec, store_id: str) -> None:
    table = _descriptor(backend)
    if table["store"] != store_id or table["id"] != spec.volume_id:
        raise WrongVolume(f"volume '{spec.name}' at '{backend.url}' belongs to another store "
                          "or is another volume")


def _check_collection(odb: ObjectDatabase, name: str, head: Oid | None,
                      warn: Warn) -> RecoveredCollection:
    """Count the objects reachable from ``head`` that the index has (and, for commits,
    trees and chunk lists, that read back verified) and those it lacks. What a missing
    object names cannot be known, so ``missing`` is a lower bound."""
    if head is None:
        return RecoveredCollection(name, None, 0, 0)
    if not odb.has(head):
        return RecoveredCollection(name, head, 0, 1)
    try:
        odb.get(head)
    except WrongKey as exc:
        # Its packs are indexed; what they hold cannot be walked without its key.
        warn(f"collection '{name}' not checked: {exc.message}")
        return RecoveredCollection(name, head, 0, 0)
    except VstError:
        pass  # the walk below reports it
    seen = {head}
    stack: list[tuple[Oid, ObjectType | None]] = [(head, ObjectType.COMMIT)]
    found = missing = 0
    while stack:
        oid, kind = stack.pop()
        if kind == ObjectType.BLOB:
            found += 1
            continue
        try:
            if kind is None:
                kind = odb.get_kind(oid)
            named = children(kind, oid, odb.get_typed(oid, kind))
        except VstError as exc:
            warn(f"collection '{name}': {exc.message}")
            missing += 1
            continue
        found += 1
        new: list[tuple[Oid, ObjectType]] = []
        for child, child_kind in named:
            if child not in seen:
                seen.add(child)
                new.append((child, child_kind))
        present = odb.has_many(child for child, _ in new)
        missing += sum(1 for child, _ in new if child not in present)
        stack.extend(item for item in new if item[0] in present)
    return RecoveredCollection(name, head, found, missing)


def _move_into_place(temp: str, final: str, fs: FileSystem) -> None:
    # One rename: STORE_PATH holds either nothing (or the empty directory it was) or the
    # whole store. rename(2) replaces an empty directory, so an empty target is fine.
    try:
        fs.move(temp, final)
    except OSError as exc:
        raise from_os_error(exc, f"cannot move the recovered store into '{final}'") from exc
