"""``vst key``: gen, list, export (key file and paper), import, grant and revoke, through the
real CLI (in-process) on real stores and key folders.

scrypt runs with cheap parameters (kek.TEST_KDF_ALLOWED, kek.DEFAULT_KDF patched): the
porcelain looks the default up when it runs, the crypto layer refuses such parameters
otherwise."""

from __future__ import annotations

import json
import os
import pty
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import Ran, vst_run
from test_cli import assert_one_line_error

from vst.crypto import kek as kek_module
from vst.crypto.kek import KdfParams, X25519Kek
from vst.errors import CorruptKey
from vst.porcelain.key import paper_decode, paper_encode

PASS2 = "second key passphrase"
RECOVERY = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kek_module, "TEST_KDF_ALLOWED", True)
    monkeypatch.setattr(kek_module, "DEFAULT_KDF", KdfParams(16, 1, 1))
    monkeypatch.delenv("VST_PASSPHRASE", raising=False)
    monkeypatch.delenv("VST_KEY_FILE", raising=False)


def vst(where: Path, *args: str, input: bytes | None = None, **env: str) -> Ran:
    return vst_run("-C", str(where), *args, input=input, env=env)


def ok(where: Path, *args: str, input: bytes | None = None, **env: str) -> str:
    ran = vst(where, *args, input=input, **env)
    assert ran.code == 0, ran.err
    return ran.out.decode()


def fails(code: int, where: Path, *args: str, input: bytes | None = None, **env: str) -> Ran:
    ran = vst(where, *args, input=input, **env)
    assert ran.code == code, (ran.code, ran.err)
    if "vst: warning:" not in ran.err:
        assert_one_line_error(ran)
    return ran


@pytest.fixture
def photos(tmp_path: Path, env: dict[str, str], make_tree: Callable[..., Path]) -> Path:
    """An encrypted collection 'photos' with one commit; your first key made on the way."""
    root = make_tree(tmp_path / "photos", {"a.txt": "alpha\n", "sub": {"b.txt": "beta\n"}})
    ok(root, "init")
    ok(root, "commit", "-m", "first")
    return root


def keys_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "vst" / "keys"


def store_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "vst" / "store"


def envelopes(env: dict[str, str], keyring: str = "photos") -> list[tuple[str, str]]:
    records = [json.loads(line) for line in ok(store_dir(env), "--json", "key", "list")
               .splitlines()]
    ring = next(r for r in records if r["type"] == "keyring" and r["name"] == keyring)
    return [(e["kek"], e["kind"]) for e in ring["envelopes"]]


def my_keys(where: Path) -> dict[str, dict[str, object]]:
    records = [json.loads(line) for line in ok(where, "key", "list", "--json").splitlines()]
    return {r["label"]: r for r in records if r["type"] == "kek"}


def clone_reads(tmp_path: Path, env: dict[str, str], name: str, **extra: str) -> Ran:
    return vst(tmp_path, "--store", str(store_dir(env)), "clone", "photos", name, **extra)


# -- the whole story -----------------------------------------------------------------------


def test_second_key_takes_over_from_the_first(photos: Path, tmp_path: Path,
                                              env: dict[str, str]) -> None:
    first = my_keys(photos)["default"]["fingerprint"]
    second = ok(photos, "key", "gen", "--passphrase", VST_PASSPHRASE=PASS2).strip()
    assert my_keys(photos)["key-2"]["sealed"] is True
    assert envelopes(env) == [(first, "x25519")]  # a new key opens nothing yet

    ran = vst(photos, "key", "grant", "--key", "key-2")
    assert ran.code == 0 and "granted" in ran.err and "'photos'" in ran.err, ran.err
    assert envelopes(env) == [(first, "x25519"), (second, "x25519")]
    # keys/photos.toml is mirrored to the volume, as written.
    store = store_dir(env)
    mirrors = list(store.rglob("meta/keys/photos.toml"))
    assert mirrors and all(m.read_bytes() == (store / "keys" / "photos.toml").read_bytes()
                           for m in mirrors)

    away = tmp_path / "away"
    away.mkdir()
    os.rename(keys_dir(env) / "default.toml", away / "default.toml")
    assert clone_reads(tmp_path, env, "no-passphrase").code == 12
    assert clone_reads(tmp_path, env, "c2", VST_PASSPHRASE=PASS2).code == 0
    assert (tmp_path / "c2" / "sub" / "b.txt").read_text() == "beta\n"

    ran = vst(photos, "key", "revoke", first[:8])
    assert ran.code == 0, ran.err
    assert "revoked" in ran.err and "--rotate" in ran.err and "already decrypted" in ran.err
    assert envelopes(env) == [(second, "x25519")]

    # The first key, alone, no longer opens the collection.
    os.rename(keys_dir(env) / "key-2.toml", away / "key-2.toml")
    ran = clone_reads(tmp_path, env, "c3", VST_KEY_FILE=str(away / "default.toml"))
    assert ran.code == 12, ran.err
    assert "no key you hold opens keyring 'photos'" in ran.err
    assert not (tmp_path / "c3" / "a.txt").exists()


