"""vst count-objects [-H]"""

from __future__ import annotations

import click

from vst.cli.app import App


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if unit != "bytes" else f"{size} bytes"
        value /= 1024
    raise AssertionError


@click.command("count-objects")
@click.option("-H", "--human-readable", "human", is_flag=True, help="Print sizes in KiB, MiB...")
@click.pass_obj
def command(app: App, human: bool) -> None:
    """Print 'key: value' lines: objects, packs, size-pack (bytes), volumes, collections."""
    from vst.plumbing.count_objects import count_objects

    counts = count_objects(app.open_store())
    if app.json:
        app.emit_json({"type": "count", "objects": counts.objects, "packs": counts.packs,
                       "size_pack": counts.size_pack, "volumes": counts.volumes,
                       "collections": counts.collections})
        return
    click.echo(f"objects: {counts.objects}")
    click.echo(f"packs: {counts.packs}")
    click.echo(f"size-pack: {_human(counts.size_pack) if human else counts.size_pack}")
    click.echo(f"volumes: {counts.volumes}")
    click.echo(f"collections: {counts.collections}")
