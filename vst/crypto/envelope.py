"""Envelopes: a keyring's 64-byte secret (DEK + id key) wrapped for one KEK.

Every envelope is ChaCha20-Poly1305 with a random 12-byte nonce over the secret, with

    associated data = b"vst-envelope-v1" + u8 len + store_id + keyring_id (16)
                      + kek_fingerprint (32 ASCII hex) + u8 len + kind
                      [+ n r p as u64 u32 u32 big-endian, passphrase envelopes]

so an envelope copied to another store or keyring, relabelled, or with its KDF parameters
edited fails to open. The key depends on the kind:

- ``x25519`` and ``command``: an ephemeral X25519 key pair per envelope (its public half is
  stored); key = HKDF-SHA256(X25519(ephemeral, kek.public), salt = ephemeral public + kek
  public, info = b"vst envelope v1" + keyring_id + store_id). These envelopes also carry a
  ``check`` = BLAKE3(b"vst envelope check v1" + associated data + secret): the secret
  returned by an external command is verified against it (the 512-bit secret makes it
  reveal nothing). Either kind opens with either an ``X25519Kek`` or a ``CommandKek`` whose
  public key matches: granting needs only the public key.
- ``passphrase``: scrypt parameters and salt are stored; key = the ``PassphraseKek``'s
  wrapping key for that salt and those parameters (see kek.py). The nonce is random
  because one passphrase KEK (one salt) wraps many keyrings.

An external command receives a request: the envelope's fields plus ``version``,
``store_id`` and ``keyring_id``, as TOML (``request_bytes``); ``open_request`` is what such
a program does with the private key (tests use it; so can an adapter for a token).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vst.crypto._codec import Field, Fields, emit_table, parse
from vst.crypto.kek import (
    SALT_SIZE,
    CommandKek,
    KdfParams,
    PassphraseKek,
    X25519Kek,
    check_kdf,
    kdf_bytes,
    public_fingerprint,
)
from vst.errors import CorruptKey, UsageError, WrongKey

if TYPE_CHECKING:
    from vst.crypto.keyring import Keyring

Kek = X25519Kek | PassphraseKek | CommandKek
SECRET_SIZE = 64
NONCE_SIZE = 12
KINDS = ("x25519", "passphrase", "command")
_DH_KINDS = ("x25519", "command")
REQUEST_VERSION = 1


@dataclass(frozen=True)
class Envelope:
    """One wrapped copy of a keyring secret. ``ephemeral`` and ``check`` are set for the
    x25519 and command kinds, ``kdf`` and ``salt`` for the passphrase kind."""

    kek_fingerprint: str
    kind: str
    nonce: bytes
    ciphertext: bytes                    # the 64-byte secret + 16-byte tag
    ephemeral: bytes | None = None
    check: bytes | None = None
    kdf: KdfParams | None = None
    salt: bytes | None = None

    def fields(self) -> list[Field]:
        """The TOML fields, in their pinned order."""
        out: list[Field] = [("kek", self.kek_fingerprint), ("kind", self.kind)]
        if self.kind == "passphrase":
            assert self.kdf is not None and self.salt is not None
            out += [("kdf", "scrypt"), ("n", self.kdf.n), ("r", self.kdf.r),
                    ("p", self.kdf.p), ("salt", self.salt)]
        else:
            assert self.ephemeral is not None and self.check is not None
            out += [("ephemeral", self.ephemeral)]
        out += [("nonce", self.nonce), ("ciphertext", self.ciphertext)]
        if self.check is not None:
            out.append(("check", self.check))
        return out

    @classmethod
    def from_fields(cls, fields: Fields) -> Envelope:
        """Read one envelope's fields (strictly; the caller calls ``fields.done()``)."""
        fingerprint = fields.fingerprint("kek")
        kind = fields.string("kind")
        if kind not in KINDS:
            raise CorruptKey(f"{fields.where}: unknown envelope kind '{kind[:20]}'")
        if kind == "passphrase":
            if fields.string("kdf") != "scrypt":
                raise CorruptKey(f"{fields.where}: unknown KDF")
            kdf = KdfParams(fields.integer("n", 0, 2**40), fields.integer("r", 0, 2**20),
                            fields.integer("p", 0, 2**20))
            salt = fields.hex("salt", SALT_SIZE)
            nonce = fields.hex("nonce", NONCE_SIZE)
            ciphertext = fields.hex("ciphertext", SECRET_SIZE + 16)
            return cls(fingerprint, kind, nonce, ciphertext, kdf=kdf, salt=salt)
        ephemeral = fields.hex("ephemeral", 32)
        nonce = fields.hex("nonce", NONCE_SIZE)
        ciphertext = fields.hex("ciphertext", SECRET_SIZE + 16)
        check = fields.hex("check", 32)
        return cls(fingerprint, kind, nonce, ciphertext, ephemeral=ephemeral, check=check)