def test_a_recovery_passphrase_alone_opens(photos: Path, tmp_path: Path,
                                           env: dict[str, str]) -> None:
    ran = vst(photos, "--json", "key", "grant", "--passphrase", VST_PASSPHRASE=RECOVERY)
    assert ran.code == 0, ran.err
    record = json.loads(ran.out)
    assert record["type"] == "key_grant" and record["kind"] == "passphrase"
    assert record["keyrings"] == ["photos"] and record["unchanged"] == []
    kinds = [kind for _, kind in envelopes(env)]
    assert kinds == ["x25519", "passphrase"]
    # No key files at all: the passphrase is the way in.
    for path in keys_dir(env).iterdir():
        path.unlink()
    assert clone_reads(tmp_path, env, "lost", VST_PASSPHRASE="wrong guess").code == 12
    assert clone_reads(tmp_path, env, "back", VST_PASSPHRASE=RECOVERY).code == 0
    assert (tmp_path / "back" / "a.txt").read_text() == "alpha\n"
    # The passphrase is nowhere in the store.
    for path in store_dir(env).rglob("*"):
        if path.is_file():
            assert RECOVERY.encode() not in path.read_bytes(), path


def test_grant_someone_elses_public_key(photos: Path, tmp_path: Path, env: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bob_config = str(tmp_path / "bob-config")
    bob = ok(photos, "--json", "key", "gen", "bob", XDG_CONFIG_HOME=bob_config)
    public = json.loads(bob)["public"]

    # Bob cannot read it yet; you grant his public key; then he can.
    store = str(store_dir(env))
    assert vst(tmp_path, "--store", store, "clone", "photos", "b1",
               XDG_CONFIG_HOME=bob_config).code == 12
    ran = vst(photos, "key", "grant", public, "photos")
    assert ran.code == 0, ran.err
    again = vst(photos, "key", "grant", public)
    assert again.code == 0 and "already granted" in again.err
    assert vst(tmp_path, "--store", store, "clone", "photos", "b2",
               XDG_CONFIG_HOME=bob_config).code == 0
    listing = envelopes(env)
    assert len(listing) == 2
    held = json.loads(ok(store_dir(env), "key", "list", "--json").splitlines()[-1])
    assert [e["held"] for e in held["envelopes"]] == [True, False]

    # Bob cannot grant to a keyring he cannot open... once you revoke him.
    ok(photos, "key", "revoke", listing[1][0])
    before = (store_dir(env) / "keys" / "photos.toml").read_bytes()
    ran = fails(12, tmp_path, "--store", store, "key", "grant", "--key", "bob", "photos",
                XDG_CONFIG_HOME=bob_config)
    assert (store_dir(env) / "keys" / "photos.toml").read_bytes() == before
    ran = fails(12, tmp_path, "--store", store, "key", "grant", "--key", "bob",
                XDG_CONFIG_HOME=bob_config)
    assert "no keyring you can open" in ran.err


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "00" * 31, "00" * 32])
def test_grant_refuses_a_bad_public_key(photos: Path, bad: str) -> None:
    fails(2, photos, "key", "grant", bad)


