"""``vst key rotate``: give a keyring a new data key and re-encrypt what it sealed.

Cost is proportional to that keyring's packs, not the store's. The new keyring keeps the
old one's id key, so object ids, trees, commits and refs stay as they are (working copies
and other clients need nothing), and takes a new data key and a new keyring id: its
records are sealed anew into new packs. It is wrapped again for the KEKs of the old
envelopes whose public keys this client knows (yours), for a recovery passphrase if one
is given, and not for ``drop`` (a revoked KEK). What a revoked KEK could read before stays
readable to it wherever old packs survive (a copy it took, an append-only store); from here
on it cannot read new records, nor the re-sealed old ones.

The order keeps every step safe to interrupt and run again:

1. the new keyring file is written beside the old one (``NAME~N``);
2. every pack of the old keyring is read from a copy that verifies, its records unsealed
   with the old key and sealed with the new one into new packs, made durable on the
   collections' policy volumes;
3. the index points every object at its new copy (one transaction);
4. each collection using the keyring is switched to the new one;
5. the old packs are deleted from the volumes (kept in an append-only store) and the old
   keyring file removed.

A crash before 3 leaves unused new packs; after it, both keyrings open what they sealed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vst.errors import UsageError, VstError
from vst.objects.odb import pack_name
from vst.objects.pack import parse_pack
from vst.objects.seal import seal, unseal
from vst.store import Store


@dataclass(slots=True)
class RotateResult:
    old: str  # keyring names
    new: str
    collections: list[str]
    packs: int = 0  # old packs re-sealed
    objects: int = 0
    bytes: int = 0  # of new packs' records
    granted: list[str] = field(default_factory=list)  # KEK fingerprints of the new keyring
    lost: list[str] = field(default_factory=list)  # old envelopes not carried over
    kept_old_packs: bool = False  # an append-only store keeps them


def rotate_keyring(store: Store, name: str, *, drop: Sequence[str] = (),
                   passphrase: bytes | None = None,
                   on_bytes: Callable[[int], None] = lambda _n: None) -> RotateResult:
    from vst.crypto.kek import CommandKek, PassphraseKek
    from vst.crypto.keyring import Keyring, KeyringFile
    from vst.ssh.client import RemoteStore

    if isinstance(store, RemoteStore):
        # It rewrites every pack of the keyring on the store's volumes: a job for the
        # machine holding them, where the user's key must then be at hand.
        raise UsageError(f"keyrings of '{store.path}' are rotated on the machine that "
                         "holds the store", hint="run 'vst key rotate' there")
    old_file = store.keyrings.read(name)
    old = store.keyrings.unlock(name)
    users = [c for c in store.collection_names() if store.collection_keyring(c) == name]
    new_name = _next_name(store, name)
    new = Keyring(os.urandom(16), new_name, os.urandom(32), old.id_key)

    source = store.keyrings.source
    mine = {info.fingerprint: info for info in source.infos()} if source is not None else {}
    keks: list[Any] = []
    result = RotateResult(name, new_name, users)
    for envelope in old_file.envelopes:
        fingerprint = envelope.kek_fingerprint
        if fingerprint in drop:
            result.lost.append(fingerprint)
        elif envelope.kind == "passphrase":
            if passphrase is None:
                result.lost.append(fingerprint)
        elif fingerprint in mine:
            info = mine[fingerprint]
            keks.append(CommandKek(info.public, info.command, label=info.label)
                        if info.kind == "command" else info.public)
        else:
            result.lost.append(fingerprint)  # someone else's: its public key is not here
    if passphrase is not None and any(e.kind == "passphrase" and e.kek_fingerprint not in drop
                                      for e in old_file.envelopes):
        keks.append(PassphraseKek(passphrase))
    if not keks:
        raise UsageError(f"rotating keyring '{name}' would leave no key that opens it",
                         hint="keep one of your keys, or give the recovery passphrase")
    new_file = KeyringFile.new(new, store.store_id, keks)
    store.keyrings.write(new_file, new=True)  # 1
    result.granted = [e.kek_fingerprint for e in new_file.envelopes]
    sealing = store.keyrings.remember(new)
    old_sealing = store.keyrings.sealing(name)

    odb = store.odb
    rows = [row for row in odb.index.packs() if row.keyring == old.keyring_id]
    placement = store.placement(users[0] if users else None)
    with odb.writer(placement, owner=users[0] if users else None, sealing=sealing,
                    keep_indexes=True) as writer:
        for row in rows:  # 2
            data = odb.load_verified(row.pack)
            index = parse_pack(data, str(row.pack))
            view = memoryview(data)
            for entry in index.entries:
                if odb.index.lookup(entry.oid) is None:
                    continue
                kind, content = unseal(view[entry.offset:entry.offset + entry.length],
                                       entry.oid, old_sealing, str(row.pack))
                writer.add_record(entry.oid, seal(entry.oid, kind, content,
                                                  odb.compression_level, sealing.cipher))
                result.objects += 1
            result.packs += 1
            on_bytes(row.size)
    odb.index.relocate([(pack, index) for pack, index in writer.written
                        if index is not None])  # 3
    result.bytes = writer.bytes_written
    for collection in users:  # 4
        store.set_collection_keyring(collection, new_name)
        if store.known is not None:
            store.known.rekeyed(collection, new.keyring_id)
    # 5: what no object points at any more
    gone = [row for row in rows if odb.index.objects_in(row.pack) == 0]
    if store.append_only:
        result.kept_old_packs = True
    else:
        for row in gone:
            for volume in store.volumes():
                if volume.volume_id in row.volumes:
                    try:
                        volume.backend.delete(pack_name(row.pack))
                    except VstError as exc:
                        store.warn(f"cannot delete old pack {row.pack} from volume "
                                   f"'{volume.name}': {exc.message}")
        odb.index.forget_packs(row.pack for row in gone)
        store.keyrings.remove(name)
    return result


def _next_name(store: Store, name: str) -> str:
    match = re.fullmatch(r"(.*)~(\d+)", name)
    base, number = (match.group(1), int(match.group(2))) if match else (name, 1)
    number += 1
    while store.keyrings.exists(f"{base}~{number}"):
        number += 1
    return f"{base}~{number}"
