"""The user's key-encryption keys: the files in their key folder (by default
``<user config dir>/keys/``), one more key file named by the caller (``VST_KEY_FILE``), and a
passphrase (for sealed key files and passphrase envelopes, asked only when needed).

A key file is either an X25519 KEK (vst/crypto/kek.py: mode 0600, the private key plain or
sealed with a passphrase) or a command KEK: the public key of a private key that a program
holds (a hardware token, an HSM)::

    version = 1
    kind = "command"
    label = "yubikey"
    fingerprint = "<32 hex>"
    public = "<64 hex>"
    command = ["age-plugin-yubikey", "--vst"]

Nothing here prints or prompts: the passphrase comes from a callable the CLI provides.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from vst.errors import AlreadyExists, CorruptKey, NotFound, UsageError
from vst.fsio import DEFAULT_FS, FileSystem, read_file

KEY_SUFFIX = ".toml"
DEFAULT_LABEL = "default"
_LABEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")

# passphrase(why) -> the passphrase, or None when there is none to give.
Passphrase = Callable[[str], bytes | None]


class KeyInfo(NamedTuple):
    """What a key file says without its private part."""

    path: str
    kind: str  # "x25519" or "command"
    label: str
    fingerprint: str
    public: bytes
    sealed: bool  # needs a passphrase to load
    command: tuple[str, ...] = ()


def check_label(label: str) -> str:
    if not _LABEL_RE.match(label):
        raise UsageError(f"invalid key label '{label}'",
                         hint="use letters, digits, '.', '_' and '-' (up to 64)")
    return label


def read_info(path: str) -> KeyInfo:
    """The public fields of the key file at ``path`` (CorruptKey when they do not parse)."""
    try:
        table = tomllib.loads(read_file(path).decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorruptKey(f"key file '{path}' does not parse: {exc}") from None
    kind = table.get("kind")
    try:
        public = bytes.fromhex(table["public"])
        fingerprint, label = table["fingerprint"], table["label"]
    except (KeyError, TypeError, ValueError):
        raise CorruptKey(f"key file '{path}' lacks a public key, fingerprint or label") from None
    if kind not in ("x25519", "command") or len(public) != 32 \
            or not isinstance(fingerprint, str) or not isinstance(label, str):
        raise CorruptKey(f"key file '{path}' is not a vst key")
    command = table.get("command", [])
    if kind == "command" and (not isinstance(command, list) or not command
                              or not all(isinstance(part, str) for part in command)):
        raise CorruptKey(f"key file '{path}': a command key needs its command")
    from vst.crypto.kek import public_fingerprint

    if fingerprint != public_fingerprint(public):
        raise CorruptKey(f"key file '{path}': the fingerprint does not match the public key")
    return KeyInfo(path, kind, label, fingerprint, public, "sealed_private" in table,
                   tuple(command) if kind == "command" else ())


class UserKeys:
    """The user's KEKs, as a KeySource for a store's keyrings (vst/keyrings.py)."""

    def __init__(self, directory: str, *, key_file: str | None = None,
                 passphrase: Passphrase = lambda _why: None,
                 fs: FileSystem = DEFAULT_FS) -> None:
        self.directory = directory
        self.key_file = key_file
        self._passphrase = passphrase
        self._asked: bytes | None = None
        self.fs = fs
        self.created: KeyInfo | None = None  # the KEK made on first use, if one was

    # -- files ------------------------------------------------------------------------------

    def paths(self) -> list[str]:
        paths = []
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            names = []
        for name in names:
            if name.endswith(KEY_SUFFIX) and not name.startswith("."):
                paths.append(os.path.join(self.directory, name))
        if self.key_file:
            if not os.path.isfile(self.key_file):
                raise NotFound(f"key file '{self.key_file}' not found")
            paths.append(os.path.abspath(self.key_file))
        return paths

    def infos(self) -> list[KeyInfo]:
        return [read_info(path) for path in self.paths()]

    def passphrase(self, why: str) -> bytes | None:
        if self._asked is None:
            self._asked = self._passphrase(why)
        return self._asked

    def generate(self, label: str, *, passphrase: bytes | None = None,
                 kdf: Any = None) -> KeyInfo:
        """A new X25519 KEK saved as ``<label>.toml`` (sealed with ``passphrase`` if given);
        AlreadyExists for a label in use."""
        from vst.crypto.kek import DEFAULT_KDF, X25519Kek

        path = self._path(label)
        kek = X25519Kek.generate(label)
        kek.save(path, passphrase=passphrase, kdf=kdf or DEFAULT_KDF, fs=self.fs)
        return read_info(path)

    def add_command(self, label: str, public: bytes, command: Sequence[str]) -> KeyInfo:
        """Record a command KEK (the program holds the private key of ``public``)."""
        from vst.crypto._codec import emit_table
        from vst.crypto.kek import public_fingerprint

        if len(public) != 32 or not command:
            raise UsageError("a command key needs a 32-byte X25519 public key and a program")
        path = self._path(label)
        text = emit_table([("version", 1), ("kind", "command"), ("label", label),
                           ("fingerprint", public_fingerprint(public)), ("public", public)])
        text += "command = [" + ", ".join(_toml_string(part) for part in command) + "]\n"
        self.fs.makedirs(self.directory)
        if not self.fs.write_file(path, text.encode(), overwrite=False, mode=0o600):
            raise AlreadyExists(f"a key labelled '{label}' exists ('{path}')")
        return read_info(path)

    def import_private(self, raw: bytes, label: str, *,
                       passphrase: bytes | None = None, kdf: Any = None) -> KeyInfo:
        from vst.crypto.kek import DEFAULT_KDF, X25519Kek

        path = self._path(label)
        X25519Kek.from_private(raw, label).save(path, passphrase=passphrase,
                                                kdf=kdf or DEFAULT_KDF, fs=self.fs)
        return read_info(path)

    def load(self, info: KeyInfo) -> Any:
        """The KEK of ``info`` (asking for the passphrase of a sealed file)."""
        from vst.crypto.kek import CommandKek, X25519Kek

        if info.kind == "command":
            return CommandKek(info.public, info.command, label=info.label)
        passphrase = self.passphrase(f"passphrase of key '{info.label}'") if info.sealed \
            else None
        return X25519Kek.load(info.path, passphrase=passphrase)

    def find(self, name: str) -> KeyInfo:
        """The key whose label, fingerprint or fingerprint prefix (8+ digits) is ``name``."""
        infos = self.infos()
        found = [i for i in infos if i.label == name] or \
            [i for i in infos if len(name) >= 8 and i.fingerprint.startswith(name.lower())]
        if not found:
            raise NotFound(f"no key '{name}'", hint="see 'vst key list'")
        if len(found) > 1:
            raise UsageError(f"'{name}' names more than one key", hint="give more digits")
        return found[0]

    def _path(self, label: str) -> str:
        return os.path.join(self.directory, check_label(label) + KEY_SUFFIX)

    # -- a KeySource ------------------------------------------------------------------------

    def keks_for(self, fingerprints: Sequence[str], passphrase_envelopes: bool) -> list[Any]:
        wanted = set(fingerprints)
        matching = [info for info in self.infos() if info.fingerprint in wanted]
        # A key file that needs no passphrase opens the keyring as well as a sealed one:
        # use those alone when there are any, so that granting a sealed key to a keyring
        # does not make every later read ask for its passphrase.
        ready = [info for info in matching if info.kind == "x25519" and not info.sealed]
        keks = [self.load(info) for info in ready or matching]
        if passphrase_envelopes and not keks:
            from vst.crypto.kek import PassphraseKek

            passphrase = self.passphrase("recovery passphrase")
            if passphrase:
                keks.append(PassphraseKek(passphrase))
        return keks

    def wrapping_keks(self) -> list[Any]:
        """The public keys of the user's KEKs; the first use makes an unsealed default KEK
        (``created`` then names it, for the caller to tell the user once)."""
        from vst.crypto.kek import CommandKek

        infos = self.infos()
        if not infos:
            self.created = self.generate(DEFAULT_LABEL)
            infos = [self.created]
        return [CommandKek(i.public, i.command, label=i.label) if i.kind == "command"
                else i.public for i in infos]


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
