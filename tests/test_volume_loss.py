"""RELIABILITY S6: a whole volume lost, or replaced by an empty one.

A store with three volumes (default, b, c) and two collections: one follows a policy of two
copies over the three volumes, the other the built-in default (a copy on each). Each trial
takes one volume away in one of three ways:

- ``gone``: the disk is unreachable (its directory is not there), then comes back;
- ``blank``: a new, empty disk is mounted in its place (no descriptor): the store refuses
  it, the user forgets the old one (``vst volume lost``) and adds the new one;
- ``wiped``: the disk is still this store's (descriptor and metadata) but its packs are gone.

During the outage every commit of both collections is restored and compared byte for byte,
and a commit is made. Then the volume is dealt with as a user would (back / lost + add /
nothing) and ``vst replicate`` runs. Figures: restores during the outage that are correct;
packs with fewer copies than their policy asks, counted from the disks themselves (not the
index); pack copies the index claims that the disk lacks. Bars: 100% / 0 / 0.

The normal suite runs a sample (two trials of each kind); VST_TORTURE=1 runs 30 of each.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from clirun import Ran, open_keyed, vst_run

from vst.objects.odb import pack_name
from vst.plumbing.reachable import reachable

TORTURE = os.environ.get("VST_TORTURE") == "1"
PER_KIND = 30 if TORTURE else 2
KINDS = ("gone", "blank", "wiped")
VOLUMES = ("default", "b", "c")
COLLECTIONS = {"two": "two-of-three", "all": "default"}  # collection -> policy


def vst(*args: str) -> Ran:
    return vst_run(*args)


def ok(*args: str) -> str:
    ran = vst(*args)
    assert ran.code == 0, ran.err
    return ran.out.decode()


@dataclass
class World:
    tmp: Path
    store: Path
    history: dict[str, list[tuple[str, dict[str, bytes]]]] = field(default_factory=dict)

    def volume_dir(self, name: str) -> Path:
        return self.store / "volumes" / "default" if name == "default" else self.tmp / name

    def working_copy(self, collection: str) -> Path:
        return self.tmp / "work" / collection


def snapshot(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".vst" not in path.relative_to(root).parts:
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def change(root: Path, rng: random.Random, step: int) -> None:
    (root / f"note-{step}.txt").write_text(f"step {step}\n" * rng.randint(1, 50))
    (root / "big.bin").write_bytes(rng.randbytes(rng.randint(300_000, 700_000)))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / f"s{step % 3}.bin").write_bytes(rng.randbytes(rng.randint(1, 40_000)))


def commit(world: World, collection: str, rng: random.Random, step: int) -> None:
    root = world.working_copy(collection)
    change(root, rng, step)
    head = ok("-C", str(root), "commit", "-m", f"step {step}").strip()
    world.history.setdefault(collection, []).append((head, snapshot(root)))


@pytest.fixture
def world(tmp_path: Path, env: dict[str, str]) -> World:
    store = tmp_path / "store"
    ok("store", "init", str(store))
    world = World(tmp_path, store)
    for name in VOLUMES[1:]:
        ok("--store", str(store), "volume", "add", name, str(world.volume_dir(name)))
    ok("--store", str(store), "policy", "set", "two-of-three", "--volumes", "b,c,default",
       "--copies", "2")
    rng = random.Random(6)
    for collection, policy in COLLECTIONS.items():
        root = world.working_copy(collection)
        root.mkdir(parents=True)
        ok("-C", str(root), "init", "--store", str(store), "-c", collection)
        ok("-C", str(root), "collection", "set-policy", collection, policy)
        for step in range(2):
            commit(world, collection, rng, step)
    return world


def restores_correctly(world: World) -> tuple[int, int]:
    """(correct, tried): every commit of every collection, restored to a new folder."""
    correct = tried = 0
    for collection, commits in world.history.items():
        for head, files in commits:
            target = world.tmp / f"restore-{time.monotonic_ns()}"
            ran = vst("--store", str(world.store), "restore", "--collection", collection,
                      "--source", head, "--to", str(target), ".")
            tried += 1
            if ran.code == 0 and snapshot(target) == files:
                correct += 1
            shutil.rmtree(target, ignore_errors=True)
    return correct, tried


def on_disk(world: World) -> dict[str, set[str]]:
    """Volume name -> the pack names its directory holds, at their indexed size."""
    store = open_keyed(str(world.store))
    try:
        sizes = {pack_name(row.pack): row.size for row in store.odb.index.packs()}
    finally:
        store.close()
    held = {}
    for name in VOLUMES:
        root = world.volume_dir(name)
        held[name] = {name_ for name_, size in sizes.items()
                      if (root / name_).is_file() and (root / name_).stat().st_size == size}
    return held


def under_replicated(world: World, held: dict[str, set[str]]) -> int:
    """Packs a collection reaches with fewer copies on the disks of its policy's volumes
    than the policy asks; counted from the directories, not from the index."""
    store = open_keyed(str(world.store))
    short = 0
    try:
        for collection in COLLECTIONS:
            policy = store.policy_of(collection)
            head = store.read_ref(collection)
            assert head is not None
            packs = {pack_name(store.odb.locate(oid).pack)
                     for oid, _ in reachable(store, [head])}
            short += sum(1 for pack in packs
                         if sum(pack in held[v] for v in policy.volumes) < policy.copies)
    finally:
        store.close()
    return short


def false_claims(world: World, held: dict[str, set[str]]) -> int:
    """Pack copies the index records that the volume's directory does not hold."""
    store = open_keyed(str(world.store))
    try:
        ids = {spec.volume_id: spec.name for spec in store.volume_specs()}
        return sum(1 for row in store.odb.index.packs() for volume in row.volumes
                   if volume in ids and pack_name(row.pack) not in held[ids[volume]])
    finally:
        store.close()


