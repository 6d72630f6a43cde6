"""vst replicate [--dry-run] [COLLECTION...]"""

from __future__ import annotations

import click

from vst.cli.app import App, human_size, plural


@click.command("replicate")
@click.argument("collections", nargs=-1, metavar="[COLLECTION]...")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be copied; copy nothing.")
@click.pass_obj
def command(app: App, collections: tuple[str, ...], dry_run: bool) -> None:
    """Copy packs until each has the copies its collections' policies ask for, each from a
    copy that verifies. Exits 3 when some pack is still short (a volume is out)."""
    from vst.errors import PartialSuccess
    from vst.porcelain.replicate import replicate

    progress = app.progress("Replicating")
    try:
        result = replicate(app.open_store(), collections, dry_run=dry_run,
                           on_start=progress.set_total, on_bytes=progress.add)
    finally:
        progress.close()
    verb = "would copy" if dry_run else "copied"
    for copied in result.copied:
        if app.json:
            app.emit_json({"type": "copied", "pack": copied.pack, "volume": copied.volume,
                           "size": copied.size, "policy": copied.policy, "dry_run": dry_run})
    for short in result.short:
        if app.json:
            app.emit_json({"type": "short", "pack": short.pack, "policy": short.policy,
                           "have": short.have, "want": short.want, "reason": short.reason})
    size = sum(c.size for c in result.copied)
    if app.json:
        app.emit_json({"type": "replicate", "dry_run": dry_run, "packs": result.packs,
                       "copied": len(result.copied), "bytes": size,
                       "short": len(result.short), "vanished": result.vanished,
                       "unreadable": result.unreadable,
                       "unavailable": result.unavailable, "unwalked": result.unwalked})
    elif not app.quiet:
        click.echo(f"{verb} {plural(len(result.copied), 'pack')} ({human_size(size)}); "
                   f"{plural(result.packs, 'pack')} checked", err=True)
        if result.unwalked:
            app.warn(f"no key for {', '.join(result.unwalked)} where replicate ran: their "
                     "packs are those the index recorded their commits using, not a walk "
                     "of their history")
        if result.vanished:
            copies = "copy" if result.vanished == 1 else "copies"
            app.warn(f"{result.vanished} pack {copies} recorded in the index "
                     f"{'was' if result.vanished == 1 else 'were'} not on "
                     f"{'its' if result.vanished == 1 else 'their'} volume"
                     + ("" if dry_run else "; forgotten, and copied again wherever a "
                                           "policy wants one"))
        for short in result.short[:10]:
            click.echo(f"error: pack {short.pack} has {short.have} of the {short.want} copies "
                       f"policy '{short.policy}' asks: {short.reason}", err=True)
        if len(result.short) > 10:
            click.echo(f"error: and {len(result.short) - 10} more packs are short", err=True)
        for oid in result.unreadable[:10]:
            click.echo(f"error: object {oid} cannot be read on any volume", err=True)
    if not result.complete:
        volumes_out = any(s.reason.startswith("volumes out") for s in result.short)
        raise PartialSuccess(
            f"{plural(len(result.short), 'pack')} short of their policy"
            + (f", {plural(len(result.unreadable), 'object')} unreadable"
               if result.unreadable else ""),
            hint="bring the volumes back and run 'vst replicate' again, or "
                 "'vst volume lost NAME' for a disk that died" if volumes_out else
                 "run 'vst scrub' and 'vst repair': some packs have no copy that verifies")
