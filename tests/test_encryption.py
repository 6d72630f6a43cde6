"""S13, S14 and S15 of RELIABILITY.md for encryption (issue 5), through the CLI where the
user meets them and through the library where that is cheaper.

S13, bad keys: wrong passphrase, another user's KEK, a keyring file from another store, KDF
parameters edited, corrupted key files (the user's and the store's, bytes flipped at many
positions), a key file others can read, keys/ deleted. Each attempt (a restore and, where
it could write, a commit) must fail with its exit code, change no byte of either store,
write no restored file, and print no secret (DEK, id key, private keys, passphrases). A
flip that leaves the keys as they were (a label, a comment, the creation time) may succeed,
and then must restore the right bytes. The downgrade (a collection's keyring line removed)
is its own test, expected to fail until the client remembers what it has seen.

S14, tampering: bits flipped in a record's salt, ciphertext, tag and header (id, type,
flags, size); records truncated, swapped between objects (same pack, another pack, another
keyring), moved to another keyring's pack or to an unencrypted pack, resealed with another
type or content, replaced by a plain record. None may be accepted by ``odb.get``,
``get_kind`` or restore's ``read_many``; every few trials a restore or clone through the CLI
must exit non-zero naming the object and the volume, writing only verified bytes.

S15, confidentiality: a random marker in file and folder names, contents (small, chunked,
compressible), a symlink target, a commit message and an author name, committed to an
encrypted collection on two volumes; then every byte and file name of both volumes is
searched for the marker (raw and hex) and for the plain BLAKE3, SHA-256 and vst ids of
every file and chunk. The store directory is reported separately. Record salts (the only
per-record nonce material) must be unique across forked processes.

The normal suite runs samples (a few seconds); VST_TORTURE=1 runs the full counts (S13:
every byte of the key files, S14: 10,000+ tamperings, S15: 10^6 salts). Both print figures.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import pytest
from clirun import Ran, vst_run

from vst.crypto.kek import MIN_KDF, PassphraseKek, X25519Kek
from vst.errors import VstError
from vst.objects.chunking import Chunker, ChunkParams
from vst.objects.ids import PLAIN_IDS
from vst.objects.odb import pack_name
from vst.objects.oid import Oid
from vst.objects.pack import NO_KEYRING, PackWriter, parse_pack
from vst.objects.seal import HEADER, Sealing, seal
from vst.objects.types import ObjectType
from vst.plumbing.reachable import reachable
from vst.store import Store
from vst.userkeys import UserKeys

TORTURE = os.environ.get("VST_TORTURE") == "1"
SEED = 20240605
KIB, MIB = 1024, 1024 * 1024
CHUNKS = ChunkParams(16 * KIB, 48 * KIB, 256 * KIB)  # large files become chunk lists
PASSPHRASE = b"correct horse battery staple"
RECOVERY = b"recovery words on paper"


# -- shared helpers -----------------------------------------------------------------------------


def user_env(root: Path, who: str, **extra: str | None) -> dict[str, str | None]:
    """The environment of user ``who`` (their own config folder), no key file or passphrase
    unless given."""
    values: dict[str, str | None] = {
        "XDG_CONFIG_HOME": str(root / "users" / who), "XDG_DATA_HOME": str(root / "data"),
        "XDG_STATE_HOME": str(root / "state" / who),
        "VST_AUTHOR_NAME": "Ann", "VST_AUTHOR_EMAIL": "ann@example.com",
        "VST_COMMITTER_NAME": "Ann", "VST_COMMITTER_EMAIL": "ann@example.com",
        "VST_KEY_FILE": None, "VST_PASSPHRASE": None}
    values.update(extra)
    return values


def keys_dir(root: Path, who: str) -> Path:
    return root / "users" / who / "vst" / "keys"


def ok(env: dict[str, str | None], *args: str) -> Ran:
    ran = vst_run(*args, env=env)
    assert ran.code == 0, (args, ran.err)
    return ran


def snapshot(*roots: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``roots``: path -> (size, BLAKE3)."""
    found = {}
    for root in roots:
        for directory, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    data = Path(path).read_bytes()
                    found[path] = (len(data), blake3.blake3(data).digest())
    return found


def bytes_written(before: dict[str, tuple[int, bytes]],
                  after: dict[str, tuple[int, bytes]]) -> int:
    """The bytes of files created or changed, plus those of files removed."""
    changed = sum(size for path, (size, digest) in after.items()
                  if before.get(path, (0, b""))[1] != digest)
    return changed + sum(size for path, (size, _) in before.items() if path not in after)


def tree_files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes (or the target of a symlink), outside .vst/."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] == ".vst":
            continue
        if path.is_symlink():
            found[str(relative)] = b"-> " + os.fsencode(os.readlink(path))
        elif path.is_file():
            found[str(relative)] = path.read_bytes()
    return found


@contextmanager
def edited(path: Path, data: bytes | None) -> Iterator[None]:
    """``path`` holds ``data`` (None: is removed) inside the block, its old bytes after."""
    old = path.read_bytes()
    mode = path.stat().st_mode
    try:
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
            path.chmod(mode)
        yield
    finally:
        path.write_bytes(old)
        path.chmod(mode)


