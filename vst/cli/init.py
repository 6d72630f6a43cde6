"""vst init [DIR] [-c NAME]"""

from __future__ import annotations

import os

import click

from vst.cli.app import App, store_option


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("-c", "--collection", metavar="NAME",
              help="Name of the new collection (default: the folder's name).")
@click.option("--no-encrypt", is_flag=True,
              help="Store this collection unencrypted (default: encrypted, on your machine).")
@click.option("--keyring", metavar="NAME",
              help="Share the keyring NAME with its collections (they then deduplicate "
                   "against each other); default: a keyring of its own.")
@store_option
@click.pass_obj
def command(app: App, directory: str, collection: str | None, no_encrypt: bool,
            keyring: str | None) -> None:
    """Make DIR (default: here) the working copy of a new collection.

    With no store given (--store, VST_STORE or config core.store), your own store is used,
    and created on first use under your data folder.
    """
    from vst.errors import NotAStore
    from vst.porcelain.init import init
    from vst.ssh.url import is_ssh, parse
    from vst.store import Store

    given = app.default_store_path()
    if is_ssh(given):
        path = parse(given).url
        store = app.open_store_at(path)
    else:
        path = os.path.abspath(given)
        try:
            store = Store.open(path, warn=app.warn)
        except NotAStore:
            if app.store_url or os.path.exists(os.path.join(path, "config.toml")):
                raise
            store = Store.init(path, warn=app.warn)
            app.warn(f"created your store at '{path}'")
        app.attach(store)
    try:
        copy = init(store, path, directory, collection, encrypt=not no_encrypt,
                    keyring=keyring)
    finally:
        store.close()
    app.announce_new_key()
    if app.json:
        app.emit_json({"type": "working_copy", **copy.describe()})
    elif not app.quiet:
        click.echo(f"Initialized working copy of collection '{copy.collection}' in "
                   f"{copy.root} (store {path})", err=True)
