"""``vst key gen|list|export|import|grant|revoke``: your key-encryption keys (KEKs) and the
envelopes that let them open a store's keyrings.

Your KEKs are files in your key folder (vst/userkeys.py); a keyring's envelopes are in the
store's ``keys/<name>.toml`` (vst/keyrings.py). Granting adds an envelope, which needs the
keyring's secret, so you must be able to open the keyring first; revoking removes one,
which needs no key, but is refused when it would leave the keyring with no envelope at all
or (without ``force``) with none you hold.

The paper form of a private key is made to be typed back by hand (see ``paper_encode``).
Nothing here prints, prompts or reads the environment: passphrases come in as bytes.
"""

from __future__ import annotations

import base64
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3

from vst.errors import (
    AlreadyExists,
    CorruptKey,
    NotFound,
    Refused,
    UsageError,
    VstError,
    WrongKey,
)
from vst.store import Store
from vst.userkeys import DEFAULT_LABEL, KeyInfo, UserKeys, check_label, read_info


def _default_kdf() -> Any:
    # Looked up at call time, not bound as a default argument, so that tests can make
    # scrypt cheap (they also set kek.TEST_KDF_ALLOWED, without which it is refused).
    from vst.crypto import kek

    return kek.DEFAULT_KDF


# -- your keys -----------------------------------------------------------------------------


def readable_infos(keys: UserKeys) -> tuple[list[KeyInfo], list[str]]:
    """Your key files that parse, and a message for each that does not (a listing should
    not fail on one broken file)."""
    infos, problems = [], []
    for path in keys.paths():
        try:
            infos.append(read_info(path))
        except (CorruptKey, NotFound) as exc:
            problems.append(exc.message)
    return infos, problems


def next_label(keys: UserKeys) -> str:
    """"default" for your first key, then the first free "key-N" (N from 2)."""
    taken = {info.label for info in readable_infos(keys)[0]}
    if DEFAULT_LABEL not in taken:
        return DEFAULT_LABEL
    n = 2
    while f"key-{n}" in taken:
        n += 1
    return f"key-{n}"


def parse_public(text: str) -> bytes:
    """An X25519 public key given as 64 hex digits."""
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise UsageError(f"'{text[:80]}' is not an X25519 public key (64 hex digits)",
                         hint="'vst key list --json' prints a key's \"public\"")
    return bytes.fromhex(text)


def key_gen(keys: UserKeys, label: str | None = None, *, passphrase: bytes | None = None,
            command: Sequence[str] = (), public: bytes | None = None) -> KeyInfo:
    """A new KEK in your key folder: an X25519 key pair (sealed with ``passphrase`` if
    given), or with ``command`` a command KEK for a program holding the private key of
    ``public``. ``label`` defaults to ``next_label``."""
    label = check_label(label) if label else next_label(keys)
    if command or public is not None:
        if not command or public is None:
            raise UsageError("a command key needs both --command and --public")
        if passphrase is not None:
            raise UsageError("a command key holds no private key to seal with a passphrase")
        return keys.add_command(label, public, list(command))
    return keys.generate(label, passphrase=passphrase, kdf=_default_kdf())


# -- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeEntry:
    fingerprint: str
    kind: str            # "x25519", "command" or "passphrase"
    held: bool           # one of your key files has this fingerprint
    label: str | None    # its label, when held


@dataclass(frozen=True)
class KeyringEntry:
    name: str
    keyring_id: str | None                 # None when the file does not parse
    collections: tuple[str, ...]
    envelopes: tuple[EnvelopeEntry, ...]
    problem: str | None = None


@dataclass(frozen=True)
class KeyListing:
    keys: tuple[KeyInfo, ...]
    problems: tuple[str, ...]                    # key files that do not parse
    keyrings: tuple[KeyringEntry, ...] | None    # None: no store at hand


def key_list(keys: UserKeys, store: Store | None) -> KeyListing:
    """Your KEKs and, given a store, its keyrings: the collections using each and whose
    envelopes each holds."""
    infos, problems = readable_infos(keys)
    if store is None:
        return KeyListing(tuple(infos), tuple(problems), None)
    labels = {info.fingerprint: info.label for info in infos}
    users = _keyring_users(store)
    entries = []
    for name in store.keyrings.names():
        collections = tuple(users.get(name, ()))
        try:
            file = store.keyrings.read(name)
        except VstError as exc:
            entries.append(KeyringEntry(name, None, collections, (), exc.message))
            continue
        envelopes = tuple(EnvelopeEntry(env.kek_fingerprint, env.kind,
                                        env.kek_fingerprint in labels,
                                        labels.get(env.kek_fingerprint))
                          for env in file.envelopes)
        entries.append(KeyringEntry(name, file.keyring_id.hex(), collections, envelopes))
    return KeyListing(tuple(infos), tuple(problems), tuple(entries))