# -- S13: bad keys ------------------------------------------------------------------------------


@dataclass
class KeyWorld:
    root: Path
    store: Path  # Ann's store: collection docs, encrypted, with a recovery passphrase too
    other: Path  # another store of Ann's, with its own docs keyring
    work: Path  # Ann's working copy of docs, holding a change not committed yet
    head_files: dict[str, bytes]
    secrets: dict[str, bytes]


def build_key_world(root: Path) -> KeyWorld:
    ann = user_env(root, "ann")
    store, other, work = root / "store", root / "other", root / "work"
    ok(ann, "store", "init", str(store))
    work.mkdir()
    (work / "notes.txt").write_bytes(b"the plan\n")
    (work / "sub").mkdir()
    (work / "sub" / "data.bin").write_bytes(os.urandom(5000))
    (work / "link").symlink_to("notes.txt")
    ok(ann, "--store", str(store), "init", str(work), "-c", "docs")
    ok(ann, "-C", str(work), "commit", "-m", "first")
    head_files = tree_files(work)
    (work / "pending.txt").write_bytes(b"a change that must never be committed here\n")
    ok(ann, "store", "init", str(other))
    (root / "work2").mkdir()
    (root / "work2" / "x.txt").write_bytes(b"other store\n")
    ok(ann, "--store", str(other), "init", str(root / "work2"), "-c", "docs")
    ok(ann, "-C", str(root / "work2"), "commit", "-m", "elsewhere")

    ann_path = keys_dir(root, "ann") / "default.toml"
    ann_kek = X25519Kek.load(str(ann_path))
    ann_kek.save(str(keys_dir(root, "sealed") / "default.toml"), passphrase=PASSPHRASE,
                 kdf=MIN_KDF)
    bob = UserKeys(str(keys_dir(root, "bob"))).generate("default")
    keys_dir(root, "nobody").mkdir(parents=True)
    secrets = {"Ann's private key": ann_kek.private_bytes(),
               "Bob's private key": X25519Kek.load(bob.path).private_bytes(),
               "passphrase": PASSPHRASE, "recovery passphrase": RECOVERY}
    for label, path in (("", store), (" (other store)", other)):
        opened = Store.open(str(path))
        opened.keyrings.source = UserKeys(str(keys_dir(root, "ann")))
        try:
            ring = opened.keyrings.unlock("docs")
            secrets[f"DEK{label}"] = ring.dek
            secrets[f"id key{label}"] = ring.id_key
            if path == store:  # a recovery passphrase as a second way in
                file = opened.keyrings.read("docs")
                file.add(ring, PassphraseKek(RECOVERY, MIN_KDF))
                opened.keyrings.write(file)
        finally:
            opened.close()
    return KeyWorld(root, store, other, work, head_files, secrets)


@pytest.fixture(scope="module")
def key_world(tmp_path_factory: pytest.TempPathFactory) -> KeyWorld:
    return build_key_world(tmp_path_factory.mktemp("s13"))


@dataclass
class Tally:
    attempts: int = 0
    detected: int = 0
    harmless: int = 0  # succeeded with the right bytes: the change did not touch a key
    written: int = 0
    leaked: int = 0
    codes: Counter[int] = field(default_factory=Counter)


class KeyRun:
    def __init__(self, world: KeyWorld) -> None:
        self.world = world
        self.tallies: dict[str, Tally] = {}
        self.failures: list[str] = []
        self.number = 0

    def attempt(self, case: str, env: dict[str, str | None], action: str,
                expected: tuple[int, ...], *, harmless_ok: bool = False) -> Ran:
        """Run ``action`` (restore or commit) as ``env``; tally and check the outcome."""
        world = self.world
        self.number += 1
        target = world.root / "restored" / str(self.number)
        before = snapshot(world.store, world.other)
        if action == "restore":
            ran = vst_run("--store", str(world.store), "restore", "-c", "docs", "--to",
                          str(target), env=env)
        else:
            ran = vst_run("-C", str(world.work), "commit", "-m", "attempt", env=env)
        written = bytes_written(before, snapshot(world.store, world.other))
        tally = self.tallies.setdefault(case, Tally())
        tally.attempts += 1
        tally.codes[ran.code] += 1
        text = ran.out + ran.err.encode()
        leaked = [name for name, secret in world.secrets.items()
                  if secret in text or secret.hex().encode() in text.lower()]
        tally.leaked += bool(leaked)
        problem = ""
        if ran.code == 0 and harmless_ok and action == "restore":
            if tree_files(target) == world.head_files and not written:
                tally.harmless += 1
            else:
                problem = "succeeded with other bytes"
        elif ran.code in expected:
            tally.detected += 1
            if target.exists() and any(target.rglob("*")):
                written += sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
                problem = "restored files"
            if len(ran.err_lines) > 2 or "Traceback" in ran.err:
                problem = f"not a short error: {ran.err!r}"
        else:
            problem = f"exit {ran.code}, expected {expected}: {ran.err.strip()!r}"
        tally.written += written
        if written and not problem:
            problem = f"{written} bytes written to the stores"
        if leaked:
            problem += f" printed {leaked}"
        if problem:
            self.failures.append(f"{case} ({action}): {problem}")
        shutil.rmtree(target, ignore_errors=True)
        return ran

    def print_table(self, seconds: float) -> None:
        total = Tally()
        lines = [f"{'case':<44}{'attempts':>9}{'detected':>9}{'harmless':>9}"
                 f"{'written':>8}{'secrets':>8}  exit codes"]
        for case, tally in [*self.tallies.items(), ("total", total)]:
            if case != "total":
                for name in ("attempts", "detected", "harmless", "written", "leaked"):
                    setattr(total, name, getattr(total, name) + getattr(tally, name))
                total.codes.update(tally.codes)
            codes = " ".join(f"{code}x{n}" for code, n in sorted(tally.codes.items()))
            lines.append(f"{case:<44}{tally.attempts:>9}{tally.detected:>9}"
                         f"{tally.harmless:>9}{tally.written:>8}{tally.leaked:>8}  {codes}")
        print(f"\nS13 bad keys: {total.attempts} attempts in {seconds:.1f} s "
              "(written: bytes changed in either store or restored; secrets: outputs "
              "holding one)")
        print("\n".join(lines))


