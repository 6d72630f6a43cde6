"""Key-encryption keys (KEKs): what opens a keyring's envelopes.

Three kinds, each with a ``fingerprint`` (16 bytes as 32 lowercase hex digits) that names
it in envelopes and listings without revealing anything secret:

- ``X25519Kek``: a key pair whose private part vst holds in a file (the user's config
  dir). Fingerprint = BLAKE3(b"vst kek fingerprint v1 x25519" + public)[:16].
- ``PassphraseKek``: no file, the passphrase is the key (a recovery key on paper).
  master = scrypt(passphrase, salt, n, r, p); fingerprint = BLAKE3 keyed with master over
  (b"vst kek fingerprint v1 passphrase" + salt)[:16], so the fingerprint changes with the
  salt and reveals neither the passphrase nor master (it only lets someone test a guessed
  passphrase, which the envelope's tag allows anyway, at the same scrypt cost).
- ``CommandKek``: an external program holds the X25519 private key (a token, an HSM). Its
  fingerprint is that of its public key, like an ``X25519Kek`` holding the same key.

A KEK file (TOML, mode 0600, version 1):

    version = 1
    kind = "x25519"
    label = "..."
    fingerprint = "<32 hex>"          (checked against the public key on load)
    public = "<64 hex>"
    private = "<64 hex>"              (unsealed)
  or, sealed with a passphrase:
    kdf = "scrypt"
    n = 131072
    r = 8
    p = 1
    salt = "<32 hex>"                 (fresh on every save)
    sealed_private = "<96 hex>"       ChaCha20-Poly1305(key = scrypt(passphrase, salt, n, r,
                                      p), nonce = 12 zero bytes, private key, associated
                                      data = b"vst-kek-file-v1" + public + salt + n r p as
                                      u64 u32 u32 big-endian)

The nonce is constant because the key is used once: every save draws a new salt. The
associated data binds the KDF parameters, so lowering them in the file makes it fail to
open; parameters below ``MIN_KDF`` are refused before any work.
"""

from __future__ import annotations

import os
import shlex
import stat
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vst.crypto._codec import MAX_FILE_SIZE, Fields, emit_table, parse
from vst.errors import AlreadyExists, CorruptKey, Refused, UsageError, WrongKey, from_os_error
from vst.fsio import DEFAULT_FS, FileSystem


class KdfParams(NamedTuple):
    """scrypt's cost parameters: ``n`` (CPU/memory, a power of 2), ``r`` (block size),
    ``p`` (parallelism). Memory is 128 * n * r bytes."""

    n: int
    r: int
    p: int


DEFAULT_KDF = KdfParams(2**17, 8, 1)   # 128 MiB, ~0.4 s
MIN_KDF = KdfParams(2**14, 8, 1)       # 16 MiB, ~0.04 s
MAX_KDF_MEMORY = 1 << 30               # refuse files asking for more (a denial of service)

TEST_KDF_ALLOWED = False
"""Set by tests only, to use parameters below ``MIN_KDF`` for speed. Library callers and
files can never lower the minimum otherwise."""

KEY_FILE_VERSION = 1
SALT_SIZE = 16
_NONCE = bytes(12)
_FILE_AD = b"vst-kek-file-v1"


# -- the passphrase KDF --------------------------------------------------------------------


def _kdf_problem(kdf: KdfParams) -> str | None:
    n, r, p = kdf
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or p > 16 or 128 * n * r > MAX_KDF_MEMORY:
        return f"KDF parameters out of range (n={n}, r={r}, p={p})"
    if not TEST_KDF_ALLOWED and (n < MIN_KDF.n or r < MIN_KDF.r or p < MIN_KDF.p):
        return (f"KDF parameters below the minimum (n={n}, r={r}, p={p}; "
                f"the minimum is n={MIN_KDF.n}, r={MIN_KDF.r}, p={MIN_KDF.p})")
    return None


