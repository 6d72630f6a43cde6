"""The layers of STYLE.md, enforced: imports point down only.

    cli -> porcelain -> plumbing -> store / ssh / workdir / ingest -> objects -> remotes | crypto
        -> fsio -> errors

A module may import from its own layer or any layer below it, never above. Checked on the
source with ast, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vst

ROOT = Path(vst.__file__).parent
RANKS = {
    "vst.__main__": 8,
    "vst.cli": 7,
    "vst.porcelain": 6,
    "vst.plumbing": 5,
    "vst.store": 4,
    "vst.policy": 4,
    "vst.keyrings": 4,
    "vst.userkeys": 4,
    "vst.known": 4,
    "vst.workdir": 4,
    "vst.ingest": 4,
    "vst.checkout": 4,
    "vst.config": 4,
    "vst.hooks": 4,
    "vst.ignore": 4,
    "vst.ssh": 4,
    "vst.ssh.server": 6,  # what `vst serve` runs: porcelain for a client over the wire
    "vst.objects": 3,
    "vst.remotes": 2,
    "vst.crypto": 2,
    "vst.fsio": 1,
    "vst.errors": 0,
    "vst.memory": 0,
    "vst.pools": 0,
    "vst": 0,
}


def rank(module: str) -> int:
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        if name in RANKS:
            return RANKS[name]
    raise AssertionError(f"module {module} is in no layer: add it to RANKS")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        found.append((name, path))
    return found


@pytest.mark.parametrize(("name", "path"), modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(name: str, path: Path) -> None:
    own = rank(name)
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module]
        for target in targets:
            if target == "vst" or target.startswith("vst."):
                assert rank(target) <= own, f"{name} (layer {own}) imports {target} " \
                                            f"(layer {rank(target)})"


def test_objects_do_not_use_click() -> None:
    for name, path in modules():
        if rank(name) < RANKS["vst.cli"]:
            source = path.read_text()
            assert "import click" not in source, f"{name} imports click"