def flip_positions(data: bytes, rng: random.Random) -> list[tuple[int, int]]:
    """(position, new byte) pairs: every byte at full count, a sample otherwise."""
    positions = range(len(data)) if TORTURE else sorted(rng.sample(range(len(data)), 16))
    pairs = [(p, data[p] ^ 0x01) for p in positions]
    if TORTURE:
        pairs += [(p, ord("0")) for p in positions if data[p] != ord("0")]
    return pairs


def flip(data: bytes, position: int, value: int) -> bytes:
    changed = bytearray(data)
    changed[position] = value
    return bytes(changed)


def test_s13_bad_keys_are_detected_write_nothing_and_print_no_secret(
        key_world: KeyWorld) -> None:
    world, root = key_world, key_world.root
    run = KeyRun(world)
    rng = random.Random(SEED)
    start = time.perf_counter()
    nobody, bob = user_env(root, "nobody"), user_env(root, "bob")
    sealed = user_env(root, "sealed", VST_PASSPHRASE=PASSPHRASE.decode())
    recovery = user_env(root, "nobody", VST_PASSPHRASE=RECOVERY.decode())
    wrong_recovery = user_env(root, "nobody", VST_PASSPHRASE="not the recovery words")
    bob_file = str(keys_dir(root, "bob") / "default.toml")
    both = ("restore", "commit")
    cases: list[tuple[str, dict[str, str | None], tuple[str, ...], tuple[int, ...]]] = [
        ("no key at all", nobody, both, (12,)),
        ("another user's key (Bob's key folder)", bob, both, (12,)),
        ("another user's key (VST_KEY_FILE)", user_env(root, "nobody", VST_KEY_FILE=bob_file),
         both, (12,)),
        ("sealed key file, no passphrase", user_env(root, "sealed"), both, (12,)),
        ("sealed key file, wrong passphrase",
         user_env(root, "sealed", VST_PASSPHRASE="Tr0ub4dor&3"), both, (12,)),
        ("recovery envelope, wrong passphrase", wrong_recovery, both, (12,)),
    ]
    for case, env, actions, expected in cases:
        for action in actions:
            run.attempt(case, env, action, expected)
    # The right keys open it (the checks above could not all fail for one reason).
    for env in (sealed, recovery, user_env(root, "ann")):
        run.attempt("control: the right key", env, "restore", (), harmless_ok=True)

    # KDF parameters edited: in the user's sealed key file and in the recovery envelope.
    sealed_file = keys_dir(root, "sealed") / "default.toml"
    keyring_file = world.store / "keys" / "docs.toml"
    for path, env, who in ((sealed_file, sealed, "user's sealed key file"),
                           (keyring_file, recovery, "recovery envelope")):
        text = path.read_text()
        assert "n = 16384\nr = 8\np = 1\n" in text
        for edit, expected in (("n = 32768\nr = 8\np = 1\n", (12,)),
                               ("n = 8192\nr = 8\np = 1\n", (7,)),
                               ("n = 16384\nr = 4\np = 1\n", (7,)),
                               ("n = 16384\nr = 8\np = 2\n", (12,)),
                               ("n = 1099511627776\nr = 8\np = 1\n", (7,))):
            with edited(path, text.replace("n = 16384\nr = 8\np = 1\n", edit).encode()):
                for action in both:
                    run.attempt(f"KDF parameters edited ({who})", env, action, expected)

    # A keyring file from another store: as copied, and with its store id made to match.
    foreign = (world.other / "keys" / "docs.toml").read_bytes()
    this_id = Store.open(str(world.store)).store_id
    other_id = Store.open(str(world.other)).store_id
    ann = user_env(root, "ann")
    for case, data in (("keyring file from another store", foreign),
                       ("... with its store id edited to this one's",
                        foreign.replace(other_id.encode(), this_id.encode()))):
        with edited(keyring_file, data):
            for action in both:
                run.attempt(case, ann, action, (12,))
    # A key file others can read is refused (as ssh does) before it is used.
    ann_file = keys_dir(root, "ann") / "default.toml"
    ann_file.chmod(0o644)
    try:
        for action in both:
            run.attempt("key file readable by others", ann, action, (5,))
    finally:
        ann_file.chmod(0o600)
    # The store's keys/ gone: nothing opens the encrypted objects, nothing is written.
    keys = world.store / "keys"
    keys.rename(root / "keys-aside")
    try:
        run.attempt("store's keys/ deleted", ann, "restore", (12,))
        run.attempt("store's keys/ deleted", ann, "commit", (17,))
    finally:
        (root / "keys-aside").rename(keys)

    # Corrupted key files, a byte at a time: the user's (plain and sealed) and the store's.
    for case, path, env in (("user's key file, byte changed", ann_file, ann),
                            ("user's sealed key file, byte changed", sealed_file, sealed),
                            ("store's keyring file, byte changed", keyring_file, ann),
                            ("store's keyring file, byte changed (recovery)", keyring_file,
                             recovery)):
        data = path.read_bytes()
        for position, value in flip_positions(data, rng):
            with edited(path, flip(data, position, value)):
                run.attempt(case, env, "restore", (7, 12), harmless_ok=True)
    run.print_table(time.perf_counter() - start)
    assert run.failures == [], "\n".join(run.failures[:20])
    for case, tally in run.tallies.items():
        assert tally.written == tally.leaked == 0, case
        if case.startswith("control"):
            assert tally.harmless == tally.attempts == 3
        elif "byte changed" in case:
            # Most changes touch a key, a fingerprint, an id or the syntax.
            assert tally.detected > tally.harmless, case
        else:
            assert tally.detected == tally.attempts, case


