"""vst volume add NAME URL | list | validate NAME | remove NAME | lost NAME"""

from __future__ import annotations

import click

from vst.cli.app import App, human_size, plural


@click.group("volume")
def command() -> None:
    """Add, list, validate, remove and forget volumes."""


@command.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint-url", metavar="URL", help="The S3 endpoint (SeaweedFS, MinIO...).")
@click.option("--region", metavar="REGION", help="The S3 region.")
@click.option("--profile", metavar="PROFILE", help="The AWS profile to take credentials from.")
@click.pass_obj
def add(app: App, name: str, url: str, endpoint_url: str | None, region: str | None,
        profile: str | None) -> None:
    """Add the volume URL (a directory or s3://BUCKET/PREFIX) as NAME, copying everything
    the store holds to it."""
    from vst.porcelain.volume import volume_add

    progress = app.progress("Copying")
    try:
        added = volume_add(app.open_store(), name, url, endpoint_url=endpoint_url,
                           region=region, profile=profile, on_start=progress.set_total,
                           on_bytes=progress.add)
    finally:
        progress.close()
    if app.json:
        app.emit_json({"type": "volume_add", "name": added.name, "kind": added.kind,
                       "url": added.url, "id": added.volume_id, "packs": added.packs,
                       "bytes": added.bytes})
    elif not app.quiet:
        click.echo(f"Added volume '{added.name}' ({added.url}): copied "
                   f"{plural(added.packs, 'pack')}, {human_size(added.bytes)}")


@command.command("list")
@click.pass_obj
def list_(app: App) -> None:
    """List volumes: name, kind, URL, packs and bytes held, reachable or not."""
    from vst.porcelain.volume import volume_list

    for info in volume_list(app.open_store()):
        if app.json:
            app.emit_json({"type": "volume", "name": info.name, "kind": info.kind,
                           "url": info.url, "id": info.volume_id,
                           "endpoint_url": info.endpoint_url, "reachable": info.reachable,
                           "packs": info.packs, "bytes": info.bytes, "problem": info.problem})
        else:
            held = f"{plural(info.packs, 'pack')}\t{human_size(info.bytes)}" \
                if info.packs is not None and info.bytes is not None else "-\t-"
            state = "ok" if info.problem is None else \
                ("unreachable" if not info.reachable else "refused")
            line = f"{info.name}\t{info.kind}\t{info.url}\t{held}\t{state}"
            click.echo(line + (f"\t{info.problem}" if info.problem else ""))


@command.command("validate")
@click.argument("name")
@click.pass_obj
def validate(app: App, name: str) -> int:
    """Check that volume NAME honours what vst relies on (read-after-write, overwrites,
    conditional writes, range reads, listing, deletes, large files). Prints one line per
    check; exits 1 when any fails."""
    from vst.porcelain.volume import volume_validate

    checks = volume_validate(app.open_store(), name)
    failed = sum(1 for check in checks if not check.ok)
    for check in checks:
        if app.json:
            app.emit_json({"type": "volume_check", "volume": name, "check": check.name,
                           "ok": check.ok, "reason": check.reason})
        else:
            click.echo(f"{check.name}\t" + ("ok" if check.ok else f"FAILED: {check.reason}"))
    if app.json:
        app.emit_json({"type": "volume_validate", "volume": name, "checks": len(checks),
                       "failed": failed})
    elif not app.quiet:
        click.echo(f"volume '{name}': {len(checks)} checks, "
                   + ("all passed" if not failed else f"{failed} failed"), err=True)
    return 1 if failed else 0


@command.command("remove")
@click.argument("name")
@click.pass_obj
def remove(app: App, name: str) -> None:
    """Take volume NAME out of the store, once every pack it holds is confirmed on another
    volume. Nothing on the volume is deleted."""
    from vst.porcelain.volume import volume_remove

    done = volume_remove(app.open_store(), name)
    if app.json:
        app.emit_json({"type": "volume_remove", "name": done.name, "url": done.url,
                       "id": done.volume_id, "copies": done.copies,
                       "under_replicated": done.under_replicated})
    elif not app.quiet:
        click.echo(f"Removed volume '{done.name}' ({done.url}) from the store; nothing on it "
                   "was deleted: wipe it by hand if you no longer need it")


@command.command("lost")
@click.argument("name")
@click.pass_obj
def lost(app: App, name: str) -> None:
    """Forget volume NAME (a dead disk) and its pack copies. Exits 3 when some packs are
    now on no volume."""
    from vst.errors import PartialSuccess
    from vst.porcelain.volume import volume_lost

    done = volume_lost(app.open_store(), name)
    if app.json:
        app.emit_json({"type": "volume_lost", "name": done.name, "url": done.url,
                       "id": done.volume_id, "copies": done.copies, "lost": done.lost,
                       "under_replicated": done.under_replicated})
    elif not app.quiet:
        click.echo(f"Forgot volume '{done.name}' ({done.url}): "
                   f"{plural(done.lost, 'pack')} on no volume, "
                   f"{plural(done.under_replicated, 'pack')} under-replicated")
    if done.lost:
        raise PartialSuccess(f"{plural(done.lost, 'pack')} now on no volume: their objects "
                             "are lost unless another store has them",
                             hint="'vst fsck' lists the missing objects that collections reach")
