"""vst init [DIR] [-c NAME]"""

from __future__ import annotations

import os

import click

from vst.cli.app import App, store_option


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("-c", "--collection", metavar="NAME",
              help="Name of the new collection (default: the folder's name).")
@store_option
@click.pass_obj
def command(app: App, directory: str, collection: str | None) -> None:
    """Make DIR (default: here) the working copy of a new collection.

    With no store given (--store, VST_STORE or config core.store), your own store is used,
    and created on first use under your data folder.
    """
    from vst.errors import NotAStore
    from vst.porcelain.init import init
    from vst.store import Store

    path = os.path.abspath(app.default_store_path())
    try:
        store = Store.open(path, warn=app.warn)
    except NotAStore:
        if app.store_url or os.path.exists(os.path.join(path, "config.toml")):
            raise
        store = Store.init(path, warn=app.warn)
        app.warn(f"created your store at '{path}'")
    try:
        copy = init(store, path, directory, collection)
    finally:
        store.close()
    if app.json:
        app.emit_json({"type": "working_copy", **copy.describe()})
    elif not app.quiet:
        click.echo(f"Initialized working copy of collection '{copy.collection}' in "
                   f"{copy.root} (store {path})", err=True)