@pytest.mark.parametrize("downgrade", ["keyring line removed", "keys/ deleted", "both"])
def test_s13_downgrade_to_unencrypted_is_refused(tmp_path: Path, downgrade: str) -> None:
    # Detected from what the client remembers of the store (vst/known.py): a collection it
    # has seen encrypted is never written in the clear because the store now says so.
    ann = user_env(tmp_path, "ann")
    store, work = tmp_path / "store", tmp_path / "work"
    ok(ann, "store", "init", str(store))
    work.mkdir()
    (work / "a.txt").write_bytes(b"first\n")
    ok(ann, "--store", str(store), "init", str(work), "-c", "docs")
    ok(ann, "-C", str(work), "commit", "-m", "first")
    if downgrade != "keys/ deleted":
        table = store / "collections" / "docs.toml"
        table.write_text("".join(line for line in table.read_text().splitlines(True)
                                 if not line.startswith("keyring")))
    if downgrade != "keyring line removed":
        shutil.rmtree(store / "keys")
    marker = os.urandom(16).hex().encode()
    (work / "secret.txt").write_bytes(marker)
    before = snapshot(store)
    ran = vst_run("-C", str(work), "commit", "-m", "second", env=ann)
    after = snapshot(store)
    plaintext = [path for path in after if marker in Path(path).read_bytes()]
    print(f"\nS13 downgrade ({downgrade}): commit exit {ran.code}, "
          f"{bytes_written(before, after)} bytes written, {len(plaintext)} files with the marker")
    assert ran.code == (17 if downgrade == "keys/ deleted" else 12), ran.err
    assert bytes_written(before, after) == 0 and not plaintext


# -- S14: tampering -----------------------------------------------------------------------------


@dataclass
class TamperWorld:
    root: Path
    store: Store
    volume: Path  # the one volume's directory
    volume_id: str
    objects: dict[Oid, tuple[ObjectType, bytes]]  # every object, read before any damage
    records: dict[Oid, tuple[Oid, int, bytes, bytes | None]]  # oid -> pack, offset, record, keyring
    reached: dict[str, set[Oid]]  # collection -> what restoring its head reads
    heads: dict[str, dict[str, bytes]]  # collection -> the files of its head
    sealings: dict[bytes, Sealing]  # keyring id -> sealing


def build_tamper_world(root: Path) -> TamperWorld:
    rng = random.Random(SEED + 14)
    ann = user_env(root, "ann")
    path = root / "store"
    Store.init(str(path), pack_size=48 * KIB, chunk_params=CHUNKS).close()
    heads = {}
    for name in ("docs", "photos", "plain"):
        work = root / name
        work.mkdir()
        extra = ["--no-encrypt"] if name == "plain" else []
        for version in range(2):
            for i in range(6):
                (work / f"f{version}-{i}.txt").write_bytes(
                    f"{name} {version} {i}\n".encode() * rng.randint(1, 400))
            (work / f"big{version}.bin").write_bytes(rng.randbytes(200 * KIB))
            if version == 0:
                (work / "dir").mkdir()
                (work / "dir" / "link").symlink_to("../f0-0.txt")
                ok(ann, "--store", str(path), "init", str(work), "-c", name, *extra)
            ok(ann, "-C", str(work), "commit", "-m", f"{name} v{version}")
        heads[name] = tree_files(work)
    store = Store.open(str(path))
    store.keyrings.source = UserKeys(str(keys_dir(root, "ann")))
    sealings = {store.keyrings.unlock(name).keyring_id: store.sealing(name)
                for name in ("docs", "photos")}
    odb = store.odb
    (volume,) = store.volumes()
    objects, records = {}, {}
    for oid, _ in odb.index.all_objects():
        location = odb.index.lookup(oid)  # with its pack's keyring
        objects[oid] = odb.get(oid)
        with open(Path(volume.backend.root) / pack_name(location.pack), "rb") as f:
            f.seek(location.offset)
            records[oid] = (location.pack, location.offset, f.read(location.length),
                            location.keyring)
    # What a restore of the head reads: the head commit and its tree, not older commits.
    reached = {c.name: {c.head} | {oid for oid, _kind in reachable(
        store, [odb.read_commit(c.head).tree])} for c in store.collections()
        if c.head is not None}
    return TamperWorld(root, store, Path(volume.backend.root), volume.volume_id, objects,
                       records, reached, heads, sealings)


