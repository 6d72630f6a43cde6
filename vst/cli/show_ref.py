"""vst show-ref"""

from __future__ import annotations

import click

from vst.cli.app import App


@click.command("show-ref")
@click.pass_obj
def command(app: App) -> int:
    """Print '<id> SP <collection>' for every collection with a commit; exit 1 if none."""
    from vst.plumbing.update_ref import show_ref

    refs = show_ref(app.open_store())
    for name, oid in refs:
        if app.json:
            app.emit_json({"type": "ref", "collection": name, "id": oid.hex})
        else:
            click.echo(f"{oid} {name}")
    return 0 if refs else 1