@dataclass
class Figures:
    trials: Counter[str] = field(default_factory=Counter)
    restores: Counter[str] = field(default_factory=Counter)
    restores_ok: Counter[str] = field(default_factory=Counter)
    short_after: Counter[str] = field(default_factory=Counter)
    claims_after: Counter[str] = field(default_factory=Counter)
    commits_during: Counter[str] = field(default_factory=Counter)


def take_away(world: World, kind: str, volume: str) -> Callable[[], None]:
    """Make ``volume`` lost in the way ``kind`` says; return what the user then does."""
    root = world.volume_dir(volume)
    store = str(world.store)
    if kind == "gone":
        away = root.with_name(root.name + ".away")
        root.rename(away)
        return lambda: away.rename(root)
    if kind == "blank":
        shutil.rmtree(root)
        root.mkdir()

        def replace_disk() -> None:
            ok("--store", store, "volume", "lost", volume)
            if volume == "default":  # the embedded volume: re-added under its old name
                shutil.rmtree(root)
            ok("--store", store, "volume", "add", volume, str(root))
            ok("--store", store, "policy", "set", "two-of-three", "--volumes", "b,c,default",
               "--copies", "2")
        return replace_disk
    shutil.rmtree(root / "packs")
    return lambda: None


def test_s6_a_volume_lost_or_replaced_by_an_empty_one(world: World) -> None:
    rng = random.Random(66)
    figures = Figures()
    started = time.monotonic()
    step = 2
    for trial in range(PER_KIND * len(KINDS)):
        kind = KINDS[trial % len(KINDS)]
        volume = rng.choice(VOLUMES)
        figures.trials[kind] += 1
        recover = take_away(world, kind, volume)
        correct, tried = restores_correctly(world)
        figures.restores[kind] += tried
        figures.restores_ok[kind] += correct
        collection = rng.choice(list(COLLECTIONS))
        commit(world, collection, rng, step)  # fails the test if the commit fails
        figures.commits_during[kind] += 1
        step += 1
        recover()
        ok("--store", str(world.store), "replicate")
        held = on_disk(world)
        figures.short_after[kind] += under_replicated(world, held)
        figures.claims_after[kind] += false_claims(world, held)
    seconds = time.monotonic() - started

    print(f"\nS6 a volume lost or replaced by an empty one: {sum(figures.trials.values())} "
          f"trials in {seconds:.1f} s")
    print(f"{'kind':<6} {'trials':>6} {'restores ok':>14} {'commits':>8} "
          f"{'short after':>12} {'false claims':>13}")
    for kind in KINDS:
        print(f"{kind:<6} {figures.trials[kind]:>6} "
              f"{figures.restores_ok[kind]:>6}/{figures.restores[kind]:<7} "
              f"{figures.commits_during[kind]:>8} {figures.short_after[kind]:>12} "
              f"{figures.claims_after[kind]:>13}")
    assert figures.restores_ok == figures.restores
    assert sum(figures.short_after.values()) == 0
    assert sum(figures.claims_after.values()) == 0
