"""vst show [REV[:PATH]]"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App


@click.command("show")
@click.argument("rev", required=False)
@click.pass_obj
def command(app: App, rev: str | None) -> None:
    """Show an object: a commit with its patch, a tree's names, or a file's content.
    REV defaults to the working copy's HEAD; REV:PATH names a file or directory in it."""
    from vst.porcelain.diff import render_patch, store_loader
    from vst.porcelain.log import format_commit
    from vst.porcelain.show import ShownCommit, ShownTree, format_tree, show

    store = app.open_store()
    shown = show(store, app.resolve_rev(rev) if rev is not None else app.default_rev())
    out = sys.stdout.buffer
    if isinstance(shown, ShownCommit):
        out.write(format_commit(shown.oid, shown.commit))
        if shown.changes:
            out.write(b"\n")
            out.writelines(render_patch(shown.changes, *store_loader(store)))
    elif isinstance(shown, ShownTree):
        out.write(format_tree(shown))
    else:
        out.writelines(shown.content)
