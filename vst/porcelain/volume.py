"""``vst volume add|list|remove|lost``: give a store another volume (a directory or an S3 bucket/prefix)
and show what each volume holds.

Adding copies everything the store has to the new volume before config.toml names it, so
the volume holds every pack from the moment it is used (replication by policy comes later),
and an add that is interrupted leaves the config as it was: running it again resumes it
(the descriptor it wrote is taken over, packs already there are not sent again).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from vst.errors import (
    AlreadyExists,
    NotFound,
    ObjectMissing,
    Refused,
    UsageError,
    VolumeError,
    VstError,
    WrongVolume,
)
from vst.objects.index import ObjectIndex, PackRow
from vst.objects.odb import VolumeRef, pack_name
from vst.objects.oid import Oid, is_full_hex
from vst.objects.pack import PackIndex, parse_pack, read_index
from vst.porcelain.policy import short_packs
from vst.remotes.local import LocalVolume
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
    copy_meta(store, backend)
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
    odb = store.odb
    index = odb.index
    done: list[tuple[Oid, int, PackIndex, list[str]]] = []
    packs = size = 0
    for row in wanted:
        name = pack_name(row.pack)
        try:
            present = target.backend.size(name) == row.size
        except NotFound:
            present = False
        if present:  # a resumed add: its footer and index are enough
            entries = read_index(partial(target.backend.load, name), row.size,
                                 f"{row.pack} on volume '{target.name}'")
        else:
            try:
                data = odb.load_verified(row.pack)  # the target lacks it: never the source
            except ObjectMissing as exc:
                raise ObjectMissing(f"cannot copy {exc.message}",
                                    hint="run 'vst fsck --full'; the volume was not added"
                                    ) from None
            target.backend.store(name, data, overwrite=False)
            packs, size = packs + 1, size + row.size
            entries = parse_pack(data, str(row.pack))
        done.append((row.pack, row.size, entries, [target.volume_id]))
        on_bytes(row.size)
        if len(done) >= INDEX_BATCH:
            index.add_packs(done)
            done = []
    if done:
        index.add_packs(done)
    return packs, size


def copy_meta(store: Store, backend: Volume) -> None:
    """Mirror the store's collections, refs, reflogs and key envelopes to ``backend``."""
    for directory in MIRRORED:
        root = os.path.join(store.path, directory)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for filename in sorted(filenames):
                if filename.startswith("."):  # a lock or a temporary file, not metadata
                    continue
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


# -- vst volume remove | lost -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeDropped:
    name: str
    url: str
    volume_id: str
    copies: int  # pack copies the index recorded on the volume, now forgotten
    lost: int  # packs now on no volume
    under_replicated: int  # packs on a volume, but on fewer than their collection's policy asks


def volume_remove(store: Store, name: str) -> VolumeDropped:
    """Take the volume ``name`` out of the store, leaving its files alone. Refused while
    it holds the only copy of a pack: each other copy the index records is confirmed on its
    volume, at full size, first. The volume itself need not be reachable."""
    spec = _named_spec(store, name)
    if len(store.volume_specs()) == 1:
        raise Refused(f"volume '{name}' is the store's last volume",
                      hint="add another volume first ('vst volume add')")
    index = ObjectIndex(os.path.join(store.path, "index.sqlite"))
    backends: dict[str, Volume | None] = {}
    try:
        sole = [row for row in index.packs() if spec.volume_id in row.volumes
                and not _copy_elsewhere(store, spec, row, backends)]
        if sole:
            raise Refused(f"volume '{name}' holds the only copy of {len(sole)} pack"
                          f"{'' if len(sole) == 1 else 's'} (the first: {sole[0].pack})",
                          hint="run 'vst repair' or add a volume so that another volume "
                               "holds them; a dead disk is forgotten with 'vst volume lost'")
        return _drop(store, spec, index)
    finally:
        index.close()


def volume_lost(store: Store, name: str) -> VolumeDropped:
    """Forget the volume ``name`` (a disk that died): drop it from config.toml and its
    copies from the index, whatever they held. Nothing is read from any volume."""
    spec = _named_spec(store, name)
    index = ObjectIndex(os.path.join(store.path, "index.sqlite"))
    try:
        return _drop(store, spec, index)
    finally:
        index.close()


def _named_spec(store: Store, name: str) -> VolumeSpec:
    check_volume_name(name)
    spec = next((spec for spec in store.volume_specs() if spec.name == name), None)
    if spec is None:
        raise NotFound(f"no volume named '{name}'", hint="see 'vst volume list'")
    return spec