def check_kdf(kdf: KdfParams, where: str) -> None:
    """For parameters read from a file or an envelope: CorruptKey when out of range or below
    ``MIN_KDF`` (so an attacker cannot weaken them)."""
    problem = _kdf_problem(kdf)
    if problem:
        raise CorruptKey(f"{where}: {problem}")


def require_kdf(kdf: KdfParams) -> KdfParams:
    """For parameters given by a caller: UsageError when out of range or below ``MIN_KDF``."""
    kdf = KdfParams(*kdf)
    problem = _kdf_problem(kdf)
    if problem:
        raise UsageError(problem)
    return kdf


def kdf_bytes(kdf: KdfParams) -> bytes:
    return struct.pack(">QII", *kdf)


def scrypt(passphrase: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    """32 bytes from ``passphrase``; ``kdf`` must have been checked."""
    return Scrypt(salt=salt, length=32, n=kdf.n, r=kdf.r, p=kdf.p).derive(passphrase)


def public_fingerprint(public: bytes) -> str:
    return blake3.blake3(b"vst kek fingerprint v1 x25519" + public).digest(length=16).hex()


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes | bytearray) or not passphrase:
        raise UsageError("a passphrase must be non-empty bytes")


# -- X25519 ---------------------------------------------------------------------------------


class X25519Kek:
    """An X25519 key pair held by vst."""

    kind = "x25519"

    def __init__(self, private: X25519PrivateKey, label: str) -> None:
        self._private = private
        self.label = label
        self.public = private.public_key().public_bytes_raw()
        self.fingerprint = public_fingerprint(self.public)

    def __repr__(self) -> str:  # never the private key
        return f"X25519Kek(fingerprint={self.fingerprint}, label={self.label!r})"

    @classmethod
    def generate(cls, label: str, *, random: Callable[[int], bytes] = os.urandom) -> X25519Kek:
        return cls.from_private(random(32), label)

    @classmethod
    def from_private(cls, raw: bytes, label: str) -> X25519Kek:
        """The key for ``raw``, kept clamped (RFC 7748): X25519 ignores 5 bits of a private
        key, so keeping them canonical lets a key file show any changed bit."""
        if len(raw) != 32:
            raise UsageError("an X25519 private key is 32 bytes")
        return cls(X25519PrivateKey.from_private_bytes(_clamp(raw)), label)

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    def agree(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public``; ValueError for a low-order point."""
        return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))

    # -- the key file ---------------------------------------------------------------------

    def encode(self, *, passphrase: bytes | None = None, kdf: KdfParams = DEFAULT_KDF,
               random: Callable[[int], bytes] = os.urandom) -> bytes:
        """The key file's bytes (see the module docstring)."""
        fields: list[tuple[str, int | str | bytes]] = [
            ("version", KEY_FILE_VERSION), ("kind", self.kind), ("label", self.label),
            ("fingerprint", self.fingerprint), ("public", self.public)]
        if passphrase is None:
            fields.append(("private", self.private_bytes()))
        else:
            _check_passphrase(passphrase)
            kdf = require_kdf(kdf)
            salt = random(SALT_SIZE)
            box = ChaCha20Poly1305(scrypt(bytes(passphrase), salt, kdf))
            sealed = box.encrypt(_NONCE, self.private_bytes(), _file_ad(self.public, salt, kdf))
            fields += [("kdf", "scrypt"), ("n", kdf.n), ("r", kdf.r), ("p", kdf.p),
                       ("salt", salt), ("sealed_private", sealed)]
        header = "# vst key-encryption key: keep this file private\n"
        return (header + emit_table(fields)).encode()

    def save(self, path: str, *, passphrase: bytes | None = None, kdf: KdfParams = DEFAULT_KDF,
             fs: FileSystem = DEFAULT_FS) -> None:
        """Write the key file durably with mode 0600; AlreadyExists if ``path`` exists (a key
        file is never overwritten). Missing parent directories are created."""
        data = self.encode(passphrase=passphrase, kdf=kdf)
        parent = os.path.dirname(path)
        if parent:
            fs.makedirs(parent)
        if not fs.write_file(path, data, overwrite=False, mode=0o600):
            raise AlreadyExists(f"key file '{path}' already exists")

    @classmethod
    def decode(cls, data: bytes, where: str, *, passphrase: bytes | None = None) -> X25519Kek:
        fields, sealed = _read_fields(data, where)
        label = fields.string("label")
        fingerprint = fields.fingerprint("fingerprint")
        public = fields.hex("public", 32)
        if sealed:
            if fields.string("kdf") != "scrypt":
                raise CorruptKey(f"{where}: unknown KDF")
            kdf = KdfParams(fields.integer("n", 0, 2**40), fields.integer("r", 0, 2**20),
                            fields.integer("p", 0, 2**20))
            salt = fields.hex("salt", SALT_SIZE)
            box = fields.hex("sealed_private", 32 + 16)
            fields.done()
            check_kdf(kdf, where)
            if passphrase is None:
                raise WrongKey(f"key file '{where}' is sealed: a passphrase is needed")
            _check_passphrase(passphrase)
            try:
                raw = ChaCha20Poly1305(scrypt(bytes(passphrase), salt, kdf)).decrypt(
                    _NONCE, box, _file_ad(public, salt, kdf))
            except InvalidTag:
                raise WrongKey(f"wrong passphrase for key file '{where}'",
                               hint="or the file was altered") from None
        else:
            raw = fields.hex("private", 32)
            fields.done()
            if raw != _clamp(raw):
                raise CorruptKey(f"{where}: the private key is not in canonical form")
        kek = cls.from_private(raw, label)
        if kek.public != public or kek.fingerprint != fingerprint:
            raise CorruptKey(f"{where}: the public key or fingerprint does not match the "
                             f"private key")
        return kek

    @classmethod
    def load(cls, path: str, *, passphrase: bytes | None = None) -> X25519Kek:
        """Read a key file. Refused when others may read it (as ssh does); WrongKey when it is
        sealed and the passphrase is missing or wrong; CorruptKey when it is damaged."""
        return cls.decode(_read_private_file(path), path, passphrase=passphrase)

    @staticmethod
    def sealed(path: str) -> bool:
        """Whether the key file at ``path`` needs a passphrase to load."""
        return _read_fields(_read_private_file(path), path)[1]


def _clamp(raw: bytes) -> bytes:
    clamped = bytearray(raw)
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    return bytes(clamped)


def _file_ad(public: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    return _FILE_AD + public + salt + kdf_bytes(kdf)


def _read_fields(data: bytes, where: str) -> tuple[Fields, bool]:
    fields = Fields(parse(data, where), where)
    if fields.integer("version", 0, 2**31) != KEY_FILE_VERSION:
        raise CorruptKey(f"{where}: unknown key file version {fields.table['version']}")
    kind = fields.string("kind")
    if kind != X25519Kek.kind:
        raise CorruptKey(f"{where}: not an X25519 key file (kind '{kind[:20]}')")
    return fields, fields.has("sealed_private")


def _read_private_file(path: str) -> bytes:
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; fstat needs the open file)
    except OSError as exc:
        raise from_os_error(exc, f"cannot read key file '{path}'") from exc
    with f:
        try:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CorruptKey(f"key file '{path}' is not a regular file")
            if info.st_mode & 0o077:
                raise Refused(f"key file '{path}' is accessible by others "
                              f"(mode {stat.S_IMODE(info.st_mode):04o}): refusing to use it",
                              hint=f"chmod 600 '{path}' (and consider the key exposed)")
            # parse() refuses anything over MAX_FILE_SIZE: read no more than one byte past it.
            return f.read(MAX_FILE_SIZE + 1)
        except OSError as exc:
            raise from_os_error(exc, f"cannot read key file '{path}'") from exc


# -- passphrase -----------------------------------------------------------------------------


class PassphraseKek:
    """A passphrase as a KEK. Envelopes wrapped with it use its ``salt`` (random unless
    given) and ``kdf``; unwrapping uses the salt and parameters in each envelope. scrypt
    results are cached per (salt, parameters), so an instance costs one scrypt per salt."""

    kind = "passphrase"

    def __init__(self, passphrase: bytes, kdf: KdfParams = DEFAULT_KDF, *,
                 salt: bytes | None = None,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        _check_passphrase(passphrase)
        self._passphrase = bytes(passphrase)
        self.kdf = require_kdf(kdf)
        self.salt = random(SALT_SIZE) if salt is None else bytes(salt)
        if len(self.salt) != SALT_SIZE:
            raise UsageError(f"a passphrase salt is {SALT_SIZE} bytes")
        self._derived: dict[tuple[bytes, KdfParams], tuple[str, bytes]] = {}

    def __repr__(self) -> str:  # never the passphrase
        return f"PassphraseKek(salt={self.salt.hex()}, kdf={tuple(self.kdf)})"

    @property
    def fingerprint(self) -> str:
        return self.derive(self.salt, self.kdf)[0]

    def derive(self, salt: bytes, kdf: KdfParams) -> tuple[str, bytes]:
        """(fingerprint, wrapping key) for this passphrase under ``salt`` and ``kdf`` (which
        the caller has checked)."""
        cached = self._derived.get((salt, kdf))
        if cached is None:
            master = scrypt(self._passphrase, salt, kdf)
            fingerprint = blake3.blake3(b"vst kek fingerprint v1 passphrase" + salt,
                                        key=master).digest(length=16).hex()
            wrap_key = blake3.blake3(b"vst envelope key v1 passphrase", key=master).digest()
            cached = self._derived[(salt, kdf)] = (fingerprint, wrap_key)
        return cached


# -- external command ----------------------------------------------------------------------


class CommandKek:
    """An external program holding an X25519 private key (a hardware token, an HSM).

    Unwrapping runs ``command`` with the envelope request (TOML text, see
    ``vst.crypto.envelope.request_bytes``) on stdin; the program prints the 64-byte keyring
    secret as hex on stdout and exits 0. Its stderr is the caller's (so it can say "touch
    your key"); a PIN prompt should use the terminal, since stdin is the request. A missing
    program, a non-zero exit, ``timeout`` seconds without an answer, or output that is not a
    key are WrongKey naming the command; no message ever holds what it printed."""

    kind = "command"

    def __init__(self, public: bytes, command: Sequence[str], *, label: str = "",
                 timeout: float = 60.0) -> None:
        if len(public) != 32:
            raise UsageError("an X25519 public key is 32 bytes")
        if not command:
            raise UsageError("a key command needs a program")
        self.public = bytes(public)
        self.command = list(command)
        self.label = label
        self.timeout = timeout
        self.fingerprint = public_fingerprint(self.public)

    def __repr__(self) -> str:
        return f"CommandKek(fingerprint={self.fingerprint}, command={self.command!r})"

    def run(self, request: bytes) -> bytes:
        """The 64 bytes the program returns for ``request`` (not yet checked)."""
        import subprocess  # here: every command loads keys, few run a key command

        name = shlex.join(self.command)
        try:
            done = subprocess.run(self.command, input=request, stdout=subprocess.PIPE,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise WrongKey(f"key command '{name}' gave no answer within "
                           f"{self.timeout:g} s") from None
        except OSError as exc:
            raise WrongKey(f"cannot run key command '{name}': "
                           f"{exc.strerror or exc}") from None
        if done.returncode != 0:
            raise WrongKey(f"key command '{name}' failed (exit status {done.returncode})")
        text = done.stdout.strip()
        if len(text) != 128:
            raise WrongKey(f"key command '{name}' did not print a key")
        try:
            secret = bytes.fromhex(text.decode("ascii"))
        except ValueError:
            secret = b""
        if len(secret) != 64:
            raise WrongKey(f"key command '{name}' did not print a key")
        return secret
