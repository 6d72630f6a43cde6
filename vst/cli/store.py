"""vst store init PATH"""

from __future__ import annotations

import click

from vst.cli.app import App


@click.group("store")
def command() -> None:
    """Create and inspect stores."""


@command.command("init")
@click.argument("path", type=click.Path(file_okay=False))
@click.pass_obj
def init(app: App, path: str) -> None:
    """Create a new store at PATH, with one local volume inside it."""
    from vst.store import Store

    store = Store.init(path, warn=app.warn)
    if app.json:
        app.emit_json({"type": "store", "path": store.path, "id": store.store_id})
    elif not app.quiet:
        click.echo(f"Initialized empty vst store in {store.path}")
