"""vst rev-parse REV..."""

from __future__ import annotations

import click

from vst.cli.app import App


@click.command("rev-parse")
@click.option("--short", "short", type=int, is_flag=False, flag_value=12, default=None,
              help="Print abbreviated ids (default 12 digits).")
@click.argument("revs", nargs=-1, required=True)
@click.pass_obj
def command(app: App, short: int | None, revs: tuple[str, ...]) -> None:
    """Print the full id of each REV: an id or 4+ digit prefix, COLLECTION, COLLECTION~N,
    COLLECTION^N, COLLECTION@{N} (reflog), and REV:PATH."""
    from vst.plumbing.rev_parse import rev_parse

    store = app.open_store()
    for rev in revs:
        oid = rev_parse(store, rev)
        click.echo(oid.short(max(4, short)) if short else oid.hex)