def _keyring_users(store: Store) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for collection in store.collection_names():
        try:
            keyring = store.collection_keyring(collection)
        except VstError:
            continue  # a broken collection file is reported by the commands that use it
        if keyring is not None:
            users.setdefault(keyring, []).append(collection)
    return users


# -- export and import ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedKey:
    info: KeyInfo
    data: bytes = field(repr=False)  # the secret: a key file, or the paper form


def key_export(keys: UserKeys, name: str | None = None, *, paper: bool = False) -> ExportedKey:
    """The private key of your X25519 KEK ``name`` (a label or fingerprint prefix; default:
    your only key, else "default"), as an unsealed key file or (``paper``) its paper form.
    Loading a sealed key asks ``keys`` for its passphrase."""
    if name:
        info = keys.find(name)
    else:
        infos = readable_infos(keys)[0]
        named = [i for i in infos if i.label == DEFAULT_LABEL]
        if len(infos) == 1:
            info = infos[0]
        elif named:
            info = named[0]
        else:
            raise UsageError(f"you have {len(infos)} keys: name the one to export"
                             if infos else "you have no key to export",
                             hint="see 'vst key list'")
    if info.kind != "x25519":
        raise Refused(f"key '{info.label}' is a {info.kind} key: its private key is held by "
                      f"the program '{' '.join(info.command)}', not by vst, so there is "
                      "nothing to export")
    kek = keys.load(info)
    if paper:
        return ExportedKey(info, paper_encode(kek.private_bytes(), info.label,
                                              info.fingerprint).encode())
    return ExportedKey(info, kek.encode())


def key_import(keys: UserKeys, data: bytes, *, label: str | None = None, paper: bool = False,
               passphrase: bytes | None = None, where: str = "-") -> KeyInfo:
    """Save the private key in ``data`` (a key file, or with ``paper`` the paper form) in
    your key folder, sealed with ``passphrase`` when given. A sealed key file is opened with
    ``keys``' passphrase and stays sealed with it. AlreadyExists when you hold the key
    already or the label is taken."""
    from vst.crypto.kek import X25519Kek

    if paper:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptKey(f"{where}: a paper key is text") from None
        raw, found_label = paper_decode(text)
    else:
        if _looks_like_paper(data):
            raise UsageError(f"'{where}' is a paper key", hint="add --paper")
        sealed = _is_sealed(data, where)
        opener = keys.passphrase(f"passphrase of the key in '{where}'") if sealed else None
        kek = X25519Kek.decode(data, where, passphrase=opener)
        raw, found_label = kek.private_bytes(), kek.label
        if passphrase is None:
            passphrase = opener  # a sealed key stays sealed
    fingerprint = X25519Kek.from_private(raw, "").fingerprint
    held = [i for i in readable_infos(keys)[0] if i.fingerprint == fingerprint]
    if held:
        raise AlreadyExists(f"you hold this key already, as '{held[0].label}' "
                            f"({fingerprint})")
    if label:
        label = check_label(label)
    elif found_label and _valid_label(found_label):
        label = found_label
    else:
        label = next_label(keys)
    taken = [i for i in readable_infos(keys)[0] if i.label == label]
    if taken:
        raise AlreadyExists(f"you have a key labelled '{label}' already",
                            hint="choose another with --label")
    return keys.import_private(raw, label, passphrase=passphrase, kdf=_default_kdf())


def _valid_label(label: str) -> bool:
    try:
        check_label(label)
    except UsageError:
        return False
    return True


def _is_sealed(data: bytes, where: str) -> bool:
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise CorruptKey(f"{where}: not a key file") from None
    return "sealed_private" in table


def _looks_like_paper(data: bytes) -> bool:
    return data.lstrip().startswith(PAPER_TITLE.encode())


# -- the paper form ------------------------------------------------------------------------