def test_grant_refusals(photos: Path, tmp_path: Path, make_tree: Callable[..., Path]) -> None:
    fails(2, photos, "key", "grant")
    fails(2, photos, "key", "grant", "--key", "default", "--passphrase")
    fails(17, photos, "key", "grant", "--key", "nobody")
    fails(17, photos, "key", "grant", "--key", "default", "no-such-collection")
    # No passphrase to be had (no terminal, no VST_PASSPHRASE): a usage error.
    ran = fails(2, photos, "key", "grant", "--passphrase")
    assert "VST_PASSPHRASE" in ran.err
    plain = make_tree(tmp_path / "plain", {"x": "x"})
    ok(plain, "init", "--no-encrypt")
    ran = fails(2, photos, "key", "grant", "--key", "default", "plain")
    assert "not encrypted" in ran.err


# -- revoke --------------------------------------------------------------------------------


def test_revoke_refusals(photos: Path, env: dict[str, str]) -> None:
    only = envelopes(env)[0][0]
    ran = fails(5, photos, "key", "revoke", "default")
    assert "no envelope" in ran.err
    fails(5, photos, "key", "revoke", "--force", "default")  # never: nothing would open it
    ok(photos, "key", "grant", "--passphrase", VST_PASSPHRASE=RECOVERY)
    ran = fails(5, photos, "key", "revoke", only[:10])
    assert "no envelope for a key you hold" in ran.err and "--force" in ran.err
    assert len(envelopes(env)) == 2  # refused: nothing written
    fails(17, photos, "key", "revoke", "nobody")
    fails(17, photos, "key", "revoke", "0123456789abcdef")
    fails(17, photos, "key", "revoke", "abc")  # too short to be a fingerprint prefix
    ran = vst(photos, "--json", "key", "revoke", "--force", "default", "photos")
    assert ran.code == 0, ran.err
    record = json.loads(ran.out)
    assert record == {"type": "key_revoke", "kek": only, "label": "default",
                      "keyrings": ["photos"]}
    assert [kind for _, kind in envelopes(env)] == ["passphrase"]
    fails(17, photos, "key", "revoke", "default")  # no envelope left to revoke


# -- gen and list --------------------------------------------------------------------------


def test_gen_labels_and_refusals(tmp_path: Path, env: dict[str, str]) -> None:
    first = ok(tmp_path, "key", "gen").strip()
    assert len(first) == 32
    assert set(my_keys(tmp_path)) == {"default"}
    ok(tmp_path, "key", "gen")
    ok(tmp_path, "key", "gen", "laptop")
    assert set(my_keys(tmp_path)) == {"default", "key-2", "laptop"}
    assert (keys_dir(env) / "laptop.toml").stat().st_mode & 0o777 == 0o600
    fails(18, tmp_path, "key", "gen", "laptop")
    fails(2, tmp_path, "key", "gen", "../evil")
    fails(2, tmp_path, "key", "gen", "--command", "prog")          # no --public
    fails(2, tmp_path, "key", "gen", "--public", "ab" * 32)        # no --command
    fails(2, tmp_path, "key", "gen", "--command", "p", "--public", "xyz")
    fails(2, tmp_path, "key", "gen", "--passphrase")               # no passphrase at hand


def test_list_without_a_store_and_with_a_broken_key(tmp_path: Path, env: dict[str, str]) -> None:
    ok(tmp_path, "key", "gen")
    out = ok(tmp_path, "key", "list")
    assert "default" in out and "keyring" not in out
    (keys_dir(env) / "broken.toml").write_text("this is not toml [")
    ran = vst(tmp_path, "key", "list")
    assert ran.code == 0 and "default" in ran.out.decode()
    assert "vst: warning:" in ran.err and "broken.toml" in ran.err


def test_list_shows_no_secret(photos: Path, env: dict[str, str]) -> None:
    ok(photos, "key", "grant", "--passphrase", VST_PASSPHRASE=RECOVERY)
    private = X25519Kek.load(str(keys_dir(env) / "default.toml")).private_bytes().hex()
    for args in (("key", "list"), ("--json", "key", "list")):
        ran = vst(photos, *args)
        assert ran.code == 0
        assert private not in ran.out.decode() + ran.err
        assert RECOVERY not in ran.out.decode() + ran.err


# -- export and import ---------------------------------------------------------------------


