"""vst ls-tree [-r] [-t] [-l] [-z] [--name-only] TREE-ISH [PATH...]"""

from __future__ import annotations

import os
import sys

import click

from vst.cli.app import App


@click.command("ls-tree")
@click.option("-r", "recursive", is_flag=True, help="Recurse into subtrees.")
@click.option("-t", "show_trees", is_flag=True, help="Show trees too when recursing.")
@click.option("-l", "--long", "long_", is_flag=True, help="Pad the size column.")
@click.option("-z", "nul", is_flag=True, help="End records with NUL; do not quote paths.")
@click.option("--name-only", is_flag=True, help="Print paths only.")
@click.argument("treeish")
@click.argument("paths", nargs=-1)
@click.pass_obj
def command(app: App, recursive: bool, show_trees: bool, long_: bool, nul: bool,
            name_only: bool, treeish: str, paths: tuple[str, ...]) -> None:
    """List a tree: '<mode> <type> <id> <size> <mtime_ns>' TAB path, one entry per line."""
    from vst.plumbing.ls_tree import format_record, ls_tree
    from vst.plumbing.quoting import quote

    out = sys.stdout.buffer
    for listed in ls_tree(app.open_store(), treeish, head=app.head(), recursive=recursive,
                          show_trees=show_trees, paths=[os.fsencode(p) for p in paths]):
        if name_only:
            out.write(listed.path + b"\0" if nul else quote(listed.path).encode() + b"\n")
        else:
            out.write(format_record(listed, long=long_, nul=nul))
