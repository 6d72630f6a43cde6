"""vst restore [--source REV] [--to DIR] [--collection NAME] PATH..."""

from __future__ import annotations

import os

import click

from vst.cli.app import App, human_size, plural, store_option, tune_allocator


@click.command("restore")
@click.option("-s", "--source", metavar="REV", help="The commit to restore from (default: HEAD "
              "in a working copy, else the collection's head).")
@click.option("--to", "target", metavar="DIR", type=click.Path(file_okay=False),
              help="Restore under DIR instead of the working copy (created if missing).")
@click.option("-c", "--collection", metavar="NAME",
              help="Restore from this collection without a working copy (needs --to).")
@click.argument("paths", nargs=-1, type=click.Path())
@store_option
@click.pass_obj
def command(app: App, source: str | None, target: str | None, collection: str | None,
            paths: tuple[str, ...]) -> None:
    """Bring files or folders back from any commit.

    In a working copy, PATHs are relative to the current folder and are restored in place
    ('.' restores everything). With --to DIR they land under DIR at the same paths; with
    --collection no working copy is needed, and no PATH means everything.
    """
    tune_allocator()  # restores allocate and free megabytes per file
    from vst.errors import UsageError
    from vst.plumbing.rev_parse import peel_to_commit
    from vst.porcelain.restore import restore, restore_in_working_copy
    from vst.porcelain.status import relative_paths

    copy = None if collection else app.working_copy()
    store = app.open_store()
    if copy is None:
        if not collection or not target:
            raise UsageError("outside a working copy, name the collection and the target: "
                             "--collection NAME --to DIR")
        rel = [os.fsencode(p) for p in paths]
        if not store.has_collection(collection):
            from vst.errors import NotFound

            raise NotFound(f"no collection named '{collection}'")
        rev = source or collection
    else:
        if not paths and not target:
            raise UsageError("name what to restore ('.' for everything)")
        rel = relative_paths(copy, paths)
        rev = source or "HEAD"
    commit = peel_to_commit(store, app.resolve_rev(rev))
    progress = app.progress("Restoring")
    try:
        if target is not None:
            result = restore(store, commit, target, rel, warn=app.warn, on_bytes=progress.add)
        else:
            assert copy is not None
            result = restore_in_working_copy(store, copy, commit, rel, warn=app.warn,
                                             on_bytes=progress.add)
    finally:
        progress.close()
    if copy is not None and target is None:
        base = copy.base()
        app.hooks(copy).post("post-checkout", [base.hex if base else "0" * 64, commit.hex, "0"])
    if app.json:
        app.emit_json({"type": "restore", "source": commit.hex,
                       "target": os.path.abspath(target) if target else copy and copy.root,
                       "files": result.files, "bytes": result.bytes})
    elif not app.quiet:
        click.echo(f"Restored {plural(result.files, 'file')} ({human_size(result.bytes)}) from "
                   f"{commit.short()}", err=True)