@pytest.fixture(scope="module")
def tamper_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TamperWorld]:
    world = build_tamper_world(tmp_path_factory.mktemp("s14"))
    yield world
    world.store.close()


def _flip_in(record: bytes, start: int, end: int, rng: random.Random) -> bytes:
    changed = bytearray(record)
    changed[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    return bytes(changed)


def _as(oid: Oid, record: bytes) -> bytes:
    """``record`` with its header naming ``oid``: only the AEAD can tell."""
    return oid.raw + record[32:]


class Tamper:
    """One tampering: the bytes (and keyring of the pack) the reader will find for ``oid``."""

    def __init__(self, world: TamperWorld, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.encrypted = sorted(o for o, r in world.records.items() if r[3] is not None)
        self.by_keyring: dict[bytes, list[Oid]] = {}
        for oid in self.encrypted:
            self.by_keyring.setdefault(world.records[oid][3] or b"", []).append(oid)
        in_pack = Counter(world.records[oid][0] for oid in self.encrypted)
        self.with_sibling = {o for o in self.encrypted if in_pack[world.records[o][0]] > 1}

    def other(self, oid: Oid, same_pack: bool | None, same_keyring: bool) -> Oid:
        pack, _, _, keyring = self.world.records[oid]
        pool = [o for o in (self.encrypted if not same_keyring else self.by_keyring[keyring or b""])
                if o != oid and (same_keyring or self.world.records[o][3] != keyring)
                and (same_pack is None or (self.world.records[o][0] == pack) == same_pack)]
        return self.rng.choice(pool)

    def make(self, kind: str, oid: Oid) -> tuple[bytes, bytes | None] | bytes:
        """In-place damage (bytes of the same length), or (record, pack keyring) for a pack
        of the attacker's making."""
        world, rng = self.world, self.rng
        _, _, record, keyring = world.records[oid]
        assert keyring is not None
        body = HEADER.size
        if kind == "salt":
            return _flip_in(record, body, body + 16, rng)
        if kind == "ciphertext":
            return _flip_in(record, body + 16, len(record) - 16, rng)
        if kind == "tag":
            return _flip_in(record, len(record) - 16, len(record), rng)
        if kind == "header: id":
            return _flip_in(record, 0, 32, rng)
        if kind == "header: type":
            return _flip_in(record, 32, 33, rng)
        if kind == "header: flags":
            return _flip_in(record, 33, 34, rng)
        if kind == "header: size":
            return _flip_in(record, 34, 42, rng)
        if kind == "truncated or extended":
            cut = rng.choice([-1, -16, -17, len(HEADER.pack(oid.raw, 0, 0, 0)) + 20 - len(record)])
            return (record[:cut] if rng.random() < 0.7 else record + b"\0"), keyring
        if kind == "swapped: same pack":
            return _as(oid, world.records[self.other(oid, True, True)][2]), keyring
        if kind == "swapped: other pack":
            return _as(oid, world.records[self.other(oid, False, True)][2]), keyring
        if kind == "swapped: other keyring":
            return _as(oid, world.records[self.other(oid, None, False)][2]), keyring
        if kind == "moved to another keyring's pack":
            others = [k for k in world.sealings if k != keyring]
            return record, rng.choice(others)
        if kind == "moved to an unencrypted pack":
            return record, None
        type_, content = world.objects[oid]
        cipher = world.sealings[keyring].cipher
        if kind == "resealed with another type (key holder)":
            other_type = rng.choice([t for t in ObjectType if t != type_])
            return seal(oid, other_type, content, 3, cipher), keyring
        if kind == "resealed with other content (key holder)":
            other = world.objects[self.other(oid, None, True)][1]
            return seal(oid, type_, other, 3, cipher), keyring
        if kind == "plain record, other content":
            other = world.objects[self.other(oid, None, True)][1]
            return seal(oid, type_, other + b"!", 3), keyring
        if kind == "plain record, the true content":
            return seal(oid, type_, content, rng.choice([0, 3])), keyring
        raise AssertionError(kind)


TAMPER_KINDS = ["salt", "ciphertext", "tag", "header: id", "header: type", "header: flags",
                "header: size", "truncated or extended", "swapped: same pack",
                "swapped: other pack", "swapped: other keyring",
                "moved to another keyring's pack", "moved to an unencrypted pack",
                "resealed with another type (key holder)",
                "resealed with other content (key holder)", "plain record, other content"]
PER_TAMPER_KIND = 650 if TORTURE else 20  # 16 kinds: 10,400 at full count
CLI_EVERY = 40 if TORTURE else 8  # trials between restores or clones through the CLI


@contextmanager
def tampered(world: TamperWorld, oid: Oid, made: tuple[bytes, bytes | None] | bytes,
             db: sqlite3.Connection) -> Iterator[None]:
    """The volume (and the index, for a pack of the attacker's making) serving ``made``
    for ``oid`` inside the block; as before afterwards."""
    pack, offset, record, _ = world.records[oid]
    if isinstance(made, bytes):
        path = world.volume / pack_name(pack)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(made)
        try:
            yield
        finally:
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(record)
        return
    new_record, keyring = made
    writer = PackWriter(keyring or NO_KEYRING)
    writer.add(oid, new_record)
    new_pack, data, index = writer.finish()
    path = world.volume / pack_name(new_pack)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))
    (entry,) = index.entries
    db.execute("INSERT OR REPLACE INTO packs VALUES (?, ?, ?, ?)",
               (new_pack.raw, len(data), 1, keyring))
    db.execute("INSERT OR IGNORE INTO pack_copies VALUES (?, ?)", (new_pack.raw, world.volume_id))
    db.execute("UPDATE objects SET pack = ?, offset = ?, length = ? WHERE id = ?",
               (new_pack.raw, entry.offset, entry.length, oid.raw))
    try:
        yield
    finally:
        db.execute("UPDATE objects SET pack = ?, offset = ?, length = ? WHERE id = ?",
                   (pack.raw, offset, len(record), oid.raw))
        db.execute("DELETE FROM pack_copies WHERE pack = ?", (new_pack.raw,))
        db.execute("DELETE FROM packs WHERE id = ?", (new_pack.raw,))
        path.unlink()