def test_key_file_export_and_import(photos: Path, tmp_path: Path, env: dict[str, str]) -> None:
    ran = vst(photos, "key", "export")
    assert ran.code == 0
    assert "SECRET" in ran.err
    fingerprint = my_keys(photos)["default"]["fingerprint"]
    key_file = tmp_path / "exported.toml"
    key_file.write_bytes(ran.out)
    for path in keys_dir(env).iterdir():
        path.unlink()
    assert clone_reads(tmp_path, env, "none").code == 12
    assert ok(photos, "key", "import", str(key_file)).strip() == fingerprint
    assert clone_reads(tmp_path, env, "back").code == 0
    fails(18, photos, "key", "import", str(key_file))  # held already
    fails(17, photos, "key", "import", str(tmp_path / "missing.toml"))
    fails(7, photos, "key", "import", "-", input=b"kind = 'nonsense'\n")


def test_sealed_key_export_and_import(tmp_path: Path, env: dict[str, str]) -> None:
    fingerprint = ok(tmp_path, "key", "gen", "--passphrase", VST_PASSPHRASE=PASS2).strip()
    fails(12, tmp_path, "key", "export")  # no passphrase to open it
    fails(12, tmp_path, "key", "export", VST_PASSPHRASE="wrong")
    exported = vst(tmp_path, "key", "export", "default", VST_PASSPHRASE=PASS2)
    assert exported.code == 0 and b"private = " in exported.out
    # Imported elsewhere with a passphrase of its own, sealed.
    other = str(tmp_path / "other-config")
    imported = ok(tmp_path, "--json", "key", "import", "--passphrase", "--label", "moved",
                  input=exported.out, XDG_CONFIG_HOME=other, VST_PASSPHRASE="new one")
    record = json.loads(imported)
    assert record["fingerprint"] == fingerprint and record["sealed"] is True
    assert record["label"] == "moved"
    loaded = X25519Kek.load(record["path"], passphrase=b"new one")
    assert loaded.fingerprint == fingerprint