PAPER_TITLE = "# vst paper key"
_LINE_CHARS = 16          # 4 groups of 4 base32 characters
_KEY_CHARS = 52           # base32 of the 32-byte key, unpadded: lines of 16, 16, 16, 4
_LINES = 4
_CHECK_CHARS = 8          # the whole-key check: 40 bits
_TYPO_MAP = str.maketrans({"0": "O", "1": "I", "8": "B"})  # base32 has no 0, 1, 8 or 9
_B32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def _line_check(number: int, chars: str) -> str:
    """Two base32 characters (10 bits) over the line's number and characters, so a typo
    or two lines swapped show on the line itself."""
    digest = blake3.blake3(b"vst paper line v1" + bytes([number]) + chars.encode()).digest()
    return base64.b32encode(digest[:2]).decode()[:2]


def _key_check(private: bytes) -> str:
    digest = blake3.blake3(b"vst paper key v1" + private).digest()
    return base64.b32encode(digest[:5]).decode()


def _groups(chars: str) -> str:
    return " ".join(chars[i:i + 4] for i in range(0, len(chars), 4))


def paper_encode(private: bytes, label: str, fingerprint: str) -> str:
    """The paper form of a 32-byte private key (version 1)::

        # vst paper key v1 - SECRET: ...                  (comments: not needed to import)
        label: default                                   (optional on import)
        fingerprint: <32 hex>                            (optional; checked when given)
        1: ABCD EFGH IJKL MNOP  QR                       (16 characters + a 2-letter check)
        2: ...
        3: ...
        4: ABCD  QR                                      (the last 4 characters + check)
        check: ABCD EFGH                                 (40 bits of the whole key)

    The key is base32 (RFC 4648, A-Z and 2-7) without padding. A line's check is
    base32(BLAKE3(b"vst paper line v1" + u8 line number + the line's characters))[:2]; the
    whole check is base32(BLAKE3(b"vst paper key v1" + private key)[:5])."""
    chars = base64.b32encode(private).decode().rstrip("=")
    assert len(chars) == _KEY_CHARS
    lines = [
        f"{PAPER_TITLE} v1 - SECRET: whoever reads it can open what key '{label}' opens.",
        "# Type it back with 'vst key import --paper'. Each numbered line is 4 groups of",
        "# the key and its 2-letter check; spaces, case and '#' lines do not matter.",
        f"label: {label}",
        f"fingerprint: {fingerprint}",
    ]
    for number in range(1, _LINES + 1):
        part = chars[(number - 1) * _LINE_CHARS:number * _LINE_CHARS]
        lines.append(f"{number}: {_groups(part)}  {_line_check(number, part)}")
    lines.append(f"check: {_groups(_key_check(private))}")
    return "\n".join(lines) + "\n"


def paper_decode(text: str) -> tuple[bytes, str | None]:
    """The private key (and label, if given) in a paper key. CorruptKey naming the line
    that is wrong; messages never repeat what was typed (it is secret)."""
    parts: dict[int, str] = {}
    label = fingerprint = check = None
    for index, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(\d+|label|fingerprint|check)\s*[:.]?\s*(.*)", line,
                             re.IGNORECASE)
        if not match:
            raise CorruptKey(f"paper key: input line {index} is not a line of a paper key")
        head, rest = match.group(1).lower(), match.group(2)
        if head == "label":
            label = rest.strip()
        elif head == "fingerprint":
            fingerprint = rest.strip().lower()
        elif head == "check":
            check = _normalise(rest)
        else:
            number = int(head)
            if not 1 <= number <= _LINES:
                raise CorruptKey(f"paper key: there is no line {number} in a paper key "
                                 f"(input line {index}; lines are 1 to {_LINES})")
            if number in parts:
                raise CorruptKey(f"paper key: line {number} is given twice")
            parts[number] = _check_line(number, _normalise(rest))
    missing = [str(n) for n in range(1, _LINES + 1) if n not in parts]
    if missing:
        raise CorruptKey(f"paper key: line {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} missing")
    if check is None:
        raise CorruptKey("paper key: the 'check:' line is missing")
    chars = "".join(parts[n] for n in range(1, _LINES + 1))
    private = base64.b32decode(chars + "====")
    if check != _key_check(private):
        raise CorruptKey("paper key: the whole-key check does not match",
                         hint="every line passed its own check: look again at the 'check:' "
                              "line, then at each line of the key")
    if fingerprint is not None:
        from vst.crypto.kek import X25519Kek

        if X25519Kek.from_private(private, "").fingerprint != fingerprint:
            raise CorruptKey("paper key: the key does not match the 'fingerprint:' line",
                             hint="the key passed its checks: look again at the "
                                  "fingerprint, or leave that line out")
    return private, label or None


