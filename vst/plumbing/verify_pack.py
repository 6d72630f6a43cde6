"""``vst verify-pack``: check a pack file, or every copy of a stored pack, byte by byte.

Needs no key for the pack-level checks (name = BLAKE3 of the bytes, header, index, footer)
and the records' framing; records are unsealed and re-hashed against their ids where the
pack's keyring can be opened (always, for unencrypted packs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from vst.errors import Corrupt, NotFound, VstError
from vst.fsio import read_file
from vst.objects.oid import Oid, is_full_hex, is_prefix
from vst.objects.pack import NO_KEYRING, pack_id, parse_pack
from vst.objects.seal import PLAIN, Sealing, verify_record
from vst.store import Store


@dataclass(frozen=True, slots=True)
class PackObject:
    oid: Oid
    kind: str
    size: int
    stored: int
    offset: int


@dataclass(frozen=True, slots=True)
class PackReport:
    where: str
    objects: list[PackObject]
    problems: list[str]


Sealings = Callable[[bytes | None], Sealing | None]


def _plain(keyring: bytes | None) -> Sealing | None:
    return PLAIN if keyring is None or keyring == NO_KEYRING else None


def verify_pack_bytes(data: bytes, expected: Oid | None, sealings: Sealings,
                      where: str) -> PackReport:
    """``sealings`` gives the sealing of the pack's keyring, or None (framing only)."""
    problems: list[str] = []
    if expected is not None and pack_id(data) != expected:
        problems.append(f"{where}: content does not match its name")
    try:
        index = parse_pack(data, where)
    except Corrupt as exc:
        return PackReport(where, [], [*problems, str(exc)])
    objects = []
    view = memoryview(data)
    sealing = sealings(index.keyring_id)
    for entry in index:
        record = view[entry.offset:entry.offset + entry.length]
        try:
            checked = verify_record(record, entry.oid, sealing, where)
        except VstError as exc:
            problems.append(str(exc))
            continue
        kind, size = checked if checked is not None else ("encrypted", -1)
        objects.append(PackObject(entry.oid, kind if isinstance(kind, str) else kind.label,
                                  size, entry.length, entry.offset))
    return PackReport(where, objects, problems)


def verify_pack(store: Store | None, name: str) -> list[PackReport]:
    """``name`` is a pack file's path, or a pack id or prefix in ``store``."""
    if os.path.isfile(name):
        base = os.path.basename(name)
        expected = Oid.from_hex(base) if is_full_hex(base) else None
        sealings = store.odb.sealing_or_none if store else _plain
        return [verify_pack_bytes(read_file(name), expected, sealings, f"pack file '{name}'")]
    if store is None or not is_prefix(name):
        raise NotFound(f"no pack file '{name}'")
    matches = [row for row in store.odb.index.packs() if row.pack.hex.startswith(name)]
    if not matches:
        raise NotFound(f"no pack '{name}' in the store")
    if len(matches) > 1:
        raise NotFound(f"pack prefix '{name}' is ambiguous")
    row = matches[0]
    reports = []
    for volume in store.volumes():
        if volume.volume_id not in row.volumes:
            continue
        where = f"pack {row.pack} on volume '{volume.name}'"
        try:
            data = store.odb.load_pack(volume, row.pack)
        except VstError as exc:
            reports.append(PackReport(where, [], [f"{where}: {exc}"]))
            continue
        reports.append(verify_pack_bytes(data, row.pack, store.odb.sealing_or_none, where))
    return reports