@dataclass
class TamperTally:
    trials: int = 0
    accepted: int = 0
    named: int = 0  # errors naming the object, the pack's volume
    cli: int = 0
    cli_refused: int = 0


def accepted_reads(world: TamperWorld, oid: Oid) -> tuple[int, bool]:
    """How many of get, get_kind and read_many accepted ``oid``; whether every refusal
    named the object and the volume."""
    odb = world.store.odb
    accepted, named = 0, True
    for read in (odb.get, odb.get_kind):
        try:
            read(oid)
            accepted += 1
        except VstError as exc:
            named = named and str(oid) in exc.message and "volume 'default'" in exc.message
    try:
        found = odb.read_many([(oid, len(world.objects[oid][1]))], {})
        accepted += found != [None]
    except VstError as exc:
        named = named and str(oid) in exc.message
    return accepted, named


def cli_refuses(world: TamperWorld, oid: Oid, number: int) -> str:
    """A restore (or clone) through the CLI of a collection whose head reaches ``oid``:
    '' when it exits non-zero naming the object and volume and wrote only true bytes."""
    collection = next(c for c, objs in world.reached.items() if oid in objs)
    target = world.root / "out" / str(number)
    env = user_env(world.root, "ann")
    if number % 2:
        ran = vst_run("--store", world.store.path, "restore", "-c", collection, "--to",
                      str(target), env=env)
    else:
        ran = vst_run("--store", world.store.path, "clone", collection, str(target), env=env)
    problem = ""
    if ran.code == 0:
        problem = "exit 0"
    elif str(oid)[:12] not in ran.err or "volume 'default'" not in ran.err:
        problem = f"error does not name the object and volume: {ran.err.strip()!r}"
    elif "Traceback" in ran.err:
        problem = "traceback"
    if target.exists():
        truth = world.heads[collection]
        wrong = [p for p, data in tree_files(target).items() if truth.get(p) != data]
        if wrong:
            problem += f" wrote unverified files {wrong[:3]}"
        shutil.rmtree(target)
    return problem


