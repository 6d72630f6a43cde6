"""vst mktree [-z] [--missing] < records"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App


@click.command("mktree")
@click.option("-z", "nul", is_flag=True, help="Records end with NUL and paths are unquoted.")
@click.option("--missing", is_flag=True, help="Allow entries that point at absent objects.")
@click.pass_obj
def command(app: App, nul: bool, missing: bool) -> None:
    """Read ls-tree records on stdin, store them as one tree, print its id."""
    from vst.plumbing.mktree import mktree, parse_records

    entries = parse_records(sys.stdin.buffer.read(), nul=nul)
    app.emit_id(mktree(app.open_store(), entries, allow_missing=missing), "tree")
