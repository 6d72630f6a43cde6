"""vst drop [DIR]"""

from __future__ import annotations

import os

import click

from vst.cli.app import App


@click.command("drop")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--discard-ignored", is_flag=True,
              help="Also delete ignored files (they are in no commit).")
@click.pass_obj
def command(app: App, directory: str | None, discard_ignored: bool) -> None:
    """Remove the working copy DIR (default: the one here), only when nothing would be lost.

    Refused while there are uncommitted changes or ignored files, or when any object of its
    base commit is missing from the store's volumes.
    """
    from vst.errors import NotAWorkingCopy
    from vst.porcelain.drop import drop
    from vst.workdir import WorkingCopy

    if directory is not None:
        copy = WorkingCopy.find(directory)
        if copy is None or copy.root != os.path.abspath(directory):
            raise NotAWorkingCopy(f"'{directory}' is not a working copy")
        app.use_working_copy(copy)
    else:
        copy = app.require_working_copy()
    store = app.open_store()
    result = drop(store, copy, hooks=app.hooks(copy), discard_ignored=discard_ignored,
                  warn=app.warn)
    if app.json:
        app.emit_json({"type": "drop", "root": result.root,
                       "base": result.base.hex if result.base else None,
                       "objects_checked": result.objects, "packs_checked": result.packs})
    elif not app.quiet:
        click.echo(f"Dropped {result.root}: its {result.objects} objects are in the store "
                   f"({result.packs} packs checked on the volumes)", err=True)
