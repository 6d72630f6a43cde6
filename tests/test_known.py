"""What the client remembers of a store (vst/known.py): a collection downgraded to
unencrypted, a keyring swapped, a head rolled back, a store swapped at the same place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import Ran, vst_run


def vst(root: Path, *args: str) -> Ran:
    return vst_run("-C", str(root), *args)


def ok(root: Path, *args: str) -> str:
    ran = vst(root, *args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


@pytest.fixture
def work(tmp_path: Path, env: dict[str, str], make_tree: Callable[..., Path]) -> Path:
    root = make_tree(tmp_path / "w", {"a.txt": "alpha\n"})
    ok(tmp_path, "store", "init", str(tmp_path / "store"))
    ok(root, "init", "--store", str(tmp_path / "store"))
    ok(root, "commit", "-m", "one")
    return root


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_collection_downgraded_to_unencrypted_is_refused(work: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    toml = store / "collections" / "w.toml"
    toml.write_text("".join(line for line in toml.read_text().splitlines(keepends=True)
                            if not line.startswith("keyring")))
    (work / "b.txt").write_text("must not reach the store in the clear\n")
    before = snapshot(store / "volumes")
    ran = vst(work, "commit", "-m", "two")
    assert ran.code == 12 and "was encrypted when you last used it" in ran.err
    assert snapshot(store / "volumes") == before  # nothing written
    assert vst(work, "status").code == 12


def test_a_swapped_keyring_is_refused(work: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    # A keyring the attacker made (here: one of the user's own, for another collection,
    # which the user's key opens) put in the place of the collection's.
    ok(work, "collection", "create", "other")
    shutil.copy(store / "keys" / "other.toml", store / "keys" / "w.toml")
    toml = (store / "keys" / "w.toml").read_text().replace('name = "other"', 'name = "w"')
    (store / "keys" / "w.toml").write_text(toml)
    (work / "b.txt").write_text("x\n")
    ran = vst(work, "commit", "-m", "two")
    assert ran.code == 12 and "now uses keyring" in ran.err and "swapped" in ran.err


def test_a_rolled_back_head_is_reported_once(work: Path, tmp_path: Path) -> None:
    first = ok(work, "rev-parse", "HEAD").strip()
    (work / "b.txt").write_text("b\n")
    ok(work, "commit", "-m", "two")
    # Someone with the store's directory puts the ref back (and its mirror).
    (tmp_path / "store" / "refs" / "w").write_text(first + "\n")
    ran = vst(work, "show-ref")
    assert "does not descend from" in ran.err and "rolled back" in ran.err
    assert "rolled back" not in vst(work, "show-ref").err  # said once


def test_the_clients_own_moves_are_not_rollbacks(work: Path) -> None:
    first = ok(work, "rev-parse", "HEAD").strip()
    (work / "b.txt").write_text("b\n")
    ok(work, "commit", "-m", "two")
    ran = vst(work, "update-ref", "w", first)
    assert ran.code == 0 and "rolled back" not in ran.err
    assert "rolled back" not in vst(work, "show-ref").err


def test_a_store_swapped_at_the_same_place_is_reported(work: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.move(store, tmp_path / "real-store")
    ok(tmp_path, "store", "init", str(store))
    ran = vst(tmp_path, "--store", str(store), "collection", "list")
    assert "is not the one you used before" in ran.err


def test_the_state_lives_with_the_user_not_the_store(work: Path, env: dict[str, str]) -> None:
    known = Path(os.environ["XDG_STATE_HOME"]) / "vst" / "known"
    files = list(known.glob("*.toml"))
    assert len(files) == 1 and "[collections.w]" in files[0].read_text()


def test_a_head_that_cannot_be_read_without_keys_is_not_called_a_rollback(
        work: Path, env: dict[str, str]) -> None:
    first = ok(work, "rev-parse", "HEAD").strip()
    (work / "b.txt").write_text("b\n")
    ok(work, "commit", "-m", "two")
    # The client last saw the first commit; the head has moved on since (another machine).
    for path in (Path(os.environ["XDG_STATE_HOME"]) / "vst" / "known").glob("*.toml"):
        head = (work.parent / "store" / "refs" / "w").read_text().strip()
        path.write_text(path.read_text().replace(head, first))
    keys = Path(env["XDG_CONFIG_HOME"]) / "vst" / "keys"
    keys.rename(keys.with_name("keys.away"))  # and holds no key to read the history
    ran = vst(work.parent, "--store", str(work.parent / "store"), "show-ref")
    assert ran.code == 0 and "rolled back" not in ran.err


def test_status_opens_the_keyring_only_when_something_must_be_hashed(
        work: Path, env: dict[str, str]) -> None:
    keys = Path(env["XDG_CONFIG_HOME"]) / "vst" / "keys"
    old = 1_600_000_000  # out of the stat cache's racy window, so it vouches for a.txt
    os.utime(work / "a.txt", (old, old))
    ok(work, "status")  # refreshes the stat cache
    keys.rename(keys.with_name("keys.away"))  # no key at hand, no passphrase to ask
    ran = vst(work, "status")
    assert ran.code == 0 and "nothing to commit" in ran.out.decode()
    (work / "a.txt").write_text("changed\n")
    ran = vst(work, "status")
    assert ran.code == 12 and "no key you hold opens keyring 'w'" in ran.err


def test_commit_opens_the_keyring_only_when_something_must_be_stored(
        work: Path, env: dict[str, str]) -> None:
    """A commit with nothing to commit needs no key (no passphrase asked, no cipher loaded);
    one with something to store fails without it, as before, and leaves the head alone."""
    keys = Path(env["XDG_CONFIG_HOME"]) / "vst" / "keys"
    old = 1_600_000_000  # out of the stat cache's racy window, so it vouches for a.txt
    os.utime(work / "a.txt", (old, old))
    ok(work, "status")  # refreshes the stat cache
    head = ok(work, "rev-parse", "HEAD")
    keys.rename(keys.with_name("keys.away"))
    ran = vst(work, "commit", "-m", "again")
    assert ran.code == 0 and "nothing to commit" in ran.err
    (work / "a.txt").write_text("changed\n")
    ran = vst(work, "commit", "-m", "changed")
    assert ran.code == 12 and "no key you hold opens keyring 'w'" in ran.err
    keys.with_name("keys.away").rename(keys)
    assert ok(work, "rev-parse", "HEAD") == head
    ok(work, "commit", "-m", "changed")
    assert ok(work, "rev-parse", "HEAD") != head
