"""vst.crypto: record AEAD, KEKs, envelopes and keyring files (issue 5, S13-S15 samples).

Fast KDF parameters are used through ``cheap_kdf`` (which sets kek.TEST_KDF_ALLOWED);
tests of the minimum turn the flag off again.
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vst.crypto import kek as kek_module
from vst.crypto import records
from vst.crypto.envelope import Envelope, Kek, request_bytes, unwrap, wrap
from vst.crypto.kek import (
    MIN_KDF,
    CommandKek,
    KdfParams,
    PassphraseKek,
    X25519Kek,
)
from vst.crypto.keyring import Keyring, KeyringFile, new_keyring
from vst.crypto.records import (
    OVERHEAD,
    USAGE_LIMIT,
    AuthenticationFailed,
    RecordCipher,
    UsageLimit,
)
from vst.errors import AlreadyExists, CorruptKey, Refused, UsageError, WrongKey

CHEAP = KdfParams(16, 1, 1)
STORE = "0123456789abcdef0123456789abcdef"
OTHER_STORE = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> KdfParams:
    monkeypatch.setattr(kek_module, "TEST_KDF_ALLOWED", True)
    return CHEAP


@pytest.fixture
def keyring() -> Keyring:
    return new_keyring("photos")


def secrets_of(ring: Keyring) -> list[str]:
    return [ring.dek.hex(), ring.id_key.hex(), ring.secret.hex()]


# -- records ---------------------------------------------------------------------------------


def test_record_round_trip_and_overhead() -> None:
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    oid = os.urandom(32)
    for size in (0, 1, 200, 65536, 1 << 20):
        plain = os.urandom(size)
        body = cipher.seal(oid, plain)
        assert len(body) == size + OVERHEAD
        assert cipher.open(oid, body) == plain
        assert cipher.open(oid, memoryview(body)) == plain
        assert cipher.open(oid, cipher.seal(oid, memoryview(plain))) == plain
    assert cipher.seals == 10
    assert repr(cipher).count("seals=10") == 1


def test_record_same_plaintext_seals_differently() -> None:
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    oid = os.urandom(32)
    assert cipher.seal(oid, b"same") != cipher.seal(oid, b"same")


def test_record_every_flipped_bit_is_rejected() -> None:
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    oid = os.urandom(32)
    body = cipher.seal(oid, b"a small object: commit message and tree" * 3)
    # salt (0-15), ciphertext, tag (last 16): every bit of every byte.
    for position in range(len(body)):
        for bit in range(8):
            bad = bytearray(body)
            bad[position] ^= 1 << bit
            with pytest.raises(AuthenticationFailed):
                cipher.open(oid, bytes(bad))


def test_record_truncated_or_extended_is_rejected() -> None:
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    oid = os.urandom(32)
    body = cipher.seal(oid, b"x" * 40)
    for length in range(len(body)):
        with pytest.raises(AuthenticationFailed):
            cipher.open(oid, body[:length])
    with pytest.raises(AuthenticationFailed):
        cipher.open(oid, body + b"\0")


def test_record_associated_data_binds_oid_keyring_and_key() -> None:
    dek, keyring_id, oid = os.urandom(32), os.urandom(16), os.urandom(32)
    body = RecordCipher(dek, keyring_id).seal(oid, b"content")
    other_oid = bytearray(oid)
    other_oid[31] ^= 1
    with pytest.raises(AuthenticationFailed):
        RecordCipher(dek, keyring_id).open(bytes(other_oid), body)   # swapped object
    other_keyring = bytearray(keyring_id)
    other_keyring[0] ^= 0x80
    with pytest.raises(AuthenticationFailed):
        RecordCipher(dek, bytes(other_keyring)).open(oid, body)      # another collection
    with pytest.raises(AuthenticationFailed):
        RecordCipher(os.urandom(32), keyring_id).open(oid, body)     # another key
    assert RecordCipher(dek, keyring_id).open(oid, body) == b"content"


def test_record_usage_limit_is_enforced() -> None:
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    cipher._seals = USAGE_LIMIT - 1
    cipher.seal(b"\0" * 32, b"last one")
    with pytest.raises(UsageLimit, match="rotate"):
        cipher.seal(b"\0" * 32, b"one too many")
    assert USAGE_LIMIT == 2**48


def test_record_bad_key_sizes() -> None:
    with pytest.raises(ValueError):
        RecordCipher(b"short", os.urandom(16))
    with pytest.raises(ValueError):
        RecordCipher(os.urandom(32), b"short")


def test_record_cipher_is_thread_safe() -> None:
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    salts: list[list[bytes]] = [[] for _ in range(4)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(2000):
                oid = index.to_bytes(1, "big") * 32
                plain = n.to_bytes(4, "big") * (n % 50)
                body = cipher.seal(oid, plain)
                salts[index].append(body[:16])
                assert cipher.open(oid, body) == plain
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert cipher.seals == 8000
    assert len({s for per in salts for s in per}) == 8000


def test_record_salts_unique_across_forked_processes(tmp_path: Path) -> None:
    # S15: a cipher made before fork(), used by two children and the parent.
    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    oid = os.urandom(32)
    children = []
    for index in range(2):
        out = tmp_path / f"salts-{index}"
        pid = os.fork()
        if pid == 0:  # pragma: no cover (runs in the child)
            code = 1
            try:
                with open(out, "wb") as f:
                    f.write(b"".join(cipher.seal(oid, b"x")[:16] for _ in range(10_000)))
                code = 0
            finally:
                os._exit(code)
        children.append((pid, out))
    mine = [cipher.seal(oid, b"x")[:16] for _ in range(10_000)]
    salts = set(mine)
    for pid, out in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        data = out.read_bytes()
        assert len(data) == 16 * 10_000
        salts.update(data[i:i + 16] for i in range(0, len(data), 16))
    assert len(salts) == 30_000


# -- X25519 KEK files ------------------------------------------------------------------------


def test_kek_save_load_unsealed(tmp_path: Path) -> None:
    kek = X25519Kek.generate("alice@laptop")
    path = str(tmp_path / "conf" / "kek.toml")
    kek.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not X25519Kek.sealed(path)
    loaded = X25519Kek.load(path)
    assert loaded.private_bytes() == kek.private_bytes()
    assert (loaded.public, loaded.fingerprint, loaded.label) == \
        (kek.public, kek.fingerprint, "alice@laptop")
    assert len(kek.fingerprint) == 32 and int(kek.fingerprint, 16) >= 0
    assert kek.private_bytes().hex() not in repr(kek)
    assert loaded.kind == "x25519"


def test_kek_never_overwrites(tmp_path: Path) -> None:
    path = str(tmp_path / "kek.toml")
    first = X25519Kek.generate("a")
    first.save(path)
    with pytest.raises(AlreadyExists):
        X25519Kek.generate("b").save(path)
    assert X25519Kek.load(path).public == first.public


def test_kek_sealed_round_trip_and_wrong_passphrase(tmp_path: Path, cheap_kdf: KdfParams) -> None:
    kek = X25519Kek.generate("sealed")
    path = str(tmp_path / "kek.toml")
    kek.save(path, passphrase=b"correct horse", kdf=cheap_kdf)
    text = Path(path).read_text()
    assert kek.private_bytes().hex() not in text
    assert X25519Kek.sealed(path)
    assert X25519Kek.load(path, passphrase=b"correct horse").private_bytes() == \
        kek.private_bytes()
    with pytest.raises(WrongKey, match="passphrase is needed"):
        X25519Kek.load(path)
    with pytest.raises(WrongKey, match="wrong passphrase") as caught:
        X25519Kek.load(path, passphrase=b"wrong horse")
    assert caught.value.exit_code == 12
    assert "correct horse" not in str(caught.value)


def test_kek_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.toml"
    X25519Kek.generate("x").save(str(path))
    for mode in (0o640, 0o604, 0o644, 0o660):
        path.chmod(mode)
        with pytest.raises(Refused, match="accessible by others") as caught:
            X25519Kek.load(str(path))
        assert caught.value.hint and "chmod 600" in caught.value.hint
    path.chmod(0o400)
    X25519Kek.load(str(path))


def test_kek_missing_file(tmp_path: Path) -> None:
    from vst.errors import NotFound

    with pytest.raises(NotFound):
        X25519Kek.load(str(tmp_path / "absent.toml"))


def test_kdf_below_minimum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kek_module, "TEST_KDF_ALLOWED", False)
    with pytest.raises(UsageError, match="below the minimum"):
        X25519Kek.generate("x").save(str(tmp_path / "k"), passphrase=b"pw", kdf=CHEAP)
    with pytest.raises(UsageError, match="below the minimum"):
        PassphraseKek(b"pw", KdfParams(2**13, 8, 1))
    with pytest.raises(UsageError, match="out of range"):
        PassphraseKek(b"pw", KdfParams(3 * 2**14, 8, 1))
    # A file written at the minimum, then weakened: refused before any scrypt work.
    path = tmp_path / "kek.toml"
    X25519Kek.generate("x").save(str(path), passphrase=b"pw", kdf=MIN_KDF)
    text = path.read_text()
    assert "n = 16384" in text
    weak = tmp_path / "weak.toml"
    weak.write_text(text.replace("n = 16384", "n = 1024"))
    weak.chmod(0o600)
    with pytest.raises(CorruptKey, match="below the minimum") as caught:
        X25519Kek.load(str(weak), passphrase=b"pw")
    assert caught.value.exit_code == 7
    # Raised instead: bound as associated data, so the file no longer opens.
    raised = tmp_path / "raised.toml"
    raised.write_text(text.replace("n = 16384", "n = 32768"))
    raised.chmod(0o600)
    with pytest.raises(WrongKey):
        X25519Kek.load(str(raised), passphrase=b"pw")
    # Absurd parameters (a denial of service) are refused too.
    huge = tmp_path / "huge.toml"
    huge.write_text(text.replace("n = 16384", "n = 1099511627776"))
    huge.chmod(0o600)
    with pytest.raises(CorruptKey, match="out of range"):
        X25519Kek.load(str(huge), passphrase=b"pw")


@pytest.mark.parametrize("sealed", [False, True])
def test_kek_file_corrupted_at_every_byte(tmp_path: Path, cheap_kdf: KdfParams,
                                          sealed: bool) -> None:
    kek = X25519Kek.generate("label")
    passphrase = b"pw" if sealed else None
    data = kek.encode(passphrase=passphrase, kdf=cheap_kdf)
    outcomes = {"same": 0, "refused": 0}
    for position in range(len(data)):
        for replacement in {data[position] ^ 0x01, ord("0"), ord("\n")}:
            bad = bytearray(data)
            bad[position] = replacement
            try:
                loaded = X25519Kek.decode(bytes(bad), "kek.toml", passphrase=passphrase)
            except (WrongKey, CorruptKey):
                outcomes["refused"] += 1
                continue
            # Only the label, comment or layout may change without being noticed (the
            # private key is kept clamped, so no ignored bit of it can change).
            assert loaded.private_bytes() == kek.private_bytes()
            outcomes["same"] += 1
    assert outcomes["refused"] > len(data)


def test_kek_private_export_import() -> None:
    kek = X25519Kek.generate("x")
    again = X25519Kek.from_private(kek.private_bytes(), "y")
    assert again.fingerprint == kek.fingerprint
    with pytest.raises(UsageError):
        X25519Kek.from_private(b"short", "x")


# -- envelopes -------------------------------------------------------------------------------


def test_envelopes_round_trip_for_every_kind(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    x = X25519Kek.generate("x")
    phrase = PassphraseKek(b"recovery words", cheap_kdf)
    for kek in (x, phrase):
        envelope = wrap(keyring, kek, STORE)
        assert envelope.kind == kek.kind and envelope.kek_fingerprint == kek.fingerprint
        assert unwrap(envelope, kek, keyring.keyring_id, STORE) == keyring.secret
    # A grant needs the public key only.
    granted = wrap(keyring, x.public, STORE)
    assert granted.kind == "x25519" and granted.kek_fingerprint == x.fingerprint
    assert unwrap(granted, x, keyring.keyring_id, STORE) == keyring.secret
    # The same passphrase with the envelope's salt opens it from a fresh object.
    again = PassphraseKek(b"recovery words", cheap_kdf)
    assert again.fingerprint != phrase.fingerprint
    assert unwrap(wrap(keyring, phrase, STORE), again, keyring.keyring_id, STORE) == \
        keyring.secret


def test_envelope_wrong_kek_and_wrong_passphrase(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    x, other = X25519Kek.generate("x"), X25519Kek.generate("other")
    with pytest.raises(WrongKey):
        unwrap(wrap(keyring, x, STORE), other, keyring.keyring_id, STORE)
    phrase = PassphraseKek(b"right", cheap_kdf)
    envelope = wrap(keyring, phrase, STORE)
    with pytest.raises(WrongKey, match="wrong passphrase"):
        unwrap(envelope, PassphraseKek(b"wrong", cheap_kdf), keyring.keyring_id, STORE)
    with pytest.raises(WrongKey, match="needs a passphrase"):
        unwrap(envelope, x, keyring.keyring_id, STORE)
    with pytest.raises(WrongKey):
        unwrap(wrap(keyring, x, STORE), phrase, keyring.keyring_id, STORE)


def test_envelope_moved_to_another_store_or_keyring(keyring: Keyring,
                                                    cheap_kdf: KdfParams) -> None:
    x = X25519Kek.generate("x")
    phrase = PassphraseKek(b"pw", cheap_kdf)
    other_keyring = new_keyring("other").keyring_id
    for kek in (x, phrase):
        envelope = wrap(keyring, kek, STORE)
        with pytest.raises(WrongKey, match="another store or keyring"):
            unwrap(envelope, kek, keyring.keyring_id, OTHER_STORE)
        with pytest.raises(WrongKey, match="another store or keyring"):
            unwrap(envelope, kek, other_keyring, STORE)


def test_envelope_params_edited(keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    phrase = PassphraseKek(b"pw", MIN_KDF)
    envelope = wrap(keyring, phrase, STORE)
    from dataclasses import replace

    lowered = replace(envelope, kdf=KdfParams(2**10, 8, 1))
    with pytest.raises(CorruptKey, match="below the minimum"):
        unwrap(lowered, phrase, keyring.keyring_id, STORE)
    # Even when tests may use cheap parameters, the edited envelope fails: they are bound.
    monkeypatch.setattr(kek_module, "TEST_KDF_ALLOWED", True)
    with pytest.raises(WrongKey):
        unwrap(lowered, phrase, keyring.keyring_id, STORE)


def test_envelope_every_field_tampered(keyring: Keyring) -> None:
    x = X25519Kek.generate("x")
    envelope = wrap(keyring, x, STORE)
    from dataclasses import replace

    def flipped(value: bytes) -> bytes:
        return bytes([value[0] ^ 1]) + value[1:]

    assert envelope.ephemeral is not None and envelope.check is not None
    for bad in (replace(envelope, nonce=flipped(envelope.nonce)),
                replace(envelope, ciphertext=flipped(envelope.ciphertext)),
                # The last byte changed (set to 0 it would be unchanged 1 time in 256).
                replace(envelope, ciphertext=envelope.ciphertext[:-1]
                        + bytes([envelope.ciphertext[-1] ^ 1])),
                replace(envelope, ephemeral=flipped(envelope.ephemeral)),
                replace(envelope, ephemeral=bytes(32)),          # low-order point
                replace(envelope, check=flipped(envelope.check)),
                replace(envelope, kind="command")):
        with pytest.raises((WrongKey, CorruptKey)):
            unwrap(bad, x, keyring.keyring_id, STORE)


# -- keyring files ---------------------------------------------------------------------------


def make_file(keyring: Keyring, cheap_kdf: KdfParams) -> tuple[KeyringFile, X25519Kek,
                                                                PassphraseKek]:
    x = X25519Kek.generate("x")
    phrase = PassphraseKek(b"paper key", cheap_kdf)
    return KeyringFile.new(keyring, STORE, [x, phrase], created=1_700_000_000), x, phrase


def test_keyring_file_round_trip_and_unlock(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    file, x, phrase = make_file(keyring, cheap_kdf)
    data = file.encode()
    for secret in secrets_of(keyring):
        assert secret not in data.decode()
    decoded = KeyringFile.decode(data, "keys/photos.toml")
    assert decoded == file
    assert decoded.encode() == data
    choices: list[list[Kek]] = [[x], [phrase], [PassphraseKek(b"paper key", cheap_kdf)],
                                [phrase, x]]
    for keks in choices:
        assert decoded.unlock(keks, store_id=STORE) == keyring
    assert keyring.fingerprint == keyring.keyring_id.hex()
    for secret in secrets_of(keyring):
        assert secret not in repr(keyring)


def test_odd_names_and_labels_round_trip(cheap_kdf: KdfParams) -> None:
    ring = new_keyring('fotos "2024" \u00e9t\u00e9 \u2603')
    file = KeyringFile.new(ring, STORE, [PassphraseKek(b"pw", cheap_kdf)])
    assert KeyringFile.decode(file.encode(), "k").name == ring.name
    with pytest.raises(CorruptKey, match="invalid keyring name"):
        KeyringFile.decode(file.encode().replace(b"fotos", b"fo\\u007fs"), "k")
    label = 'tab\there "quoted" \\ del\x7f nl\n \u2603'
    kek = X25519Kek.generate(label)
    assert X25519Kek.decode(kek.encode(), "k").label == label


def test_keyring_file_add_replaces_and_remove(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    file, x, phrase = make_file(keyring, cheap_kdf)
    before = file.envelopes[0]
    file.add(keyring, x)
    assert len(file.envelopes) == 2 and file.envelopes[0] != before
    assert file.envelopes[0].kek_fingerprint == x.fingerprint
    assert file.remove(x.fingerprint) is True
    assert file.remove(x.fingerprint) is False
    with pytest.raises(WrongKey):
        file.unlock([x])
    assert file.unlock([phrase]) == keyring
    with pytest.raises(UsageError):
        file.add(new_keyring("other"), x)


def test_keyring_file_unlock_failures(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    file, x, _ = make_file(keyring, cheap_kdf)
    stranger = X25519Kek.generate("stranger")
    with pytest.raises(WrongKey, match="no key you hold opens keyring 'photos'") as caught:
        file.unlock([stranger])
    assert caught.value.hint and x.fingerprint in caught.value.hint
    with pytest.raises(WrongKey, match="wrong passphrase") as caught:
        file.unlock([PassphraseKek(b"not it", cheap_kdf)])
    for secret in secrets_of(keyring):
        assert secret not in str(caught.value) and secret not in str(caught.value.hint)
    with pytest.raises(WrongKey, match="from another store"):
        file.unlock([x], store_id=OTHER_STORE)
    with pytest.raises(WrongKey):
        file.unlock([])


def test_keyring_file_moved_store_id_edited(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    # An attacker rewrites store_id so the store check passes: the envelopes still refuse.
    file, x, phrase = make_file(keyring, cheap_kdf)
    data = file.encode().replace(STORE.encode(), OTHER_STORE.encode())
    moved = KeyringFile.decode(data, "keys/photos.toml")
    for kek in (x, phrase):
        with pytest.raises(WrongKey):
            moved.unlock([kek], store_id=OTHER_STORE)


@pytest.mark.parametrize(("old", "new", "message"), [
    (b"version = 1", b"version = 2", "unknown keyring file version"),
    (b"version = 1", b"version = \"1\"", "version"),
    (b"created = 1700000000", b"created = 1700000000\nextra = 1", "unknown field 'extra'"),
    (b"kind = \"x25519\"", b"kind = \"rsa\"", "unknown envelope kind"),
    (b"kdf = \"scrypt\"", b"kdf = \"argon2\"", "unknown KDF"),
    (b"name = \"photos\"", b"name = \"../etc\"", "invalid keyring name"),
    (b"[[envelope]]", b"[envelope]", "array of tables|not a valid key file"),
])
def test_keyring_file_strict_decoding(keyring: Keyring, cheap_kdf: KdfParams, old: bytes,
                                      new: bytes, message: str) -> None:
    data = make_file(keyring, cheap_kdf)[0].encode()
    assert old in data
    with pytest.raises(CorruptKey, match=message) as caught:
        KeyringFile.decode(data.replace(old, new, 1), "keys/photos.toml")
    assert "keys/photos.toml" in str(caught.value)


def test_keyring_file_strict_hex_and_duplicates(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    file = make_file(keyring, cheap_kdf)[0]
    data = file.encode()
    upper = data.replace(keyring.keyring_id.hex().encode(),
                         keyring.keyring_id.hex().upper().encode())
    short = data.replace(keyring.keyring_id.hex().encode(), keyring.keyring_id.hex()[:-2].encode())
    for bad in (upper, short, b"\xff" + data, b"= nonsense", b"x" * (2 << 20)):
        with pytest.raises(CorruptKey):
            KeyringFile.decode(bad, "k")
    doubled = KeyringFile(file.keyring_id, file.name, file.store_id,
                          [file.envelopes[0], file.envelopes[0]], file.created)
    with pytest.raises(CorruptKey, match="same KEK"):
        KeyringFile.decode(doubled.encode(), "k")


def test_keyring_file_corrupted_at_every_byte(keyring: Keyring, cheap_kdf: KdfParams) -> None:
    # S13: every single-byte change either decodes to the same keys or is refused with
    # WrongKey/CorruptKey; never another exception, never other keys.
    file, x, phrase = make_file(keyring, cheap_kdf)
    data = file.encode()
    refused = 0
    for position in range(len(data)):
        for replacement in {data[position] ^ 0x01, ord("f"), ord("\n"), 0xC3}:
            bad = bytearray(data)
            bad[position] = replacement
            for keks in ([x], [phrase]):
                try:
                    opened = KeyringFile.decode(bytes(bad), "k").unlock(keks, store_id=STORE)
                except (WrongKey, CorruptKey):
                    refused += 1
                    continue
                assert opened.secret == keyring.secret
    assert refused > len(data)


def test_new_keyring_is_random_and_validated() -> None:
    a, b = new_keyring("a"), new_keyring("a")
    assert len(a.keyring_id) == 16 and len(a.dek) == 32 and len(a.id_key) == 32
    assert len({a.keyring_id, b.keyring_id}) == 2 and a.dek != b.dek and a.dek != a.id_key
    for bad in ("", "a/b", "..", ".hidden", "x\0y", "x" * 256):
        with pytest.raises(UsageError):
            new_keyring(bad)


def test_public_names_importable_from_package() -> None:
    import vst.crypto as crypto

    for name in crypto.__all__:
        assert getattr(crypto, name) is not None
    assert crypto.RecordCipher is RecordCipher and crypto.OVERHEAD == 32
    with pytest.raises(AttributeError):
        crypto.nothing_here  # noqa: B018


# -- command KEKs ----------------------------------------------------------------------------

HELPER = """
import sys, time
from vst.crypto.envelope import open_request
from vst.crypto.kek import X25519Kek

