"""vst collection create NAME | vst collection list"""

from __future__ import annotations

import datetime as dt

import click

from vst.cli.app import App, human_size, plural


@click.group("collection")
def command() -> None:
    """Create and list collections."""


@command.command("create")
@click.argument("name")
@click.pass_obj
def create(app: App, name: str) -> None:
    """Create an empty collection NAME."""
    from vst.porcelain.collection import collection_create

    collection_create(app.open_store(), name)


@command.command("list")
@click.pass_obj
def list_(app: App) -> None:
    """List collections: name, head, last commit time, files and size."""
    from vst.porcelain.collection import collection_list

    for info in collection_list(app.open_store()):
        when = dt.datetime.fromtimestamp(info.commit_time, dt.UTC) \
            if info.commit_time is not None else None
        if app.json:
            app.emit_json({"type": "collection", "name": info.name,
                           "head": info.head.hex if info.head else None,
                           "time": when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
                           "files": info.files, "size": info.size})
        else:
            head = info.head.short() if info.head else "-" * 12
            stamp = when.strftime("%Y-%m-%d %H:%M") if when else "(no commits)"
            click.echo(f"{info.name}\t{head}\t{stamp}\t{plural(info.files, 'file')}\t"
                       f"{human_size(info.size)}")