def test_export_refuses_a_terminal_unless_paper(tmp_path: Path, env: dict[str, str]) -> None:
    ok(tmp_path, "key", "gen")

    def run_on_a_terminal(*args: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        try:
            done = subprocess.run([sys.executable, "-m", "vst", "key", "export", *args],
                                  stdout=follower, stderr=subprocess.PIPE, env=os.environ,
                                  timeout=60, check=False)
        finally:
            os.close(follower)
            os.close(leader)
        return done.returncode, done.stderr.decode()

    code, err = run_on_a_terminal()
    assert code == 5 and "terminal" in err and "--paper" in err
    code, err = run_on_a_terminal("--paper")
    assert code == 0 and "SECRET" in err


def test_paper_round_trip(photos: Path, tmp_path: Path, env: dict[str, str]) -> None:
    paper = ok(photos, "key", "export", "--paper")
    fingerprint = my_keys(photos)["default"]["fingerprint"]
    numbered = [line for line in paper.splitlines() if line[:2] in ("1:", "2:", "3:", "4:")]
    assert len(numbered) == 4 and f"fingerprint: {fingerprint}" in paper
    for path in keys_dir(env).iterdir():
        path.unlink()
    # Typed back sloppily: lower case, no spaces, no comments, no label or fingerprint,
    # an O typed as 0: all forgiven.
    typed = "\n".join(line.split(":", 1)[0] + ":" + line.split(":", 1)[1].replace(" ", "")
                      .lower().replace("o", "0")
                      for line in paper.splitlines()
                      if line[:1].isdigit() or line.startswith("check"))
    ran = vst(photos, "key", "import", "--paper", input=typed.encode())
    assert ran.code == 0, ran.err
    assert ran.out.decode().strip() == fingerprint
    assert set(my_keys(photos)) == {"default"}
    assert clone_reads(tmp_path, env, "back").code == 0


def test_paper_typos_are_found_on_their_line(tmp_path: Path, env: dict[str, str]) -> None:
    ok(tmp_path, "key", "gen")
    paper = ok(tmp_path, "key", "export", "--paper")
    lines = paper.splitlines()
    third = next(i for i, line in enumerate(lines) if line.startswith("3:"))
    named_line, caught_whole = 0, 0
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567":
        chars = list(lines[third])
        if chars[3] == letter:
            continue
        chars[3] = letter  # the first character of the key on line 3
        typo = "\n".join([*lines[:third], "".join(chars), *lines[third + 1:]])
        ran = vst(tmp_path, "key", "import", "--paper", "--label", "typo", input=typo.encode())
        assert ran.code == 7, ran.err
        named_line += "line 3 does not match its check" in ran.err
        caught_whole += "whole-key check" in ran.err  # the 1 in 1024 a line check misses
        assert lines[third][3:] not in ran.err  # the typed secret is never repeated
    assert named_line >= 28 and named_line + caught_whole == 31
    assert not (keys_dir(env) / "typo.toml").exists()


def test_paper_form_decoding() -> None:
    # A fixed key: a line's 2-character check misses about 1 typo in 1024, so a random key
    # would make the swapped-lines case below fail once in a thousand runs.
    kek = X25519Kek.from_private(bytes(range(1, 33)), "k")
    paper = paper_encode(kek.private_bytes(), "k", kek.fingerprint)
    assert paper_decode(paper) == (kek.private_bytes(), "k")
    lines = paper.splitlines()
    body = [line for line in lines if not line.startswith("#")]

    def error(text: str) -> str:
        with pytest.raises(CorruptKey) as caught:
            paper_decode(text)
        return caught.value.message

    assert "line 2 is missing" in error("\n".join(x for x in body if not x.startswith("2:")))
    assert "'check:' line is missing" in error(
        "\n".join(x for x in body if not x.startswith("check")))
    assert "given twice" in error("\n".join(body + [x for x in body if x.startswith("1:")]))
    assert "no line 5" in error("\n".join([*body, "5: AAAA"]))
    assert "line 4 has" in error("\n".join(x + "A" if x.startswith("4:") else x for x in body))
    assert "alphabet" in error("\n".join(x.replace(x[3], "9", 1) if x.startswith("2:") else x
                                         for x in body))
    assert "input line 1 is not" in error("hello\n" + "\n".join(body))
    # Two key lines swapped: each fails its own check (the line number is checked).
    one = next(x for x in body if x.startswith("1:"))
    two = next(x for x in body if x.startswith("2:"))
    swapped = [("1:" + two[2:]) if x == one else ("2:" + one[2:]) if x == two else x
               for x in body]
    assert "line 1 does not match its check" in error("\n".join(swapped))
    other = X25519Kek.from_private(bytes(range(2, 34)), "o").fingerprint
    assert "'fingerprint:' line" in error(paper.replace(kek.fingerprint, other))


# -- command KEKs --------------------------------------------------------------------------

HELPER = """
import sys
from vst.crypto.envelope import open_request
from vst.crypto.kek import X25519Kek

print(open_request(sys.stdin.buffer.read(), X25519Kek.load(sys.argv[1])).hex())
"""


def test_a_command_key_opens_through_its_program(photos: Path, tmp_path: Path,
                                                 env: dict[str, str]) -> None:
    token = X25519Kek.generate("token")
    token.save(str(tmp_path / "token-private.toml"))
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(HELPER))
    program = shlex.join([sys.executable, str(script), str(tmp_path / "token-private.toml")])
    out = ok(photos, "key", "gen", "token", "--command", program, "--public",
             token.public.hex())
    assert out.strip() == token.fingerprint
    listed = my_keys(photos)["token"]
    assert listed["kind"] == "command" and listed["command"] == shlex.split(program)
    ok(photos, "key", "grant", "--key", "token")
    assert envelopes(env)[-1] == (token.fingerprint, "command")
    os.unlink(keys_dir(env) / "default.toml")
    assert clone_reads(tmp_path, env, "via-token").code == 0
    assert (tmp_path / "via-token" / "a.txt").read_text() == "alpha\n"
    ran = fails(5, photos, "key", "export", "token", "--paper")
    assert "nothing to export" in ran.err
    fails(2, photos, "key", "gen", "t2", "--passphrase", "--command", program,
          "--public", token.public.hex(), VST_PASSPHRASE="x")
