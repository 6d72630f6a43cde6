"""A store's keyrings: ``keys/<name>.toml`` files (mirrored to every volume), opened with the
user's KEKs into the sealings the object database names and seals objects with.

The files hold nothing secret: a keyring's public id, its name, the store's id and one
envelope per KEK (vst/crypto/keyring.py). Opening one needs a KEK that the user holds,
which a ``KeySource`` supplies: the CLI's reads the user's key files and passphrase, a
test's holds keys in memory. An opened keyring's keys live only in this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from vst.errors import AlreadyExists, CorruptKey, NotFound, UsageError, WrongKey
from vst.fsio import FileSystem, lock_file, read_file
from vst.objects.ids import IdScheme
from vst.objects.seal import PLAIN, Sealing

if TYPE_CHECKING:
    from vst.crypto.keyring import Keyring, KeyringFile


LOCK_TIMEOUT = 10.0


class KeySource(Protocol):
    """Where the user's KEKs come from."""

    def keks_for(self, fingerprints: Sequence[str], passphrase_envelopes: bool) -> list[Any]:
        """The KEKs (vst.crypto objects) the user holds among ``fingerprints``, plus a
        passphrase KEK when ``passphrase_envelopes`` and a passphrase is at hand. May ask
        for a passphrase that opens a sealed key file. Nothing held: an empty list."""
        ...

    def wrapping_keks(self) -> list[Any]:
        """What a new keyring is wrapped for: the public halves of the user's KEKs (made
        on first use), never asking for a passphrase."""
        ...

    def infos(self) -> list[Any]:
        """The user's KEKs without their secrets: ``fingerprint``, ``kind``, ``public``,
        ``label``, ``command`` (vst.userkeys.KeyInfo)."""
        ...


class Keyrings:
    def __init__(self, directory: str, store_id: str, fs: FileSystem,
                 mirror: Callable[[str, bytes], None],
                 unmirror: Callable[[str], None] = lambda _name: None) -> None:
        self.directory = directory
        self.store_id = store_id
        self.fs = fs
        self._mirror = mirror
        self._unmirror = unmirror
        self.source: KeySource | None = None
        self._open: dict[bytes, Sealing] = {}  # keyring id -> sealing, once unlocked
        self._by_id: dict[bytes, str] | None = None  # keyring id -> name

    # -- files ------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        check_keyring_name(name)
        return os.path.join(self.directory, f"{name}.toml")

    def names(self) -> list[str]:
        try:
            listed = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in listed if n.endswith(".toml") and not n.startswith("."))

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def read(self, name: str) -> KeyringFile:
        from vst.crypto.keyring import KeyringFile

        path = self._path(name)
        try:
            data = read_file(path)
        except NotFound:
            raise NotFound(f"no keyring named '{name}'", hint="see 'vst key list'") from None
        return KeyringFile.decode(data, path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the keyrings' lock (an flock on keys/.lock, waited for up to 10 s): whoever
        reads a keyring file to change it does so under it, so that a grant and a revoke
        running at once cannot undo each other."""
        if not os.path.isdir(self.directory):
            self.fs.makedirs(self.directory)
        with lock_file(os.path.join(self.directory, ".lock"), LOCK_TIMEOUT,
                       "the store's keyrings"):
            yield

    def remove(self, name: str) -> None:
        """Delete keys/<name>.toml and its mirrors (a keyring no collection uses)."""
        path = self._path(name)
        if os.path.exists(path):
            self.fs.remove(path)
        self._unmirror(f"keys/{name}.toml")
        self._by_id = None

    def write(self, file: KeyringFile, *, new: bool = False) -> None:
        """Write ``file`` durably (``new``: refuse an existing one) and to every volume."""
        if not os.path.isdir(self.directory):
            self.fs.makedirs(self.directory)
        data = file.encode()
        if not self.fs.write_file(self._path(file.name), data, overwrite=not new):
            raise AlreadyExists(f"keyring '{file.name}' already exists")
        self._mirror(f"keys/{file.name}.toml", data)
        self._by_id = None

    def create(self, name: str) -> KeyringFile:
        """A new keyring ``name`` wrapped for the source's KEKs (creating the user's first
        KEK if there is none). Its keys stay open in this process."""
        from vst.crypto.keyring import KeyringFile, new_keyring

        if self.exists(name):
            raise AlreadyExists(f"keyring '{name}' already exists")
        keks = self._require_source().wrapping_keks()
        if not keks:
            raise WrongKey("no key to wrap a new keyring for", hint="run 'vst key gen'")
        keyring = new_keyring(name)
        file = KeyringFile.new(keyring, self.store_id, keks)
        self.write(file, new=True)
        self.remember(keyring)
        return file

    # -- opening ----------------------------------------------------------------------------

    def _require_source(self) -> KeySource:
        if self.source is None:
            raise WrongKey("this store holds encrypted collections and no keys were given")
        return self.source

    def unlock(self, name: str) -> Keyring:
        """The keyring ``name``, opened with a KEK the user holds (WrongKey otherwise)."""
        self._require_source()  # before reading the file: a server asks this per request
        file = self.read(name)
        fingerprints = [env.kek_fingerprint for env in file.envelopes]
        has_passphrase = any(env.kind == "passphrase" for env in file.envelopes)
        keks = self._require_source().keks_for(fingerprints, has_passphrase)
        keyring = file.unlock(keks, store_id=self.store_id)
        if keyring.name != name:
            raise CorruptKey(f"keys/{name}.toml holds keyring '{keyring.name}'")
        self.remember(keyring)
        return keyring

    def remember(self, keyring: Keyring) -> Sealing:
        """Hold ``keyring`` open in this process (one just unlocked or made) and return
        its sealing."""
        from vst.crypto.records import RecordCipher

        sealing = Sealing(keyring.keyring_id, IdScheme(keyring.id_key),
                          RecordCipher(keyring.dek, keyring.keyring_id))
        self._open[keyring.keyring_id] = sealing
        return sealing

    def opened(self) -> list[Sealing]:
        """The sealings of the keyrings opened so far (to hand to worker processes)."""
        return list(self._open.values())

    def sealing(self, name: str | None) -> Sealing:
        """How the objects of keyring ``name`` are named and sealed (None: unencrypted)."""
        if name is None:
            return PLAIN
        for sealing in self._open.values():
            if self._name_of(sealing.keyring_id) == name:
                return sealing
        keyring = self.unlock(name)
        return self._open[keyring.keyring_id]

    def sealing_by_id(self, keyring_id: bytes) -> Sealing:
        """The sealing of the keyring whose id a pack names (WrongKey when it cannot be
        opened, or no keys/ file has that id)."""
        sealing = self._open.get(keyring_id)
        if sealing is not None:
            return sealing
        name = self._name_of(keyring_id)
        if name is None:
            raise WrongKey(f"objects of keyring {keyring_id.hex()} are encrypted, and the "
                           "store has no key file for it", hint="see 'vst key list'")
        return self.sealing(name)

    def _name_of(self, keyring_id: bytes) -> str | None:
        if self._by_id is None or keyring_id not in self._by_id:
            by_id = {}
            for name in self.names():
                try:
                    by_id[self.read(name).keyring_id] = name
                except (CorruptKey, NotFound):
                    continue  # reported when that keyring is opened by name
            self._by_id = by_id
        return self._by_id.get(keyring_id)


def check_keyring_name(name: str) -> str:
    if not name or len(name) > 100 or name.startswith(".") or "/" in name or "\0" in name \
            or name != name.strip() or any(ord(c) < 0x20 for c in name):
        raise UsageError(f"invalid keyring name '{name}'")
    return name
