"""Golden vectors for every vst.crypto encoding (tests/data/crypto/).

Everything random (salts, nonces, ephemeral keys, keyring keys) comes from a seeded
deterministic source, so each file is rebuilt byte for byte; a change to a format, a
derivation or an associated-data layout shows up as a diff here. Each stored file is also
opened with the fixed keys, so files written by this version stay readable.

Regenerate (only for a deliberate, versioned format change):
    .venv/bin/python tests/test_crypto_vectors.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from vst.crypto.envelope import open_request, request_bytes, unwrap
from vst.crypto.kek import MIN_KDF, CommandKek, PassphraseKek, X25519Kek
from vst.crypto.keyring import Keyring, KeyringFile, new_keyring
from vst.crypto.records import RecordCipher

DATA = Path(__file__).parent / "data" / "crypto"
STORE_ID = "5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e"
PASSPHRASE = b"correct horse battery staple"
CREATED = 1_700_000_000


def stream(seed: str) -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom: successive bytes of BLAKE3's XOF."""
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        out = blake3.blake3(seed.encode()).digest(length=size, seek=offset)
        offset += size
        return out

    return take


def fixed_kek(name: str) -> X25519Kek:
    return X25519Kek.generate(name, random=stream(f"kek {name}"))


def build() -> dict[str, bytes]:
    """Every vector file, from the fixed seeds."""
    out: dict[str, bytes] = {}

    cipher = RecordCipher(stream("dek")(32), stream("keyring id")(16), random=stream("salts"))
    cases = []
    for plaintext in (b"", b"hello, vst\n", bytes(range(256))):
        oid = blake3.blake3(plaintext).digest()
        cases.append({"oid": oid.hex(), "plaintext": plaintext.hex(),
                      "body": cipher.seal(oid, plaintext).hex()})
    out["records.json"] = (json.dumps({
        "dek": stream("dek")(32).hex(), "keyring_id": stream("keyring id")(16).hex(),
        "cases": cases}, indent=2) + "\n").encode()

    alice = fixed_kek("alice")
    out["kek-plain.toml"] = alice.encode()
    out["kek-sealed.toml"] = alice.encode(passphrase=PASSPHRASE, kdf=MIN_KDF,
                                          random=stream("kek file salt"))

    ring = new_keyring("photos", random=stream("keyring"))
    token = CommandKek(fixed_kek("token").public, ["vst-token"])
    paper = PassphraseKek(PASSPHRASE, MIN_KDF, random=stream("paper salt"))
    file = KeyringFile.new(ring, STORE_ID, [alice, token, paper, fixed_kek("bob").public],
                           created=CREATED, random=stream("envelopes"))
    out["keyring.toml"] = file.encode()
    out["request.toml"] = request_bytes(file.envelopes[1], ring.keyring_id, STORE_ID)
    return out


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    return build()


@pytest.mark.parametrize("name", ["records.json", "kek-plain.toml", "kek-sealed.toml",
                                  "keyring.toml", "request.toml"])
def test_encoding_is_pinned(built: dict[str, bytes], name: str) -> None:
    assert built[name] == (DATA / name).read_bytes(), f"{name} changed: see the docstring"


def test_stored_records_open() -> None:
    vectors = json.loads((DATA / "records.json").read_text())
    cipher = RecordCipher(bytes.fromhex(vectors["dek"]), bytes.fromhex(vectors["keyring_id"]))
    for case in vectors["cases"]:
        assert cipher.open(bytes.fromhex(case["oid"]), bytes.fromhex(case["body"])) == \
            bytes.fromhex(case["plaintext"])


def test_record_scheme_matches_its_specification() -> None:
    # Rebuilt from the primitives as records.py's docstring states them, not via the code.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    vectors = json.loads((DATA / "records.json").read_text())
    dek, keyring_id = bytes.fromhex(vectors["dek"]), bytes.fromhex(vectors["keyring_id"])
    for case in vectors["cases"]:
        body, oid = bytes.fromhex(case["body"]), bytes.fromhex(case["oid"])
        salt = body[:16]
        key = blake3.blake3(b"vst record key v1" + salt, key=dek).digest()
        sealed = AESGCM(key).encrypt(bytes(12), bytes.fromhex(case["plaintext"]),
                                     b"vst-record-v1" + keyring_id + oid)
        assert salt + sealed == body


def test_stored_kek_files_load() -> None:
    alice = fixed_kek("alice")
    plain = X25519Kek.decode((DATA / "kek-plain.toml").read_bytes(), "kek-plain.toml")
    sealed = X25519Kek.decode((DATA / "kek-sealed.toml").read_bytes(), "kek-sealed.toml",
                              passphrase=PASSPHRASE)
    assert plain.private_bytes() == sealed.private_bytes() == alice.private_bytes()
    assert sealed.label == "alice"


def test_stored_keyring_opens_with_every_kek() -> None:
    ring: Keyring = new_keyring("photos", random=stream("keyring"))
    file = KeyringFile.decode((DATA / "keyring.toml").read_bytes(), "keyring.toml")
    assert (file.keyring_id, file.name, file.store_id, file.created) == \
        (ring.keyring_id, "photos", STORE_ID, CREATED)
    assert [env.kind for env in file.envelopes] == ["x25519", "command", "passphrase", "x25519"]
    for kek in (fixed_kek("alice"), fixed_kek("token"), fixed_kek("bob"),
                PassphraseKek(PASSPHRASE, MIN_KDF)):
        assert file.unlock([kek], store_id=STORE_ID) == ring
    assert unwrap(file.envelopes[1], fixed_kek("token"), ring.keyring_id, STORE_ID) == \
        ring.secret
    assert open_request((DATA / "request.toml").read_bytes(), fixed_kek("token")) == \
        ring.secret


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    for file_name, data in build().items():
        (DATA / file_name).write_bytes(data)
        print(f"wrote {DATA / file_name}", file=sys.stderr)
