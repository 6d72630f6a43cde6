"""vst rev-parse [--short[=N]] REV..."""

from __future__ import annotations

import click

from vst.cli.app import App


class _RevParseCommand(click.Command):
    """Accepts git's ``--short`` and ``--short=N``: click options take a value always or
    never, so ``--short=N`` is rewritten to ``--short --abbrev N`` before parsing."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        for position, arg in enumerate(args):
            if arg == "--":
                rewritten += args[position:]
                break
            if arg.startswith("--short="):
                rewritten += ["--short", "--abbrev", arg.removeprefix("--short=")]
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@click.command("rev-parse", cls=_RevParseCommand)
@click.option("--short", is_flag=True, help="Print abbreviated ids (12 hex digits, or N with "
              "--short=N).")
@click.option("--abbrev", type=click.IntRange(4, 64), default=12, hidden=True)
@click.argument("revs", nargs=-1, required=True)
@click.pass_obj
def command(app: App, short: bool, abbrev: int, revs: tuple[str, ...]) -> None:
    """Print the full id of each REV: an id or 4+ digit prefix, COLLECTION, COLLECTION~N,
    COLLECTION^N, COLLECTION@{N} (reflog), and REV:PATH."""


    for rev in revs:
        oid = app.resolve_rev(rev)
        if app.json:
            app.emit_json({"type": "rev", "rev": rev, "id": oid.hex})
        else:
            click.echo(oid.short(abbrev) if short else oid.hex)
