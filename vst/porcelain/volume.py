"""``vst volume add|list``: give a store another volume (a directory or an S3 bucket/prefix)
and show what each volume holds.

Adding copies everything the store has to the new volume before config.toml names it, so
the volume holds every pack from the moment it is used (replication by policy comes later),
and an add that is interrupted leaves the config as it was: running it again resumes it
(the descriptor it wrote is taken over, packs already there are not sent again).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from vst.errors import (
    AlreadyExists,
    NotFound,
    ObjectMissing,
    UsageError,
    VolumeError,
    VstError,
    WrongVolume,
)
from vst.objects.index import ObjectIndex, PackRow
from vst.objects.odb import VolumeRef, pack_name
from vst.objects.oid import Oid, is_full_hex
from vst.objects.pack import PackEntry, pack_id, parse_pack, read_index
from vst.remotes.volume import Volume
from vst.store import Store, VolumeSpec, check_volume_name, open_volume

# Directories of the store that every volume mirrors under meta/ (config.toml is mirrored
# when the new volume is recorded in it).
MIRRORED = ("collections", "refs", "logs", "keys")
INDEX_BATCH = 8


@dataclass(frozen=True, slots=True)
class VolumeAdded:
    name: str
    kind: str
    url: str
    volume_id: str
    packs: int  # packs copied to the volume (not counting those already there)
    bytes: int


@dataclass(frozen=True, slots=True)
class VolumeStatus:
    name: str
    kind: str
    url: str
    volume_id: str
    endpoint_url: str | None
    reachable: bool
    packs: int | None  # None when the volume could not be listed
    bytes: int | None
    problem: str | None  # why it is unreachable or refused; None when all is well


def volume_add(store: Store, name: str, url: str, *, endpoint_url: str | None = None,
               region: str | None = None, profile: str | None = None,
               on_start: Callable[[int], None] = lambda _total: None,
               on_bytes: Callable[[int], None] = lambda _done: None) -> VolumeAdded:
    """Add the volume at ``url`` (a directory, relative to the current one, or
    ``s3://BUCKET/PREFIX``) to ``store`` as ``name``. ``on_start`` gets the number of bytes
    to copy, ``on_bytes`` each pack's size once it is on the volume."""
    check_volume_name(name)
    if any(spec.name == name for spec in store.volume_specs()):
        raise AlreadyExists(f"volume '{name}' already exists")
    table = _volume_table(url, endpoint_url, region, profile)
    spec = VolumeSpec(name, table["url"], "", table.get("endpoint_url"), table.get("region"),
                      table.get("profile"))
    if spec.kind == "local" and not os.path.isdir(spec.url) \
            and os.path.isdir(os.path.dirname(spec.url)):
        store.fs.makedirs(spec.url)
    backend = open_volume(spec, store.fs)
    backend.info()  # reachable, before anything is written
    volume_id = store.claim_volume(backend)
    table["id"] = volume_id
    target = VolumeRef(name, volume_id, backend)
    copied = _copy_packs(store, target, _packs(store), on_start, on_bytes)
    _copy_meta(store, backend)
    # Last: until config.toml names the volume, nothing uses it.
    store.add_volume(name, table)
    # Packs that writers which opened the store before the line above stored meanwhile.
    late = _copy_packs(store, target, _packs(store), lambda _total: None, on_bytes)
    return VolumeAdded(name, spec.kind, spec.url, volume_id, copied[0] + late[0],
                       copied[1] + late[1])


def _volume_table(url: str, endpoint_url: str | None, region: str | None,
                  profile: str | None) -> dict[str, str]:
    options = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    if url.startswith("s3://"):
        from vst.remotes.s3 import parse_s3_url

        bucket, prefix = parse_s3_url(url)
        table = {"url": f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"}
        table.update({key: value for key, value in options.items() if value})
        return table
    if "://" in url:
        raise UsageError(f"unsupported volume URL '{url}'",
                         hint="use a directory or s3://BUCKET/PREFIX")
    given = [f"--{key.replace('_', '-')}" for key, value in options.items() if value]
    if given:
        raise UsageError(f"{', '.join(given)} only apply to s3:// volumes")
    if not url:
        raise UsageError("empty volume URL")
    return {"url": os.path.abspath(url)}


def _packs(store: Store) -> list[PackRow]:
    return store.odb.index.packs()


def _copy_packs(store: Store, target: VolumeRef, rows: Iterable[PackRow],
                on_start: Callable[[int], None],
                on_bytes: Callable[[int], None]) -> tuple[int, int]:
    """Copy the packs of ``rows`` that ``target`` lacks, each read from a copy whose bytes
    hash to its name (a damaged copy is never spread), and record the new copies in the
    index. Returns (packs, bytes) copied."""
    wanted = [row for row in rows if target.volume_id not in row.volumes]
    on_start(sum(row.size for row in wanted))
    sources = [volume for volume in store.volumes() if volume.volume_id != target.volume_id]
    index = store.odb.index
    done: list[tuple[Oid, int, tuple[PackEntry, ...], list[str]]] = []
    packs = size = 0
    for row in wanted:
        name = pack_name(row.pack)
        try:
            present = target.backend.size(name) == row.size
        except NotFound:
            present = False
        if present:  # a resumed add: its footer and index are enough
            entries = read_index(partial(target.backend.load, name), row.size,
                                 f"{row.pack} on volume '{target.name}'").entries
        else:
            data = _load_verified(row, [v for v in sources if v.volume_id in row.volumes])
            target.backend.store(name, data, overwrite=False)
            packs, size = packs + 1, size + row.size
            entries = parse_pack(data, str(row.pack)).entries
        done.append((row.pack, row.size, entries, [target.volume_id]))
        on_bytes(row.size)
        if len(done) >= INDEX_BATCH:
            index.add_packs(done)
            done = []
    if done:
        index.add_packs(done)
    return packs, size


def _load_verified(row: PackRow, copies: list[VolumeRef]) -> bytes:
    failures = []
    for volume in copies:
        try:
            data = volume.backend.load(pack_name(row.pack))
        except (NotFound, VolumeError) as exc:
            failures.append(f"volume '{volume.name}': {exc}")
            continue
        if pack_id(data) == row.pack:
            return data
        failures.append(f"volume '{volume.name}': its bytes do not hash to its name")
    raise ObjectMissing(f"cannot copy pack {row.pack}: no good copy ("
                        + ("; ".join(failures) or "on no known volume") + ")",
                        hint="run 'vst fsck --full'; the volume was not added")


def _copy_meta(store: Store, backend: Volume) -> None:
    for directory in MIRRORED:
        root = os.path.join(store.path, directory)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for filename in sorted(filenames):
                path = os.path.join(dirpath, filename)
                relative = os.path.relpath(path, store.path).replace(os.sep, "/")
                with open(path, "rb") as f:
                    backend.store(f"meta/{relative}", f.read())


def volume_list(store: Store) -> list[VolumeStatus]:
    """Every configured volume with the packs it holds (listed on the volume; sizes from
    the index where it knows the pack, else asked of the volume). A volume that cannot be
    reached, or is not this store's, is listed with its problem instead of failing."""
    sizes = _indexed_sizes(store)
    return [_status(store, spec, sizes) for spec in store.volume_specs()]


def _indexed_sizes(store: Store) -> dict[str, int]:
    # The index directly, not store.odb: that checks every volume, and listing them must
    # work while one is unreachable.
    path = os.path.join(store.path, "index.sqlite")
    if not os.path.exists(path):
        return {}
    index = ObjectIndex(path)
    try:
        return {row.pack.hex: row.size for row in index.packs()}
    finally:
        index.close()


def _status(store: Store, spec: VolumeSpec, sizes: dict[str, int]) -> VolumeStatus:
    def status(reachable: bool, packs: int | None, size: int | None,
               problem: str | None) -> VolumeStatus:
        return VolumeStatus(spec.name, spec.kind, spec.url, spec.volume_id, spec.endpoint_url,
                            reachable, packs, size, problem)

    try:
        backend = store.check_volume(spec)
        packs = size = 0
        for name in backend.list("packs/"):
            hex_id = name.rsplit("/", 1)[-1]
            if not is_full_hex(hex_id) or name != f"packs/{hex_id[:2]}/{hex_id}":
                continue
            packs += 1
            known = sizes.get(hex_id)
            size += known if known is not None else backend.size(name)
    except VolumeError as exc:
        return status(isinstance(exc, WrongVolume), None, None, exc.message)
    except VstError as exc:
        return status(True, None, None, exc.message)
    return status(True, packs, size, None)
