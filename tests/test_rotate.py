"""Key rotation (vst/porcelain/rotate.py): a new data key, the keyring's packs re-sealed,
ids and history unchanged, the old packs gone, a dropped KEK locked out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import open_keyed, user_keys, vst_run

from vst.errors import WrongKey
from vst.porcelain.restore import restore
from vst.porcelain.rotate import rotate_keyring
from vst.userkeys import UserKeys


def ok(*args: str) -> str:
    ran = vst_run(*args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


@pytest.fixture
def work(tmp_path: Path, env: dict[str, str], make_tree: Callable[..., Path]) -> Path:
    ok("store", "init", str(tmp_path / "store"))
    root = make_tree(tmp_path / "w", {"big.bin": os.urandom(1_500_000), "a.txt": "alpha\n",
                                      "sub": {"b.txt": "beta\n"}})
    ok("-C", str(root), "init", "--store", str(tmp_path / "store"))
    ok("-C", str(root), "commit", "-m", "one")
    (root / "a.txt").write_text("changed\n")
    ok("-C", str(root), "commit", "-m", "two")
    return root


def packs(store_dir: Path) -> set[str]:
    return {p.name for p in (store_dir / "volumes" / "default" / "packs").glob("*/*")}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vst" not in p.parts}


def test_rotation_reseals_everything_and_keeps_the_history(work: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    before = packs(store_dir)
    store = open_keyed(str(store_dir))
    try:
        head = store.read_ref("w")
        history = [e.new for e in store.reflog("w")]
        old_id = store.keyrings.read("w").keyring_id
        result = rotate_keyring(store, "w")
        assert (result.old, result.new, result.collections) == ("w", "w~2", ["w"])
        assert result.packs >= 1 and result.objects >= 5 and not result.lost
        assert store.collection_keyring("w") == "w~2"
        assert store.keyrings.read("w~2").keyring_id != old_id
        assert not store.keyrings.exists("w")
        assert store.read_ref("w") == head  # same ids: same commits
        assert {row.keyring for row in store.odb.index.packs()} == \
            {store.keyrings.read("w~2").keyring_id}
    finally:
        store.close()
    after = packs(store_dir)
    assert after and not after & before  # the old packs are gone from the volume
    assert not (store_dir / "volumes" / "default" / "meta" / "keys" / "w.toml").exists()
    # Every commit restores byte-exact, in a fresh process state.
    store = open_keyed(str(store_dir))
    try:
        for number, commit in enumerate(history):
            target = tmp_path / f"out{number}"
            restore(store, commit, str(target), [b""])
        assert files(tmp_path / f"out{len(history) - 1}") == files(work)
    finally:
        store.close()
    # The working copy goes on: status is clean, commits work, under the new keyring.
    assert ok("-C", str(work), "status", "--porcelain") == ""
    (work / "c.txt").write_text("after the rotation\n")
    ok("-C", str(work), "commit", "-m", "three")
    assert vst_run("-C", str(work), "fsck", "--full").code == 0


def test_a_dropped_kek_no_longer_opens_the_keyring(work: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    other = UserKeys(str(tmp_path / "other-keys"))
    info = other.generate("other")
    store = open_keyed(str(store_dir))
    try:
        keyring = store.keyrings.unlock("w")
        file = store.keyrings.read("w")
        file.add(keyring, info.public)
        store.keyrings.write(file)
    finally:
        store.close()
    as_other = open_keyed(str(store_dir))
    as_other.keyrings.source = other
    assert as_other.keyrings.unlock("w").dek == keyring.dek  # granted: it opens
    as_other.close()
    store = open_keyed(str(store_dir))
    try:
        result = rotate_keyring(store, "w", drop=[info.fingerprint])
        assert result.lost == [info.fingerprint]
    finally:
        store.close()
    as_other = open_keyed(str(store_dir))
    as_other.keyrings.source = other
    try:
        with pytest.raises(WrongKey):
            as_other.keyrings.unlock("w~2")
    finally:
        as_other.close()
    store = open_keyed(str(store_dir))
    try:
        assert store.keyrings.unlock("w~2")  # and yours still does
    finally:
        store.close()


def test_an_append_only_store_keeps_the_old_packs(work: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    ok("--store", str(store_dir), "store", "config", "append-only", "true")
    before = packs(store_dir)
    store = open_keyed(str(store_dir))
    try:
        result = rotate_keyring(store, "w")
        assert result.kept_old_packs and store.keyrings.exists("w")
    finally:
        store.close()
    assert before <= packs(store_dir)
    assert vst_run("-C", str(work), "fsck", "--full").code == 0


def test_rotation_leaves_no_key_refused(work: Path, tmp_path: Path) -> None:
    store = open_keyed(str(tmp_path / "store"))
    try:
        mine = [i.fingerprint for i in user_keys().infos()]
        with pytest.raises(Exception, match="no key that opens it"):
            rotate_keyring(store, "w", drop=mine)
        assert store.collection_keyring("w") == "w"
    finally:
        store.close()


def test_the_cli_rotates_and_revokes_with_rotation(work: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    ran = vst_run("-C", str(work), "key", "rotate", "w")
    assert ran.code == 0, ran.err
    assert "rotated keyring 'w' to 'w~2'" in ran.err
    # This client made the change: it goes on without calling it a swapped keyring.
    assert vst_run("-C", str(work), "status").code == 0
    other = UserKeys(str(tmp_path / "other-keys"))
    info = other.generate("other")
    ok("-C", str(work), "key", "grant", info.public.hex(), "w")
    before = packs(store_dir)
    ran = vst_run("-C", str(work), "key", "revoke", info.fingerprint, "--rotate")
    assert ran.code == 0, ran.err
    assert "to 'w~3'" in ran.err
    assert not packs(store_dir) & before
    store = open_keyed(str(store_dir))
    store.keyrings.source = other
    try:
        with pytest.raises(WrongKey):
            store.keyrings.unlock("w~3")
    finally:
        store.close()
    ran = vst_run("-C", str(work), "key", "rotate", "nope")
    assert ran.code == 17


def test_fsck_and_scrub_without_the_key_check_what_needs_none(work: Path, tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    keys = Path(env["XDG_CONFIG_HOME"]) / "vst" / "keys"
    keys.rename(keys.with_name("keys.away"))
    store = str(tmp_path / "store")
    ran = vst_run("--store", store, "fsck", "--full")
    assert ran.code == 0 and "w not walked: no key you hold opens keyring 'w'" in ran.err
    ran = vst_run("--store", store, "scrub")
    assert ran.code == 0 and "no problems" in ran.err
