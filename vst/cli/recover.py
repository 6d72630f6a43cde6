"""vst recover --from URL [--endpoint-url U] [--region R] [--profile P] STORE_PATH"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from vst.cli.app import App, plural

if TYPE_CHECKING:
    from vst.porcelain.recover import RecoverResult


@click.command("recover")
@click.option("--from", "url", metavar="URL", required=True,
              help="The volume to recover from: a directory or s3://BUCKET/PREFIX.")
@click.option("--endpoint-url", metavar="URL", help="The S3 endpoint (SeaweedFS, MinIO...).")
@click.option("--region", metavar="REGION", help="The S3 region.")
@click.option("--profile", metavar="PROFILE", help="The AWS profile to take credentials from.")
@click.argument("store_path")
@click.pass_obj
def command(app: App, url: str, endpoint_url: str | None, region: str | None,
            profile: str | None, store_path: str) -> None:
    """Rebuild a lost store at STORE_PATH (new or empty) from one of its volumes. Exits 3
    when some collection's objects are not on any reachable volume."""
    from vst.errors import PartialSuccess
    from vst.porcelain.recover import recover

    progress = app.progress("Indexing")
    try:
        result = recover(store_path, url, key_source=app.user_keys(),
                         endpoint_url=endpoint_url, region=region,
                         profile=profile, warn=app.warn, on_bytes=progress.add)
    finally:
        progress.close()
    if app.json:
        app.emit_json(_record(result))
    elif not app.quiet:
        _summary(result)
    if result.incomplete:
        names = ", ".join(f"'{c.name}'" for c in result.incomplete)
        what = "collection" if len(result.incomplete) == 1 else "collections"
        raise PartialSuccess(f"recovered the store, but some objects of {what} {names} are "
                             "on no reachable volume",
                             hint="if an unreachable volume holds them, make it reachable "
                                  "and run 'vst index rebuild'; 'vst fsck' lists what is "
                                  "missing")


def _record(result: RecoverResult) -> dict[str, Any]:
    return {"type": "recover", "path": result.path, "store_id": result.store_id,
            "packs": result.packs, "objects": result.objects, "skipped": result.skipped,
            "collections": [{"name": c.name, "head": c.head.hex if c.head else None,
                             "objects": c.objects, "missing": c.missing,
                             "complete": c.complete} for c in result.collections],
            "volumes": [{"name": v.name, "kind": v.kind, "url": v.url, "id": v.volume_id,
                         "state": v.state, "source": v.source,
                         "previous_url": v.previous_url, "packs": v.packs,
                         "problem": v.problem} for v in result.volumes],
            "incomplete": [c.name for c in result.incomplete]}


def _summary(result: RecoverResult) -> None:
    lines = [f"Recovered store {result.store_id} into {result.path}: "
             f"{plural(result.packs, 'pack')}, {plural(result.objects, 'object')} indexed"]
    for v in result.volumes:
        line = f"  volume {v.name} ({v.url}): {v.state}"
        if v.source:
            line += ", recovered from"
        if v.previous_url:
            line += f", was {v.previous_url}"
        if v.problem:
            line += f": {v.problem}"
        lines.append(line)
    for c in result.collections:
        state = "no commits" if c.head is None else \
            "complete" if c.complete else f"{plural(c.missing, 'object')} missing"
        lines.append(f"  collection {c.name} {c.head.short() if c.head else '-'}: {state}")
    click.echo("\n".join(lines), err=True)
