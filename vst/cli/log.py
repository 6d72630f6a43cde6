"""vst log [--oneline] [-n N] [--stat] [--json] [REV] [-- PATH...]"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App


class PathsAfterDashDash(click.Command):
    """As in git, the arguments after ``--`` are paths: they arrive as the ``paths``
    parameter, and the arguments before ``--`` are parsed as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        paths: list[str] = []
        if "--" in args:
            at = args.index("--")
            args, paths = args[:at], args[at + 1:]
        rest = super().parse_args(ctx, args)
        ctx.params["paths"] = tuple(paths)
        return rest

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- PATH...]"]


@click.command("log", cls=PathsAfterDashDash)
@click.option("--oneline", is_flag=True, help="One line per commit: short id and subject.")
@click.option("-n", "--max-count", "max_count", type=click.IntRange(min=0), metavar="N",
              help="Show at most N commits.")
@click.option("--stat", is_flag=True, help="Show a diffstat of each commit's changes.")
@click.option("--json", "json_", is_flag=True,
              help="One JSON record per commit (as the global --json).")
@click.argument("rev", required=False)
@click.pass_obj
def command(app: App, oneline: bool, max_count: int | None, stat: bool, json_: bool,
            rev: str | None, paths: tuple[str, ...]) -> None:
    """Show the history of REV (default: the working copy's HEAD), newest first.
    After '--', only commits that change the given paths."""
    from vst.porcelain.diff import diff_stat, format_stat, store_loader
    from vst.porcelain.log import commit_record, format_commit, format_oneline, log

    store = app.open_store()
    start = app.resolve_rev(rev) if rev is not None else app.default_rev()
    entries = log(store, start, max_count=max_count, paths=app.tree_paths(paths),
                  with_changes=stat)
    out = sys.stdout.buffer
    loaders = store_loader(store)
    for number, entry in enumerate(entries):
        if json_ or app.json:
            app.emit_json(commit_record(entry))
            continue
        if oneline:
            out.write(format_oneline(entry.oid, entry.commit))
        else:
            out.write((b"\n" if number else b"") + format_commit(entry.oid, entry.commit))
        if entry.changes:
            out.write(b"" if oneline else b"\n")
            out.writelines(format_stat(diff_stat(entry.changes, *loaders)))
