"""vst cat-file (-t|-s|-p|-e|--content) OBJECT | vst cat-file --batch|--batch-check"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App


@click.command("cat-file")
@click.option("-t", "mode", flag_value="type", help="Print the object's type.")
@click.option("-s", "mode", flag_value="size", help="Print the object's size in bytes.")
@click.option("-p", "mode", flag_value="pretty", help="Print the content, trees as ls-tree.")
@click.option("-e", "mode", flag_value="exists",
              help="Exit 0 if the object exists and is valid, 1 if not; print nothing.")
@click.option("--content", "mode", flag_value="content",
              help="Print the file a blob or chunks object holds, reassembled and verified.")
@click.option("--batch", "mode", flag_value="batch",
              help="Read names on stdin; print '<id> <type> <size>' and the content for each.")
@click.option("--batch-check", "mode", flag_value="batch-check",
              help="Read names on stdin; print '<id> <type> <size>' for each.")
@click.argument("name", required=False)
@click.pass_obj
def command(app: App, mode: str | None, name: str | None) -> int:
    """Show an object's type, size or content. NAME is any revision (see rev-parse)."""
    from vst.plumbing import cat_file


    if mode is None:
        raise click.UsageError("choose one of -t, -s, -p, -e, --content, --batch, --batch-check")
    store = app.open_store()
    out = sys.stdout.buffer
    if mode in ("batch", "batch-check"):
        if name:
            raise click.UsageError(f"--{mode} reads names from stdin, not arguments")
        for answer in cat_file.batch(store, iter(sys.stdin.buffer.readline, b""),
                                     contents=mode == "batch", head=app.head()):
            out.write(answer)
            out.flush()
        return 0
    if not name:
        raise click.UsageError("missing OBJECT")
    if mode == "exists":
        return 0 if cat_file.exists(store, name, app.head()) else 1
    oid = app.resolve_rev(name)
    if mode == "type":
        click.echo(store.odb.get_kind(oid).label)
    elif mode == "content":
        for piece in cat_file.file_content(store, oid):
            out.write(piece)
    else:
        kind, content = store.odb.get(oid)
        if mode == "size":
            click.echo(str(len(content)))
        else:
            out.write(cat_file.pretty(kind, content))
    return 0
