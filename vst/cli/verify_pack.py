"""vst verify-pack [-v] PACK..."""

from __future__ import annotations

import click

from vst.cli.app import App


@click.command("verify-pack")
@click.option("-v", "verbose", is_flag=True,
              help="List objects: '<id> <type> <size> <stored size> <offset>'.")
@click.argument("packs", nargs=-1, required=True)
@click.pass_obj
def command(app: App, verbose: bool, packs: tuple[str, ...]) -> int:
    """Verify packs given as files or as pack ids in the store (every copy on every volume).
    Exits 1 when a problem is found."""
    from vst.plumbing.verify_pack import verify_pack

    store = app.maybe_store()
    failed = False
    for name in packs:
        for report in verify_pack(store, name):
            if app.json:
                app.emit_json({"type": "pack", "where": report.where,
                               "objects": len(report.objects), "problems": report.problems})
            elif verbose:
                for obj in report.objects:
                    size = obj.size if obj.size >= 0 else "-"  # encrypted, no key
                    click.echo(f"{obj.oid} {obj.kind} {size} {obj.stored} {obj.offset}")
            for problem in report.problems:
                click.echo(f"error: {problem}", err=True)
            failed |= bool(report.problems)
            if not app.json and not app.quiet:
                click.echo(f"{report.where}: {'bad' if report.problems else 'ok'}", err=True)
    return 1 if failed else 0
