"""vst repair [--volume NAME] [--dry-run]"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from vst.cli.app import App, human_size, plural

if TYPE_CHECKING:
    from vst.plumbing.affected import AffectedPath

SHOWN = 20  # paths listed per unrepairable pack on the terminal; --json lists them all


@click.command("repair")
@click.option("--volume", metavar="NAME", help="Repair only the copies on this volume.")
@click.option("--dry-run", is_flag=True, help="Say what would be repaired; write nothing.")
@click.pass_obj
def command(app: App, volume: str | None, dry_run: bool) -> int:
    """Scrub the volumes, then rewrite each bad or missing pack copy from a copy on another
    volume that verifies. Exits 3 when a pack has no verified copy left."""
    from vst.errors import PartialSuccess
    from vst.porcelain.repair import repair

    result = repair(app.open_store(), volume=volume, dry_run=dry_run)
    verb = "would repair" if dry_run else "repaired"
    for r in result.repaired:
        if app.json:
            app.emit_json({"type": "repaired", "volume": r.volume, "pack": r.pack,
                           "kind": r.kind, "source": r.source, "size": r.size,
                           "dry_run": dry_run})
        elif not app.quiet:
            click.echo(f"{verb} pack {r.pack} on volume '{r.volume}' ({r.kind}) from "
                       f"volume '{r.source}'", err=True)
    for u in result.unrepairable:
        if app.json:
            app.emit_json({"type": "unrepairable", "pack": u.pack, "volumes": list(u.volumes),
                           "tried": list(u.tried), "reason": u.reason,
                           "objects": list(u.objects), "collections": list(u.collections),
                           "affected": len(u.affected)})
            for a in u.affected:
                app.emit_json({"type": "affected", "pack": u.pack, "collection": a.collection,
                               "commit": a.commit.hex,
                               "path": a.path.decode(errors="surrogateescape"),
                               "what": a.what, "objects": [oid.hex for oid in a.lost]})
        else:
            click.echo(f"error: pack {u.pack} cannot be repaired: {u.reason}; it holds "
                       f"{plural(len(u.objects), 'object')}, reached from "
                       f"{', '.join(u.collections) or 'no collection'}", err=True)
            for line in affected_lines(u.affected):
                click.echo(line, err=True)
    if app.json:
        app.emit_json({"type": "repair", "dry_run": dry_run, "repaired": len(result.repaired),
                       "unrepairable": len(result.unrepairable),
                       "problems": len(result.problems)})
    elif not app.quiet:
        size = sum(r.size for r in result.repaired)
        count = len(result.repaired)
        copies = "1 pack copy" if count == 1 else f"{count} pack copies"
        click.echo(f"{verb} {copies} ({human_size(size)})"
                   + (f", {len(result.unrepairable)} unrepairable" if result.unrepairable
                      else ""), err=True)
    if result.unrepairable:
        raise PartialSuccess(f"{plural(len(result.unrepairable), 'pack')} could not be "
                             "repaired: no volume holds a copy that verifies",
                             hint="the paths affected are listed above (all of them "
                                  "with --json)")
    return 0


def affected_lines(affected: Sequence[AffectedPath], limit: int = SHOWN) -> list[str]:
    """One line per (collection, path) affected, in the order first met (from the heads
    back), with how many commits have it: the first ``limit``, then how many more."""
    from vst.plumbing.affected import COMMIT, DIR
    from vst.plumbing.quoting import quote

    grouped: dict[tuple[str, str, bytes], list[AffectedPath]] = {}
    for a in affected:
        # A lost commit object is its own entry: no other commit shares it.
        key = (a.collection, a.what, a.commit.raw if a.what == COMMIT else a.path)
        grouped.setdefault(key, []).append(a)
    lines = []
    for (collection, what, _), records in list(grouped.items())[:limit]:
        first = records[0]
        if what == COMMIT:
            lines.append(f"  {collection}: commit {first.commit.short()} (the commit "
                         "object: its files and the history before it cannot be read)")
            continue
        path = "/" if not first.path else quote(first.path) + ("/" if what == DIR else "")
        lines.append(f"  {collection}: {path} ({what}, in {plural(len(records), 'commit')}, "
                     f"latest {first.commit.short()})")
    if len(grouped) > limit:
        lines.append(f"  and {len(grouped) - limit} more (see --json)")
    return lines
