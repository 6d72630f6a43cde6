"""vst store init PATH | vst store config [KEY [VALUE]]"""

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
    from vst.ssh.url import is_ssh
    from vst.store import Store

    if is_ssh(path):
        from vst.errors import UsageError

        raise UsageError(f"'{path}' is on another machine: a store is created where it lives",
                         hint="run 'vst store init PATH' there, over ssh (or name a local "
                              "path with ./)")
    store = Store.init(path, warn=app.warn)
    if app.json:
        app.emit_json({"type": "store", "path": store.path, "id": store.store_id})
    elif not app.quiet:
        click.echo(f"Initialized empty vst store in {store.path}")


# The store settings `store config` reads and sets; the rest of config.toml is either the
# store's format (fixed at init) or user settings (`vst config --store`).
SETTINGS = ("append-only",)


@command.command("config")
@click.argument("key", required=False, type=click.Choice(SETTINGS))
@click.argument("value", required=False, type=click.BOOL)
@click.pass_obj
def config(app: App, key: str | None, value: bool | None) -> None:
    """Show the store's settings, or show or set one.

    append-only (true/false): no ref may move except forward, to a descendant of its head.
    """
    store = app.open_store()
    if value is not None:
        store.set_append_only(value)
    shown = {"append-only": store.append_only}
    if app.json:
        app.emit_json({"type": "store_config", **{k.replace("-", "_"): v
                                                    for k, v in shown.items()}})
        return
    if value is None:
        for name, setting in shown.items():
            if key is None or key == name:
                click.echo(f"{name} {'true' if setting else 'false'}" if key is None
                           else ('true' if setting else 'false'))
