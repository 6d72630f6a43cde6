"""vst push-blob [-r] --to STORE OBJECT..."""

from __future__ import annotations

import click

from vst.cli.app import App


@click.command("push-blob")
@click.option("-r", "recursive", is_flag=True, help="Also send everything the objects reach.")
@click.option("--to", "destination", required=True, metavar="STORE", help="The store to send to.")
@click.argument("objects", nargs=-1, required=True)
@click.pass_obj
def command(app: App, recursive: bool, destination: str, objects: tuple[str, ...]) -> None:
    """Copy OBJECTs to STORE, sending only what it lacks; print each id sent."""
    from vst.plumbing.push_blob import push_blob

    source = app.open_store()
    target = app.open_store_at(destination)
    try:
        push_blob(source, target, [app.resolve_rev(o) for o in objects], recursive=recursive,
                  on_sent=lambda oid: click.echo(str(oid)))
    finally:
        target.close()