def _normalise(typed: str) -> str:
    return re.sub(r"[\s\-]", "", typed).upper().translate(_TYPO_MAP)


def _check_line(number: int, typed: str) -> str:
    size = _LINE_CHARS if number < _LINES else _KEY_CHARS - _LINE_CHARS * (_LINES - 1)
    if len(typed) != size + 2:
        raise CorruptKey(f"paper key: line {number} has {len(typed)} characters, not "
                         f"{size + 2} ({size} of the key and 2 of its check)")
    if not set(typed) <= _B32:
        raise CorruptKey(f"paper key: line {number} holds a character that is not in the "
                         "key's alphabet (A-Z, 2-7)")
    chars, check = typed[:-2], typed[-2:]
    if _line_check(number, chars) != check:
        raise CorruptKey(f"paper key: line {number} does not match its check: a typo in "
                         f"line {number}")
    return chars


# -- grant and revoke ----------------------------------------------------------------------


def grant_target(keys: UserKeys, *, public: str | None = None, label: str | None = None,
                 passphrase: bytes | None = None) -> Any:
    """What ``key_grant`` wraps for, from exactly one of: someone's X25519 public key (64
    hex digits), one of your keys (label or fingerprint prefix), a recovery passphrase."""
    from vst.crypto.kek import CommandKek, PassphraseKek

    if sum(x is not None for x in (public, label, passphrase)) != 1:
        raise UsageError("grant to one of: KEK_PUB, --key LABEL, --passphrase")
    if public is not None:
        return parse_public(public)
    if label is not None:
        info = keys.find(label)
        if info.kind == "command":
            return CommandKek(info.public, info.command, label=info.label)
        return info.public
    assert passphrase is not None
    return PassphraseKek(passphrase, _default_kdf())


@dataclass(frozen=True)
class Granted:
    fingerprint: str
    kind: str
    keyrings: tuple[str, ...]    # envelopes added
    unchanged: tuple[str, ...]   # already had an envelope for it
    skipped: dict[str, str]      # keyring -> why it was left out (you cannot open it)
    collections: dict[str, tuple[str, ...]]  # keyring -> its collections


def key_grant(store: Store, target: Any, collections: Sequence[str] = ()) -> Granted:
    """Add an envelope for ``target`` (``grant_target``) to the keyrings of
    ``collections``, or of every keyring you can open. Every keyring is opened before any
    is written, so a named one you cannot open (WrongKey) changes nothing."""
    from vst.crypto.keyring import Keyring

    kind = "x25519" if isinstance(target, bytes) else target.kind
    if isinstance(target, bytes):
        from vst.crypto.kek import public_fingerprint

        fingerprint = public_fingerprint(target)
    else:
        fingerprint = target.fingerprint
    users = _keyring_users(store)
    skipped: dict[str, str] = {}
    opened: list[Keyring] = []
    if collections:
        for name in keyrings_of(store, collections):
            opened.append(store.keyrings.unlock(name))
    else:
        for name in store.keyrings.names():
            try:
                opened.append(store.keyrings.unlock(name))
            except (WrongKey, CorruptKey) as exc:
                skipped[name] = exc.message
        if not opened:
            reason = next(iter(skipped.values()), None)
            raise WrongKey("no keyring you can open in this store" if skipped else
                           "this store has no keyrings (no encrypted collections)",
                           hint=reason)
    added, unchanged = [], []
    for keyring in opened:
        with store.keyrings.locked():  # read, change and write as one step
            file = store.keyrings.read(keyring.name)
            if any(env.kek_fingerprint == fingerprint for env in file.envelopes):
                unchanged.append(keyring.name)
                continue
            file.add(keyring, target)
            store.keyrings.write(file)
        added.append(keyring.name)
    return Granted(fingerprint, kind, tuple(added), tuple(unchanged), skipped,
                   {name: tuple(users.get(name, ())) for name in added + unchanged})