mode = sys.argv[2]
request = sys.stdin.buffer.read()
if mode == "ok":
    print(open_request(request, X25519Kek.load(sys.argv[1])).hex())
elif mode == "fail":
    sys.exit(3)
elif mode == "garbage":
    print("the key is under the doormat")
elif mode == "wrong":
    print("ab" * 64)
elif mode == "slow":
    time.sleep(30)
"""


@pytest.fixture
def token(tmp_path: Path) -> Iterator[tuple[X25519Kek, list[str]]]:
    """An X25519 key "on a token": a helper script holding it, run as a key command."""
    kek = X25519Kek.generate("token")
    key_path = tmp_path / "token.toml"
    kek.save(str(key_path))
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(HELPER))
    yield kek, [sys.executable, str(script), str(key_path)]


def test_command_kek_success(keyring: Keyring, token: tuple[X25519Kek, list[str]]) -> None:
    kek, argv = token
    command = CommandKek(kek.public, [*argv, "ok"])
    assert command.fingerprint == kek.fingerprint
    file = KeyringFile.new(keyring, STORE, [command])
    assert file.envelopes[0].kind == "command"
    assert file.unlock([command], store_id=STORE) == keyring
    # The private key itself opens a command envelope, and the command opens a grant.
    assert file.unlock([kek]) == keyring
    granted = KeyringFile.new(keyring, STORE, [kek.public])
    assert granted.unlock([command]) == keyring


def test_command_request_holds_no_secret(keyring: Keyring,
                                         token: tuple[X25519Kek, list[str]]) -> None:
    kek, argv = token
    envelope = wrap(keyring, CommandKek(kek.public, argv), STORE)
    request = request_bytes(envelope, keyring.keyring_id, STORE).decode()
    for secret in secrets_of(keyring):
        assert secret not in request
    assert STORE in request and keyring.keyring_id.hex() in request


@pytest.mark.parametrize(("mode", "message"), [
    ("fail", "failed \\(exit status 3\\)"),
    ("garbage", "did not print a key"),
    ("wrong", "returned a key that does not open"),
])
def test_command_kek_failures(keyring: Keyring, token: tuple[X25519Kek, list[str]],
                              mode: str, message: str) -> None:
    kek, argv = token
    command = CommandKek(kek.public, [*argv, mode])
    file = KeyringFile.new(keyring, STORE, [command])
    with pytest.raises(WrongKey, match=message) as caught:
        unwrap(file.envelopes[0], command, keyring.keyring_id, STORE)
    assert "helper.py" in str(caught.value)
    for secret in secrets_of(keyring):
        assert secret not in str(caught.value)
    with pytest.raises(WrongKey):
        file.unlock([command])


def test_command_kek_timeout_and_missing_program(keyring: Keyring,
                                                 token: tuple[X25519Kek, list[str]]) -> None:
    kek, argv = token
    slow = CommandKek(kek.public, [*argv, "slow"], timeout=0.5)
    envelope = wrap(keyring, slow, STORE)
    with pytest.raises(WrongKey, match=r"no answer within 0\.5 s"):
        unwrap(envelope, slow, keyring.keyring_id, STORE)
    missing = CommandKek(kek.public, ["/nonexistent/vst-token-helper"])
    with pytest.raises(WrongKey, match="cannot run key command"):
        unwrap(envelope, missing, keyring.keyring_id, STORE)


def test_envelope_dataclass_is_frozen(keyring: Keyring) -> None:
    envelope = wrap(keyring, X25519Kek.generate("x"), STORE)
    assert isinstance(envelope, Envelope)
    with pytest.raises(AttributeError):
        envelope.kind = "passphrase"  # type: ignore[misc]


def test_records_module_does_not_load_key_machinery() -> None:
    # The hot path imports only AES-GCM and BLAKE3 (the layer test checks vst imports).
    source = Path(records.__file__).read_text()
    assert "x25519" not in source.lower().split('"""')[2]


