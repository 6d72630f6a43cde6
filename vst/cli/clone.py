"""vst clone COLLECTION [DIR] [--rev REV]"""

from __future__ import annotations

import click

from vst.cli.app import App, human_size, plural, store_option, tune_allocator


@click.command("clone")
@click.argument("collection")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--rev", metavar="REV", help="Check out REV instead of the collection's head.")
@store_option
@click.pass_obj
def command(app: App, collection: str, directory: str | None, rev: str | None) -> None:
    """Restore COLLECTION into a new working copy DIR (default: ./COLLECTION)."""
    tune_allocator()  # restores allocate and free megabytes per file
    from vst.porcelain.clone import clone

    store = app.open_store()
    commit = app.resolve_rev(rev) if rev else None
    if commit is not None:
        from vst.plumbing.rev_parse import peel_to_commit

        commit = peel_to_commit(store, commit)
    dest = directory or collection
    progress = app.progress("Cloning")
    try:
        result = clone(store, app.store_location(), collection, dest,
                       commit=commit, warn=app.warn,
                       on_start=progress.set_total if progress.wanted else None,
                       on_bytes=progress.add)
    finally:
        progress.close()
    copy = result.copy
    app.hooks(copy).post("post-checkout", ["0" * 64, result.commit.hex if result.commit
                                           else "0" * 64, "1"])
    if app.json:
        app.emit_json({"type": "clone", **copy.describe(),
                       "commit": result.commit.hex if result.commit else None,
                       "files": result.files, "bytes": result.bytes, **app.round_trips()})
    elif not app.quiet:
        what = result.commit.short() if result.commit else "no commits yet"
        click.echo(f"Cloned '{collection}' ({what}) into {copy.root}: {plural(result.files, 'file')}, "
                   f"{human_size(result.bytes)}", err=True)

