"""Keyrings and their files.

A keyring is a DEK (the record key of vst/crypto/records.py) and an id key (the BLAKE3 key
of object ids), named by a random public ``keyring_id``. Its file, ``keys/<name>.toml`` in
the store and mirrored to every volume, holds one envelope per KEK (version 1):

    version = 1
    keyring_id = "<32 hex>"
    name = "..."
    store_id = "..."
    created = <unix seconds>

    [[envelope]]
    kek = "<32 hex>"
    kind = "x25519" | "command" | "passphrase"
    ...                                  (the kind's fields, see envelope.py)

Reading is strict: an unknown version or field, bad hex, a wrong length or a duplicate KEK
is a ``CorruptKey`` naming the file. The file holds nothing secret.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from vst.crypto._codec import Fields, emit_table, parse
from vst.crypto.envelope import Envelope, Kek, unwrap, wrap
from vst.crypto.kek import CommandKek, PassphraseKek, X25519Kek
from vst.errors import CorruptKey, UsageError, VstError, WrongKey

KEYRING_FILE_VERSION = 1
KEYRING_ID_SIZE = 16
MAX_NAME_LENGTH = 255


class Keyring(NamedTuple):
    """What an envelope protects. Its repr never shows the keys."""

    keyring_id: bytes   # 16 random bytes, public
    name: str
    dek: bytes          # 32 random bytes
    id_key: bytes       # 32 random bytes: the BLAKE3 key of object ids

    @property
    def fingerprint(self) -> str:
        return self.keyring_id.hex()

    @property
    def secret(self) -> bytes:
        """The 64 bytes an envelope wraps: DEK then id key."""
        return self.dek + self.id_key

    def __repr__(self) -> str:
        return f"Keyring(name={self.name!r}, keyring_id={self.keyring_id.hex()})"


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        return "a keyring name is 1 to 255 characters"
    if name in (".", "..") or name.startswith(".") or any(
            c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7f for c in name):
        return f"invalid keyring name {name!r}"
    return None


def new_keyring(name: str, *, random: Callable[[int], bytes] = os.urandom) -> Keyring:
    problem = _name_problem(name)
    if problem:
        raise UsageError(problem)
    return Keyring(random(KEYRING_ID_SIZE), name, random(32), random(32))


@dataclass
class KeyringFile:
    """``keys/<name>.toml``: a keyring's public id and name, the store it belongs to, and
    its envelopes."""

    keyring_id: bytes
    name: str
    store_id: str
    envelopes: list[Envelope] = field(default_factory=list)
    created: int = 0

    @classmethod
    def new(cls, keyring: Keyring, store_id: str, keks: Sequence[Kek | bytes] = (), *,
            created: int | None = None,
            random: Callable[[int], bytes] = os.urandom) -> KeyringFile:
        """A file for ``keyring`` in store ``store_id`` with an envelope for each KEK."""
        if not store_id or len(store_id.encode()) > 255:
            raise UsageError("a store id is 1 to 255 bytes")
        made = cls(keyring.keyring_id, keyring.name, store_id,
                   created=int(time.time()) if created is None else created)
        for kek in keks:
            made.add(keyring, kek, random=random)
        return made

    # -- encoding -------------------------------------------------------------------------

    def encode(self) -> bytes:
        parts = [emit_table([("version", KEYRING_FILE_VERSION),
                             ("keyring_id", self.keyring_id), ("name", self.name),
                             ("store_id", self.store_id), ("created", self.created)])]
        parts += ["\n" + emit_table(env.fields(), "envelope") for env in self.envelopes]
        return "".join(parts).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> KeyringFile:
        fields = Fields(parse(data, where), where)
        version = fields.integer("version", 0, 2**31)
        if version != KEYRING_FILE_VERSION:
            raise CorruptKey(f"{where}: unknown keyring file version {version}")
        keyring_id = fields.hex("keyring_id", KEYRING_ID_SIZE)
        name = fields.string("name", max_length=MAX_NAME_LENGTH)
        if _name_problem(name):
            raise CorruptKey(f"{where}: invalid keyring name")
        store_id = fields.string("store_id", max_length=255)
        if not store_id or len(store_id.encode()) > 255:
            raise CorruptKey(f"{where}: invalid store id")
        created = fields.integer("created", 0, 2**63 - 1)
        envelopes = []
        for index, table in enumerate(fields.tables("envelope")):
            inner = Fields(table, f"{where}: envelope {index + 1}")
            envelopes.append(Envelope.from_fields(inner))
            inner.done()
        fields.done()
        fingerprints = [env.kek_fingerprint for env in envelopes]
        if len(set(fingerprints)) != len(fingerprints):
            raise CorruptKey(f"{where}: two envelopes for the same KEK")
        return cls(keyring_id, name, store_id, envelopes, created)

    # -- envelopes ------------------------------------------------------------------------

    def add(self, keyring: Keyring, kek: Kek | bytes, *,
            random: Callable[[int], bytes] = os.urandom) -> None:
        """Wrap ``keyring`` for ``kek`` (replacing an envelope for the same fingerprint)."""
        if keyring.keyring_id != self.keyring_id:
            raise UsageError(f"keyring {keyring.fingerprint} is not the keyring of this file "
                             f"({self.keyring_id.hex()})")
        envelope = wrap(keyring, kek, self.store_id, random=random)
        for index, existing in enumerate(self.envelopes):
            if existing.kek_fingerprint == envelope.kek_fingerprint:
                self.envelopes[index] = envelope
                return
        self.envelopes.append(envelope)

    def remove(self, kek_fingerprint: str) -> bool:
        """Drop the envelope for ``kek_fingerprint``; False when there is none."""
        kept = [env for env in self.envelopes if env.kek_fingerprint != kek_fingerprint]
        removed = len(kept) != len(self.envelopes)
        self.envelopes = kept
        return removed

    def unlock(self, keks: Sequence[Kek], *, store_id: str | None = None) -> Keyring:
        """The keyring, opened by the first KEK that opens its envelope: X25519 keys first,
        then commands, then passphrases (each tried against every passphrase envelope).

        ``store_id``, the id of the store the caller read this file from, is checked first:
        a file from another store is WrongKey, even when one of ``keks`` would open it.
        WrongKey when nothing opens it (its message lists the envelopes' fingerprints);
        CorruptKey when the only envelopes that could open are damaged or weakened."""
        if store_id is not None and store_id != self.store_id:
            raise WrongKey(f"key file for keyring '{self.name}' is from another store "
                           f"({self.store_id}, not {store_id})",
                           hint="a keys/ file was copied between stores, or the store was "
                                "swapped")
        ordered = ([k for k in keks if isinstance(k, X25519Kek)]
                   + [k for k in keks if isinstance(k, CommandKek)])
        attempts: list[tuple[Envelope, Kek]] = [
            (env, kek) for kek in ordered for env in self.envelopes
            if env.kek_fingerprint == kek.fingerprint and env.kind != "passphrase"]
        attempts += [(env, kek) for kek in keks if isinstance(kek, PassphraseKek)
                     for env in self.envelopes if env.kind == "passphrase"]
        failures: list[VstError] = []
        for envelope, kek in attempts:
            try:
                secret = unwrap(envelope, kek, self.keyring_id, self.store_id)
            except (WrongKey, CorruptKey) as exc:
                failures.append(exc)
                continue
            return Keyring(self.keyring_id, self.name, secret[:32], secret[32:])
        for failure in failures:
            if isinstance(failure, CorruptKey):
                raise CorruptKey(f"keyring '{self.name}': {failure.message}")
        listed = ", ".join(f"{env.kind} {env.kek_fingerprint}" for env in self.envelopes)
        reason = f" ({failures[0].message})" if len(failures) == 1 else ""
        raise WrongKey(f"no key you hold opens keyring '{self.name}'{reason}",
                       hint=f"it opens with: {listed}" if listed else
                       "it has no envelopes left")