def associated_data(store_id: str, keyring_id: bytes, fingerprint: str, kind: str,
                    kdf: KdfParams | None = None) -> bytes:
    store = store_id.encode()
    if len(store) > 255 or len(keyring_id) != 16 or len(fingerprint) != 32:
        raise UsageError("malformed store id, keyring id or fingerprint")
    ad = (b"vst-envelope-v1" + bytes([len(store)]) + store + keyring_id
          + fingerprint.encode() + bytes([len(kind)]) + kind.encode())
    if kdf is not None:
        ad += kdf_bytes(kdf)
    return ad


def _dh_key(shared: bytes, ephemeral: bytes, public: bytes, keyring_id: bytes,
            store_id: str) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + public,
               info=b"vst envelope v1" + keyring_id + store_id.encode()).derive(shared)
    return ChaCha20Poly1305(key)


def _same(a: bytes, b: bytes) -> bool:
    """``a == b`` in time that says nothing of where they differ: both are hashed under a
    key of this call's own first ("double HMAC" comparison), so == stops at a place no
    one can relate to them. Not ``hmac.compare_digest``: importing hmac loads the system's
    libcrypto beside the cipher's own (3.3 MiB of every command's memory, 11 ms of a cold
    start), for two comparisons."""
    key = os.urandom(32)
    return blake3.blake3(a, key=key).digest() == blake3.blake3(b, key=key).digest()


def _check_value(ad: bytes, secret: bytes) -> bytes:
    return blake3.blake3(b"vst envelope check v1" + ad + secret).digest()


def wrap(keyring: Keyring, kek: Kek | bytes, store_id: str, *,
         random: Callable[[int], bytes] = os.urandom) -> Envelope:
    """An envelope of ``keyring``'s secret for ``kek``: an X25519 or command KEK, a
    passphrase KEK, or a bare 32-byte X25519 public key (a grant needs nothing more)."""
    secret = keyring.dek + keyring.id_key
    nonce = random(NONCE_SIZE)
    if isinstance(kek, PassphraseKek):
        fingerprint, wrap_key = kek.derive(kek.salt, kek.kdf)
        ad = associated_data(store_id, keyring.keyring_id, fingerprint, kek.kind, kek.kdf)
        return Envelope(fingerprint, kek.kind, nonce,
                        ChaCha20Poly1305(wrap_key).encrypt(nonce, secret, ad),
                        kdf=kek.kdf, salt=kek.salt)
    if isinstance(kek, bytes | bytearray):
        public, kind = bytes(kek), "x25519"
        if len(public) != 32:
            raise UsageError("an X25519 public key is 32 bytes")
    else:
        public, kind = kek.public, kek.kind
    fingerprint = public_fingerprint(public)
    ephemeral_key = X25519PrivateKey.from_private_bytes(random(32))
    ephemeral = ephemeral_key.public_key().public_bytes_raw()
    try:
        shared = ephemeral_key.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise UsageError("not a usable X25519 public key") from None
    ad = associated_data(store_id, keyring.keyring_id, fingerprint, kind)
    box = _dh_key(shared, ephemeral, public, keyring.keyring_id, store_id)
    return Envelope(fingerprint, kind, nonce, box.encrypt(nonce, secret, ad),
                    ephemeral=ephemeral, check=_check_value(ad, secret))


