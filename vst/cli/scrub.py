"""vst scrub [--volume NAME] [--subset N/T] [--resume]"""

from __future__ import annotations

import click

from vst.cli.app import App, human_size, plural


@click.command("scrub")
@click.option("--volume", metavar="NAME", help="Scrub only this volume.")
@click.option("--subset", metavar="N/T", help="Scrub part N of T (by pack id); 1/T..T/T "
              "together cover every pack once.")
@click.option("--resume", is_flag=True, help="Continue an interrupted pass.")
@click.pass_obj
def command(app: App, volume: str | None, subset: str | None, resume: bool) -> int:
    """Read every pack on the volumes and check it against its name, its index and its
    records' ids; needs no key. Prints one line per problem; exits 1 when a copy is bad or
    missing."""
    from vst.porcelain.scrub import UNKNOWN, parse_subset, scrub

    part = parse_subset(subset) if subset is not None else None
    progress = app.progress("Scrubbing")
    try:
        result = scrub(app.open_store(), volume=volume, subset=part, resume=resume,
                       progress=progress.add)
    finally:
        progress.close()
    for p in result.problems:
        if app.json:
            app.emit_json({"type": "scrub_problem", "volume": p.volume, "pack": p.pack,
                           "kind": p.kind, "message": p.message})
        elif p.kind != UNKNOWN or not app.quiet:
            click.echo(f"{'warning' if p.kind == UNKNOWN else 'error'}: {p.message}", err=True)
    if app.json:
        app.emit_json({"type": "scrub", "volumes": result.volumes, "subset": subset,
                       "packs_checked": result.packs_checked,
                       "bytes_checked": result.bytes_checked,
                       "packs_resumed": result.packs_resumed, "bad": result.bad,
                       "missing": result.missing, "unknown": result.unknown})
    elif not app.quiet:
        found = [f"{n} {what}" for n, what in ((result.bad, "bad"), (result.missing, "missing"),
                                               (result.unknown, "unknown")) if n]
        click.echo(f"scrubbed {plural(result.packs_checked, 'pack')} "
                   f"({human_size(result.bytes_checked)}) on "
                   f"{plural(len(result.volumes), 'volume')}: "
                   f"{', '.join(found) if found else 'no problems'}", err=True)
    return 0 if result.clean else 1
