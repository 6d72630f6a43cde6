"""vst status [-s | --porcelain] [-z] [--exit-code] [PATH...]"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App, human_size, plural

WORDS = {"A": "added", "M": "modified", "D": "deleted", "T": "typechange"}


@click.command("status")
@click.option("-s", "--short", is_flag=True, help="One line per change: 'M path'.")
@click.option("--porcelain", is_flag=True, help="Like --short, a stable format for scripts.")
@click.option("-z", "nul", is_flag=True, help="End records with NUL; paths unquoted.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are changes.")
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_obj
def command(app: App, short: bool, porcelain: bool, nul: bool, exit_code: bool,
            paths: tuple[str, ...]) -> int:
    """Show what changed in the working copy since its base commit."""
    from vst.workdir import inodes_warmed

    copy = app.require_working_copy()
    with inodes_warmed(copy):  # from here, before the imports: they take a cold disk's time
        from vst.plumbing.quoting import quote
        from vst.porcelain.status import status

        store = app.open_store()
        result = status(store, copy, paths=app.tree_paths(paths), warn=app.warn)
    changes = result.changes
    if app.json or not (short or porcelain or nul):
        from vst.porcelain.policy import under_replicated

        short_packs, short_bytes = under_replicated(store, copy.collection)
    if app.json:
        for change in changes:
            app.emit_json({"type": "change", "status": change.status,
                           "path": change.path.decode(errors="surrogateescape")})
        app.emit_json({"type": "status", "collection": copy.collection, "base": result.base,
                       "head": result.head, "behind": result.behind,
                       "changes": len(changes),
                       "policy": store.collection_policy(copy.collection),
                       "under_replicated_packs": short_packs})
    elif short or porcelain or nul:
        out = sys.stdout.buffer
        for change in changes:
            if nul:
                out.write(change.status.encode() + b" " + change.path + b"\0")
            else:
                out.write(f"{change.status} {quote(change.path)}\n".encode())
        out.flush()
    else:
        base = result.base[:12] if result.base else "no commit yet"
        click.echo(f"On collection {copy.collection}, base {base}")
        if result.behind:
            head = result.head[:12] if result.head else "none"
            click.echo(f"The collection has moved on to {head}: run 'vst pull' to catch up.")
        if short_packs:
            policy = store.policy_of(copy.collection)
            click.echo(f"{plural(short_packs, 'pack')} ({human_size(short_bytes)}) "
                       f"{'has' if short_packs == 1 else 'have'} fewer than the "
                       f"{policy.copies} copies policy '{policy.name}' asks: "
                       "run 'vst replicate'.")
        if changes:
            click.echo("Changes since the base commit:")
            for change in changes:
                click.echo(f"  {WORDS[change.status] + ':':<12}{quote(change.path)}")
        else:
            click.echo("nothing to commit, working copy clean")
    return 1 if exit_code and changes else 0
