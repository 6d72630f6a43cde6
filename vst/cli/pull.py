"""vst pull"""

from __future__ import annotations

import click

from vst.cli.app import App, tune_allocator

KINDS = {
    "both changed": "changed here and there",
    "deleted here": "deleted here, changed there: brought back",
    "deleted there": "changed here, deleted there: kept",
    "blocked": "could not be updated: something here is in the way",
    "ignored here": "new there, and an ignored file of that name is here: kept",
}


@click.command("pull")
@click.pass_obj
def command(app: App) -> None:
    """Bring the working copy to its collection's head, keeping local changes.

    Where a file changed both here and in the collection, yours stays and the other version
    is written next to it as NAME.vst-conflict-<id>.EXT. Exits 3 when there were conflicts.
    """
    tune_allocator()  # restores allocate and free megabytes per file
    from vst.errors import PartialSuccess
    from vst.plumbing.quoting import quote
    from vst.porcelain.pull import pull

    copy = app.require_working_copy()
    store = app.open_store()
    progress = app.progress("Pulling")
    try:
        result = pull(store, copy, hooks=app.hooks(copy), warn=app.warn, on_bytes=progress.add)
    finally:
        progress.close()
    old = result.old.hex if result.old else None
    new = result.new.hex if result.new else None
    if app.json:
        app.emit_json({"type": "pull", "old": old, "new": new,
                       "updated": len(result.updated), "removed": len(result.removed),
                       "conflicts": [{"path": c.path.decode(errors="surrogateescape"),
                                      "kind": c.kind.replace(" ", "_"),
                                      "copy": c.copy.decode(errors="surrogateescape")
                                      if c.copy else None} for c in result.conflicts]})
    elif result.up_to_date:
        if not app.quiet:
            click.echo("Already up to date.", err=True)
    elif not app.quiet:
        click.echo(f"Updated {(old or 'nothing')[:12]}..{(new or '')[:12]}: "
                   f"{len(result.updated)} written, {len(result.removed)} removed", err=True)
        for conflict in result.conflicts:
            line = f"conflict: {quote(conflict.path)}: {KINDS[conflict.kind]}"
            if conflict.copy:
                line += f"; theirs is in {quote(conflict.copy)}"
            click.echo(line, err=True)
    if result.conflicts:
        raise PartialSuccess(f"{len(result.conflicts)} conflict(s): both versions were kept",
                             hint="look at the files named above, then 'vst commit'")
