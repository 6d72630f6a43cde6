"""vst index rebuild"""

from __future__ import annotations

import click

from vst.cli.app import App


@click.group("index")
def command() -> None:
    """Maintain the object index (a cache of where each object is)."""


@command.command("rebuild")
@click.pass_obj
def rebuild(app: App) -> None:
    """Recreate the index from the packs on every volume."""
    from vst.plumbing.index_rebuild import index_rebuild

    result = index_rebuild(app.open_store(), warn=app.warn)
    if app.json:
        app.emit_json({"type": "index_rebuild", "packs": result.packs,
                       "objects": result.objects, "skipped": result.skipped})
    elif not app.quiet:
        click.echo(f"indexed {result.objects} objects in {result.packs} packs"
                   + (f", skipped {result.skipped}" if result.skipped else ""), err=True)
