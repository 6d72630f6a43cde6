"""vst diff [--stat | --name-status] [-z] [REV [REV]] [-- PATH...]"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App
from vst.cli.log import PathsAfterDashDash


@click.command("diff", cls=PathsAfterDashDash)
@click.option("--stat", is_flag=True, help="Show a diffstat instead of a patch.")
@click.option("--name-status", is_flag=True, help="Show '<status> TAB <path>' per change.")
@click.option("-z", "nul", is_flag=True,
              help="With --name-status: NUL after the status and the path; paths raw.")
@click.argument("revs", nargs=-1, metavar="[REV [REV]]")
@click.pass_obj
def command(app: App, stat: bool, name_status: bool, nul: bool, revs: tuple[str, ...],
            paths: tuple[str, ...]) -> None:
    """Show changes: between two revisions (commits or trees), or from REV (default: the
    working copy's HEAD) to the working copy. After '--', only the given paths."""
    from vst.porcelain.diff import (
        diff,
        diff_stat,
        format_name_status,
        format_stat,
        render_patch,
        store_loader,
    )

    if stat and name_status:
        raise click.UsageError("--stat and --name-status cannot be combined")
    if len(revs) > 2:
        raise click.UsageError("at most two revisions; put paths after '--'")
    store = app.open_store()
    wanted = app.tree_paths(paths)
    load_old, load_new = store_loader(store)
    if len(revs) == 2:
        changes = diff(store, app.resolve_rev(revs[0]), app.resolve_rev(revs[1]), wanted)
    else:
        base = app.resolve_rev(revs[0]) if revs else None
        changes, load_new = app.working_copy_changes(base, wanted)
    out = sys.stdout.buffer
    if name_status:
        out.writelines(format_name_status(changes, nul=nul))
    elif stat:
        if changes:
            out.writelines(format_stat(diff_stat(changes, load_old, load_new)))
    else:
        out.writelines(render_patch(changes, load_old, load_new))