def unwrap(envelope: Envelope, kek: Kek, keyring_id: bytes, store_id: str) -> bytes:
    """The 64-byte secret in ``envelope``. WrongKey when ``kek`` is not the one it was
    wrapped for (or the passphrase is wrong), or when the envelope does not authenticate
    (moved from another store or keyring, or altered); CorruptKey when its KDF parameters
    are below the minimum. Messages name fingerprints, never a secret."""
    short = envelope.kek_fingerprint[:16]
    moved = (f"the envelope for KEK {short} does not open: it belongs to another store or "
             f"keyring, or was altered")
    if isinstance(kek, PassphraseKek):
        if envelope.kind != "passphrase":
            raise WrongKey(f"a passphrase does not open the {envelope.kind} envelope for "
                           f"KEK {short}")
        assert envelope.kdf is not None and envelope.salt is not None
        check_kdf(envelope.kdf, f"envelope for KEK {short}")
        fingerprint, wrap_key = kek.derive(envelope.salt, envelope.kdf)
        if fingerprint != envelope.kek_fingerprint:
            raise WrongKey(f"wrong passphrase for the envelope of KEK {short}")
        ad = associated_data(store_id, keyring_id, fingerprint, envelope.kind, envelope.kdf)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(envelope.nonce, envelope.ciphertext, ad)
        except InvalidTag:
            raise WrongKey(moved) from None
    if envelope.kind not in _DH_KINDS:
        raise WrongKey(f"the {envelope.kind} envelope for KEK {short} needs a passphrase")
    if kek.fingerprint != envelope.kek_fingerprint:
        raise WrongKey(f"the envelope is for KEK {short}, not {kek.fingerprint[:16]}")
    assert envelope.ephemeral is not None and envelope.check is not None
    ad = associated_data(store_id, keyring_id, envelope.kek_fingerprint, envelope.kind)
    if isinstance(kek, CommandKek):
        secret = kek.run(request_bytes(envelope, keyring_id, store_id))
        if not _same(_check_value(ad, secret), envelope.check):
            raise WrongKey(f"key command '{shlex.join(kek.command)}' returned a key that does "
                           f"not open the envelope for KEK {short}")
        return secret
    try:
        shared = kek.agree(envelope.ephemeral)
    except ValueError:
        raise CorruptKey(f"the envelope for KEK {short} has an invalid ephemeral key") from None
    box = _dh_key(shared, envelope.ephemeral, kek.public, keyring_id, store_id)
    try:
        secret = box.decrypt(envelope.nonce, envelope.ciphertext, ad)
    except InvalidTag:
        raise WrongKey(moved) from None
    if not _same(_check_value(ad, secret), envelope.check):
        raise CorruptKey(f"the envelope for KEK {short} has a damaged check value")
    return secret


# -- requests to external commands ----------------------------------------------------------


def request_bytes(envelope: Envelope, keyring_id: bytes, store_id: str) -> bytes:
    """What a ``CommandKek``'s program reads on stdin: everything needed to open the
    envelope with the private key (nothing secret)."""
    head: list[Field] = [("version", REQUEST_VERSION), ("store_id", store_id),
                         ("keyring_id", keyring_id)]
    return ("# vst envelope: print the 64-byte keyring secret in hex on stdout\n"
            + emit_table(head + envelope.fields())).encode()


def open_request(data: bytes, kek: X25519Kek) -> bytes:
    """What a key command does: the 64-byte secret for the request ``data`` (from
    ``request_bytes``), opened with ``kek``."""
    fields = Fields(parse(data, "envelope request"), "envelope request")
    if fields.integer("version", 0, 2**31) != REQUEST_VERSION:
        raise CorruptKey("envelope request: unknown version")
    store_id = fields.string("store_id", max_length=255)
    keyring_id = fields.hex("keyring_id", 16)
    envelope = Envelope.from_fields(fields)
    fields.done()
    return unwrap(envelope, kek, keyring_id, store_id)