def _revocable(store: Store, names: Sequence[str], fingerprint: str, label: str | None,
               held: set[str], force: bool, named: bool) -> list[Any]:
    """The keyring files holding an envelope for ``fingerprint``, once each has been
    checked: Refused, before anything is written, for one that would be left with no
    envelope, or (unless ``force``) with none for a key in ``held``."""
    files = [store.keyrings.read(n) for n in names]
    files = [f for f in files if any(e.kek_fingerprint == fingerprint for e in f.envelopes)]
    shown = f"'{label}' ({fingerprint})" if label else fingerprint
    if not files:
        where = ", ".join(f"'{n}'" for n in names) if named else "any keyring"
        raise NotFound(f"KEK {shown} has no envelope in {where}")
    for file in files:
        left = [e for e in file.envelopes if e.kek_fingerprint != fingerprint]
        if not left:
            raise Refused(f"revoking KEK {shown} would leave keyring '{file.name}' with no "
                          "envelope: nothing could ever open it again",
                          hint="grant another key first ('vst key grant')")
        if not force and not any(e.kek_fingerprint in held for e in left):
            raise Refused(f"revoking KEK {shown} would leave keyring '{file.name}' with no "
                          "envelope for a key you hold",
                          hint="grant one of your keys first, or add --force if another "
                               "key or a recovery passphrase is enough")
    return files


def keyrings_of(store: Store, collections: Sequence[str]) -> list[str]:
    """The keyrings of ``collections``, each once, in order; UsageError for an
    unencrypted one."""
    names: list[str] = []
    for collection in collections:
        keyring = store.collection_keyring(collection)  # NotFound for an unknown one
        if keyring is None:
            raise UsageError(f"collection '{collection}' is not encrypted: it has no keyring")
        if keyring not in names:
            names.append(keyring)
    return names


@dataclass(frozen=True)
class Revoked:
    fingerprint: str
    label: str | None                 # yours, if it is one of your keys
    keyrings: tuple[str, ...]         # envelopes removed
    collections: dict[str, tuple[str, ...]]  # keyring -> its collections


def resolve_kek(store: Store, keys: UserKeys, name: str) -> tuple[str, str | None]:
    """(fingerprint, your label or None) for a label of yours, a fingerprint, or a
    fingerprint prefix of 8+ hex digits found in your keys or the store's envelopes."""
    infos = readable_infos(keys)[0]
    for info in infos:
        if info.label == name:
            return info.fingerprint, info.label
    prefix = name.lower()
    if not re.fullmatch(r"[0-9a-f]{8,32}", prefix):
        raise NotFound(f"no key labelled '{name}'",
                       hint="name a KEK by your label, or its fingerprint (8+ hex digits)")
    found = {info.fingerprint for info in infos if info.fingerprint.startswith(prefix)}
    for keyring in store.keyrings.names():
        found |= {env.kek_fingerprint for env in store.keyrings.read(keyring).envelopes
                  if env.kek_fingerprint.startswith(prefix)}
    if not found:
        raise NotFound(f"no KEK with fingerprint '{prefix}' in your keys or this store's "
                       "keyrings", hint="see 'vst key list'")
    if len(found) > 1:
        raise UsageError(f"'{prefix}' is the start of {len(found)} KEK fingerprints",
                         hint="give more digits")
    fingerprint = found.pop()
    labels = [i.label for i in infos if i.fingerprint == fingerprint]
    return fingerprint, labels[0] if labels else None


def key_revoke(store: Store, keys: UserKeys, name: str, collections: Sequence[str] = (),
               *, force: bool = False) -> Revoked:
    """Remove the envelopes for KEK ``name`` (``resolve_kek``) from the keyrings of
    ``collections``, or from every keyring that has one. Refused, before anything is
    written, when a keyring would be left with no envelope, or (unless ``force``) with no
    envelope for a key you hold; a passphrase envelope does not count as held, since only
    the passphrase could tell."""
    fingerprint, label = resolve_kek(store, keys, name)
    held = {info.fingerprint for info in readable_infos(keys)[0]}
    names = keyrings_of(store, collections) if collections else store.keyrings.names()
    with store.keyrings.locked():  # every check and write against the same files
        files = _revocable(store, names, fingerprint, label, held, force, bool(collections))
        for file in files:
            file.remove(fingerprint)
            store.keyrings.write(file)
    users = _keyring_users(store)
    return Revoked(fingerprint, label, tuple(f.name for f in files),
                   {f.name: tuple(users.get(f.name, ())) for f in files})
