"""vst fsck [--full]"""

from __future__ import annotations

import click

from vst.cli.app import App


def _problems(count: int) -> str:
    return "no problems" if count == 0 else "1 problem" if count == 1 else f"{count} problems"


@click.command("fsck")
@click.option("--full", is_flag=True, help="Also re-read and re-hash every pack on every volume.")
@click.pass_obj
def command(app: App, full: bool) -> int:
    """Check that everything the collections reach is present and intact. Prints one line
    per problem; exits 1 when there is any."""
    from vst.plumbing.fsck import fsck

    result = fsck(app.open_store(), full=full)
    for where, why in sorted(result.unchecked.items()):
        app.warn(f"{where} not walked: {why}")
    for problem in result.problems:
        if app.json:
            app.emit_json({"type": "problem", "message": problem})
        else:
            click.echo(problem)
    if app.json:
        app.emit_json({"type": "fsck", "objects_checked": result.objects_checked,
                       "packs_checked": result.packs_checked,
                       "problems": len(result.problems),
                       "unchecked": sorted(result.unchecked)})
    elif not app.quiet:
        click.echo(f"checked {result.objects_checked} objects"
                   + (f", {result.packs_checked} pack copies" if full else "")
                   + f": {_problems(len(result.problems))}", err=True)
    return 1 if result.problems else 0