def test_kek_private_key_is_kept_clamped() -> None:
    raw = bytes(range(1, 33))  # low bits of byte 0 set, byte 31 unclamped
    kek = X25519Kek.from_private(raw, "x")
    assert kek.private_bytes() != raw
    assert X25519Kek.from_private(kek.private_bytes(), "x").private_bytes() == \
        kek.private_bytes()
    data = kek.encode().replace(kek.private_bytes().hex().encode(), raw.hex().encode())
    with pytest.raises(CorruptKey, match="canonical"):
        X25519Kek.decode(data, "kek.toml")


def test_a_damaged_check_value_is_caught_after_the_envelope_opens(keyring: Keyring) -> None:
    """The check value is compared after decryption: one flipped bit in it (or a secret
    that does not match it) is a damaged envelope, not a wrong key."""
    import dataclasses

    kek = X25519Kek.generate("x")
    envelope = wrap(keyring, kek, STORE)
    assert envelope.check is not None
    assert unwrap(envelope, kek, keyring.keyring_id, STORE) == keyring.dek + keyring.id_key
    for position in (0, len(envelope.check) - 1):
        damaged = bytearray(envelope.check)
        damaged[position] ^= 1
        with pytest.raises(CorruptKey, match="damaged check value"):
            unwrap(dataclasses.replace(envelope, check=bytes(damaged)), kek,
                   keyring.keyring_id, STORE)