def _copy_elsewhere(store: Store, spec: VolumeSpec, row: PackRow,
                    backends: dict[str, Volume | None]) -> bool:
    """A whole copy of the pack on another configured volume, asked of that volume (the
    index may remember a copy that is gone). An unreachable volume confirms nothing."""
    for other in store.volume_specs():
        if other.volume_id == spec.volume_id or other.volume_id not in row.volumes:
            continue
        if other.name not in backends:
            try:
                backends[other.name] = store.check_volume(other)
            except VstError:  # unreachable, or not this store's
                backends[other.name] = None
        backend = backends[other.name]
        try:
            if backend is not None and backend.size(pack_name(row.pack)) == row.size:
                return True
        except VstError:  # missing, or unreadable: not a confirmed copy
            continue
    return False


def _drop(store: Store, spec: VolumeSpec, index: ObjectIndex) -> VolumeDropped:
    # The config first: from then on nothing uses the volume, and copies the index still
    # records on a volume id the config does not name are ignored by every reader.
    store.remove_volume(spec.name)
    copies = index.forget_volume(spec.volume_id)
    kept = {other.volume_id for other in store.volume_specs()}
    lost = {row.pack for row in index.packs() if not kept.intersection(row.volumes)}
    short = {pack for collection in store.collection_names()
             for pack in short_packs(store, collection, index)} - lost
    return VolumeDropped(spec.name, spec.url, spec.volume_id, copies, len(lost), len(short))


# -- vst volume validate ------------------------------------------------------------------

# Where the probes write; a fresh random folder under it per run, removed afterwards.
VALIDATE_PREFIX = "validate"
# A big file for the store_file probe on a backend without a multipart threshold: larger
# than the 1 MiB reads and writes most copy loops use.
BIG_FILE = 4 * 1024 * 1024 + 17


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    reason: str  # one line: what was verified, or what went wrong


class _Failed(Exception):
    """A probe found the volume breaking a promise (the message says which)."""


def volume_validate(store: Store, name: str) -> list[Check]:
    """Probe the configured volume ``name`` for the promises vst relies on (see
    validate_backend). VolumeError (exit 20-25) when it cannot be reached."""
    check_volume_name(name)
    spec = next((spec for spec in store.volume_specs() if spec.name == name), None)
    if spec is None:
        raise NotFound(f"no volume named '{name}'", hint="see 'vst volume list'")
    backend = store.backend(spec)
    backend.info()  # reachable, before anything is written
    return validate_backend(backend)


def validate_backend(backend: Volume, *, big_size: int | None = None) -> list[Check]:
    """Run every probe under a scratch prefix of ``backend`` and remove what they wrote.

    A probe that finds a broken promise, or gets an error that is not about reaching the
    volume, is a failed check; a VolumeError (unreachable, access denied...) propagates.
    ``big_size`` is the size of the store_file probe's file: by default just over the
    backend's multipart threshold when it has one, so a multipart upload is exercised.
    """
    if big_size is None:
        threshold = getattr(backend, "multipart_threshold", None)
        big_size = threshold + 17 if isinstance(threshold, int) else BIG_FILE
    prefix = f"{VALIDATE_PREFIX}/{os.urandom(8).hex()}/"
    written: list[str] = []

    def name_of(stem: str) -> str:
        written.append(prefix + stem)
        return prefix + stem

    probes: list[tuple[str, Callable[[], str]]] = [
        ("read-after-write", lambda: _probe_read_after_write(backend, name_of("raw"))),
        ("overwrite", lambda: _probe_overwrite(backend, name_of("over"))),
        ("conditional-write", lambda: _probe_conditional(backend, name_of("cond"),
                                                         name_of("cond-new"))),
        ("range-read", lambda: _probe_ranges(backend, name_of("range"))),
        ("list", lambda: _probe_list(backend, prefix + "list/",
                                     [name_of(f"list/{i}") for i in range(3)])),
        ("list-after-delete", lambda: _probe_list_after_delete(
            backend, prefix + "gone/", [name_of(f"gone/{i}") for i in range(3)])),
        ("delete", lambda: _probe_delete(backend, name_of("del"))),
        ("large-file", lambda: _probe_large_file(backend, name_of("big"), big_size)),
    ]
    checks = []
    try:
        for label, probe in probes:
            try:
                checks.append(Check(label, True, probe()))
            except _Failed as exc:
                checks.append(Check(label, False, str(exc)))
            except VolumeError:
                raise
            except VstError as exc:
                checks.append(Check(label, False,
                                    f"{type(exc).__name__}: {exc.message}"))
    finally:
        _clean_up(backend, prefix, written)
    return checks