def test_s14_tampered_records_are_never_accepted(tamper_world: TamperWorld) -> None:
    world = tamper_world
    rng = random.Random(SEED + 15)
    tamper = Tamper(world, rng)
    assert {r[3] for r in world.records.values()} >= {None, *world.sealings}
    assert len({r[0] for r in world.records.values() if r[3] is not None}) >= 6
    for oid, (type_, content) in world.objects.items():  # untouched: all served
        assert world.store.odb.get(oid) == (type_, content)
    kinds = [kind for kind in TAMPER_KINDS for _ in range(PER_TAMPER_KIND)]
    rng.shuffle(kinds)
    reached = set().union(*world.reached.values())
    tallies = {kind: TamperTally() for kind in TAMPER_KINDS}
    failures = []
    db = sqlite3.connect(world.store.odb.index.path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    start = time.perf_counter()
    try:
        for number, kind in enumerate(kinds):
            through_cli = number % CLI_EVERY == 0
            pool = [o for o in tamper.encrypted if (o in reached or not through_cli)
                    and (o in tamper.with_sibling or kind != "swapped: same pack")]
            oid = rng.choice(pool)
            made = tamper.make(kind, oid)
            tally = tallies[kind]
            with tampered(world, oid, made, db):
                accepted, named = accepted_reads(world, oid)
                tally.trials += 1
                tally.accepted += bool(accepted)
                tally.named += named
                if accepted or not named:
                    failures.append(f"{kind} on {oid}: accepted {accepted}, named {named}")
                if through_cli:
                    tally.cli += 1
                    problem = cli_refuses(world, oid, number)
                    tally.cli_refused += not problem
                    if problem:
                        failures.append(f"{kind} on {oid} through the CLI: {problem}")
    finally:
        db.close()
    seconds = time.perf_counter() - start
    total = TamperTally()
    lines = [f"{'kind':<44}{'trials':>7}{'accepted':>9}{'named':>7}{'CLI':>5}{'refused':>8}"]
    for kind, tally in [*tallies.items(), ("total", total)]:
        if kind != "total":
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        lines.append(f"{kind:<44}{tally.trials:>7}{tally.accepted:>9}{tally.named:>7}"
                     f"{tally.cli:>5}{tally.cli_refused:>8}")
    packs = {r[0] for r in world.records.values()}
    print(f"\nS14 tampering: {total.trials} trials in {seconds:.1f} s on {len(world.objects)} "
          f"objects in {len(packs)} packs (2 encrypted keyrings and unencrypted objects); "
          "each read by get, get_kind and read_many; every "
          f"{CLI_EVERY}th through 'vst restore' or 'vst clone'")
    print("\n".join(lines))
    assert failures == [], "\n".join(failures[:20])
    assert total.accepted == 0 and total.trials == len(TAMPER_KINDS) * PER_TAMPER_KIND
    assert total.cli_refused == total.cli > 0
    for oid, (type_, content) in world.objects.items():  # every tampering undone
        assert world.store.odb.get(oid) == (type_, content)


def test_s14_plain_record_with_true_content_in_an_encrypted_pack(
        tamper_world: TamperWorld) -> None:
    world = tamper_world
    tamper = Tamper(world, random.Random(SEED + 16))
    db = sqlite3.connect(world.store.odb.index.path, isolation_level=None)
    try:
        oid = tamper.encrypted[0]
        with tampered(world, oid, tamper.make("plain record, the true content", oid), db):
            assert accepted_reads(world, oid)[0] == 0
    finally:
        db.close()


# -- S15: confidentiality -----------------------------------------------------------------------


SALTS = 1_000_000 if TORTURE else 10_000  # across forked processes
FORKS = 4
BIG = (24 if TORTURE else 2) * MIB  # the chunked file


def canary_tree(work: Path, marker: str, rng: random.Random) -> None:
    m = marker.encode()
    (work / f"{marker}.txt").write_bytes(b"small " + m + b"\n")
    (work / f"dir-{marker}").mkdir()
    (work / f"dir-{marker}" / "inner.txt").write_bytes(b"inside a named folder\n")
    big = bytearray(rng.randbytes(BIG))
    for at in range(0, BIG, 300 * KIB):
        big[at:at + len(m)] = m
    (work / "big.bin").write_bytes(bytes(big))
    (work / "text.txt").write_bytes(b"".join(b"line %d of the canary %s\n" % (i, m)
                                             for i in range(8000)))
    (work / "link").symlink_to(f"../{marker}/target")


def needles(work: Path, marker: str, params: ChunkParams) -> dict[bytes, str]:
    """What must appear nowhere: the marker, and the plain hashes and vst ids of every file
    (and symlink target) and every chunk, raw and in hex."""
    found = {marker.encode(): "marker", marker.encode().hex().encode(): "marker (hex)"}
    chunker = Chunker(params)
    for path in sorted(work.rglob("*")):
        if ".vst" in path.relative_to(work).parts or (path.is_dir() and not path.is_symlink()):
            continue
        data = os.fsencode(os.readlink(path)) if path.is_symlink() else path.read_bytes()
        pieces = [("file", data)] + [("chunk", bytes(c)) for c in chunker.split_buffer(data)]
        for what, piece in pieces:
            for name, digest in (("BLAKE3", blake3.blake3(piece).digest()),
                                 ("SHA-256", hashlib.sha256(piece).digest()),
                                 ("vst id", PLAIN_IDS.compute(ObjectType.BLOB, piece).raw)):
                label = f"{name} of {what} {path.name}"
                found[digest] = label
                found[digest.hex().encode()] = label + " (hex)"
    return found


def scan(root: Path, wanted: dict[bytes, str], skip: Path | None = None
         ) -> tuple[int, int, list[str]]:
    """(files, bytes, hits) for every file name and every byte under ``root``."""
    files = size = 0
    hits = []
    for directory, dirs, names in os.walk(root):
        if skip is not None and Path(directory) == skip.parent:
            dirs[:] = [d for d in dirs if Path(directory, d) != skip]
        for name in dirs + names:
            path = Path(directory, name)
            relative = os.fsencode(str(path.relative_to(root)))
            hits += [f"{wanted[n]} in the name {path}" for n in wanted if n in relative]
            if name in names and not path.is_symlink():
                data = path.read_bytes()
                files += 1
                size += len(data)
                hits += [f"{wanted[n]} in {path}" for n in wanted if n in data]
    return files, size, hits


def record_salts(volume: Path) -> list[bytes]:
    """The salt of every encrypted record in every pack on ``volume``."""
    salts = []
    for path in sorted((volume / "packs").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            index = parse_pack(data, path.name)
            if index.keyring_id != NO_KEYRING:
                salts += [data[e.offset + HEADER.size:e.offset + HEADER.size + 16]
                          for e in index.entries]
    return salts


def test_s15_no_canary_or_plain_hash_on_any_volume(tmp_path: Path) -> None:
    rng = random.Random(SEED + 20)
    marker = f"canary{os.urandom(12).hex()}"
    ann = user_env(tmp_path, "ann", VST_AUTHOR_NAME=f"Ann {marker}")
    path, work, second = tmp_path / "store", tmp_path / "work", tmp_path / "second"
    Store.init(str(path), pack_size=256 * KIB, chunk_params=CHUNKS).close()
    ok(ann, "--store", str(path), "volume", "add", "second", str(second))
    work.mkdir()
    canary_tree(work, marker, rng)
    ok(ann, "--store", str(path), "init", str(work), "-c", "vault")
    ok(ann, "-C", str(work), "commit", "-m", f"first {marker}")
    (work / f"{marker}.txt").write_bytes(b"changed " + marker.encode() + b"\n")
    (work / f"new-{marker}").mkdir()
    (work / f"new-{marker}" / "more.txt").write_bytes(marker.encode() * 3)
    ok(ann, "-C", str(work), "commit", "-m", f"second {marker}")
    wanted = needles(work, marker, CHUNKS)
    start = time.perf_counter()
    rows = []
    volumes = {"default": path / "volumes" / "default", "second": second}
    for name, root in volumes.items():
        rows.append((f"volume '{name}'", *scan(root, wanted)))
    rows.append(("store directory (without its volume)",
                 *scan(path, wanted, skip=path / "volumes")))
    salts = record_salts(second)  # the default volume holds copies of the same packs
    seconds = time.perf_counter() - start
    print(f"\nS15 canary scan: marker {marker} in names, folders, contents (small, "
          f"{BIG // MIB} MiB chunked, compressible), a symlink target, messages and the "
          f"author; {len(wanted)} needles (marker raw and hex; BLAKE3, SHA-256 and plain "
          f"vst ids of every file and chunk, raw and hex); {seconds:.1f} s")
    print(f"{'where':<40}{'files':>7}{'bytes':>12}{'hits':>6}")
    for where, files, size, hits in rows:
        print(f"{where:<40}{files:>7}{size:>12}{len(hits):>6}")
        for hit in hits[:10]:
            print(f"    {hit}")
    print(f"record salts in the packs: {len(salts)}, {len(salts) - len(set(salts))} repeated")
    for where, files, size, _hits in rows[:2]:
        assert files > 0 and size > BIG // 2, where
    assert len(scan(work, wanted)[2]) >= 5  # the scan finds what is there in the clear
    for _where, _files, _size, hits in rows:
        assert hits == [], hits
    assert len(salts) > 30 and len(set(salts)) == len(salts)
    assert sorted(salts) == sorted(record_salts(volumes["default"]))


def test_s15_record_salts_unique_across_forked_processes(tmp_path: Path) -> None:
    # A cipher made before fork(), sealing through the object layer in every process: the
    # salt is the only per-record value (the record key is derived from it).
    from vst.crypto.records import RecordCipher

    cipher = RecordCipher(os.urandom(32), os.urandom(16))
    oid = Oid(os.urandom(32))
    per_process = SALTS // FORKS
    start = time.perf_counter()
    children = []
    for number in range(FORKS - 1):
        out = tmp_path / f"salts-{number}"
        pid = os.fork()
        if pid == 0:  # pragma: no cover (runs in the child)
            code = 1
            try:
                with open(out, "wb") as f:
                    f.write(b"".join(seal(oid, ObjectType.BLOB, b"x", 0, cipher)
                                     [HEADER.size:HEADER.size + 16]
                                     for _ in range(per_process)))
                code = 0
            finally:
                os._exit(code)
        children.append((pid, out))
    salts = [bytes(seal(oid, ObjectType.BLOB, b"x", 0, cipher)[HEADER.size:HEADER.size + 16])
             for _ in range(per_process)]
    for pid, out in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        data = out.read_bytes()
        assert len(data) == 16 * per_process
        salts += [data[i:i + 16] for i in range(0, len(data), 16)]
    repeated = len(salts) - len(set(salts))
    print(f"\nS15 salts across {FORKS} processes sharing one cipher made before fork(): "
          f"{len(salts):,} records sealed in {time.perf_counter() - start:.1f} s, "
          f"{repeated} repeated")
    assert len(salts) == FORKS * per_process >= SALTS - FORKS and repeated == 0
