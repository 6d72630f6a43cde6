"""vst write-tree DIR"""

from __future__ import annotations

import click

from vst.cli.app import App, tune_allocator


@click.command("write-tree")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_obj
def command(app: App, directory: str) -> None:
    """Store DIR recursively and print the id of its tree."""
    from vst.plumbing.write_tree import write_tree

    tune_allocator()
    progress = app.progress("storing")
    try:
        oid = write_tree(app.open_store(), directory, warn=app.warn, on_bytes=progress.add)
    finally:
        progress.close()
    app.emit_id(oid, "tree")