def _clean_up(backend: Volume, prefix: str, written: list[str]) -> None:
    # The names written and whatever the listing shows: a backend that lies about one still
    # gets the other's cleaned. Best effort: a failure here must not hide the results.
    names = set(written)
    try:
        names.update(backend.list(prefix))
    except VstError:
        pass
    for name in sorted(names):
        try:
            backend.delete(name)
        except VstError:
            pass
    if isinstance(backend, LocalVolume):
        # Folders are not objects: the interface cannot remove them, the directory can.
        top = os.path.join(backend.root, *prefix.rstrip("/").split("/"))
        for dirpath, _dirs, _files in sorted(os.walk(top), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        try:
            os.rmdir(os.path.dirname(top))  # validate/, when no other run is using it
        except OSError:
            pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise _Failed(message)


def _describe(got: bytes, want: bytes) -> str:
    if got == want:
        return "the same bytes"
    if len(got) != len(want):
        return f"{len(got)} bytes instead of {len(want)}"
    return f"{len(got)} bytes, but not the ones written"


def _probe_read_after_write(backend: Volume, name: str) -> str:
    data = os.urandom(1000)
    _expect(backend.store(name, data) is True, "store() did not report the write")
    got = backend.load(name)
    _expect(got == data, f"a load right after a store returned {_describe(got, data)}")
    size = backend.size(name)
    _expect(size == len(data), f"size() says {size} bytes, {len(data)} were written")
    _expect(backend.exists(name), "exists() is False right after a store")
    return f"{len(data)} bytes read back and sized right after the write"


def _probe_overwrite(backend: Volume, name: str) -> str:
    first, second = os.urandom(700), os.urandom(500)
    backend.store(name, first)
    backend.load(name)  # a cached first version is what a stale read would return
    backend.store(name, second)
    got = backend.load(name)
    _expect(got == second, f"a load after an overwrite returned {_describe(got, second)}"
            + (" (the old version)" if got == first else ""))
    size = backend.size(name)
    _expect(size == len(second), f"size() says {size} after an overwrite to {len(second)}")
    return "an overwrite is seen by the next load"


def _probe_conditional(backend: Volume, name: str, new: str) -> str:
    first, second = os.urandom(600), os.urandom(600)
    backend.store(name, first)
    _expect(backend.store(name, second, overwrite=False) is False,
            "store(overwrite=False) on an existing name did not return False")
    got = backend.load(name)
    _expect(got == first, "store(overwrite=False) on an existing name replaced its bytes")
    _expect(backend.store(new, second, overwrite=False) is True,
            "store(overwrite=False) on a new name did not return True")
    got = backend.load(new)
    _expect(got == second, f"a conditional write of a new name left {_describe(got, second)}")
    return "an existing name is kept; a new name is written"


def _probe_ranges(backend: Volume, name: str) -> str:
    data = os.urandom(1000)
    backend.store(name, data)
    cases = [("a middle range", 100, 200, data[100:300]),
             ("a range from an offset to the end", 900, None, data[900:]),
             ("a range past the end of the object (short read)", 950, 200, data[950:]),
             ("a range starting past the end (empty)", 1010, 5, b"")]
    for label, offset, size, want in cases:
        got = backend.load(name, offset, size)
        _expect(got == want, f"{label} [{offset}, +{size}] returned {_describe(got, want)}")
    return "middle, tail, short and empty ranges are exact"


def _probe_list(backend: Volume, folder: str, names: list[str]) -> str:
    for name in names:
        backend.store(name, os.urandom(10))
    listed = set(backend.list(folder))
    missing, extra = set(names) - listed, listed - set(names)
    if missing:
        raise _Failed(f"list() omits {len(missing)} of {len(names)} names just written "
                      f"({min(missing)})")
    if extra:
        raise _Failed(f"list() shows {len(extra)} names never written ({min(extra)})")
    return f"list() shows exactly the {len(names)} names written"


def _probe_list_after_delete(backend: Volume, folder: str, names: list[str]) -> str:
    for name in names:
        backend.store(name, os.urandom(10))
    gone, kept = names[0], set(names[1:])
    backend.delete(gone)
    listed = set(backend.list(folder))
    _expect(gone not in listed, f"list() still shows the deleted name {gone}")
    _expect(listed == kept, f"after a delete list() shows {len(listed)} names, not the "
            f"{len(kept)} left")
    return "a deleted name leaves the listing; the others stay"


def _probe_delete(backend: Volume, name: str) -> str:
    backend.store(name, os.urandom(300))
    backend.load(name)  # a cached copy is what a load after delete would wrongly return
    backend.delete(name)
    try:
        backend.load(name)
    except NotFound:
        pass
    else:
        raise _Failed("a load after delete() returned bytes instead of NotFound")
    _expect(not backend.exists(name), "exists() is True after delete()")
    backend.delete(name)  # deleting a missing name is not an error
    return "a deleted name is gone for load() and exists()"


def _probe_large_file(backend: Volume, name: str, size: int) -> str:
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="vst-validate-") as tmp:
        path = os.path.join(tmp, "big")
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _expect(backend.store_file(name, path) is True, "store_file() did not report the write")
        _expect(backend.store_file(name, path) is False,
                "store_file() on an existing name did not return False")
    stored = backend.size(name)
    _expect(stored == size, f"store_file() of {size} bytes left {stored}")
    got = backend.load(name)
    _expect(got == data, f"a load of a store_file() object returned {_describe(got, data)}")
    return f"a {size}-byte file round-trips through store_file()"
