"""vst hash-object [-w] [--stdin] [--stdin-paths] [FILE...]"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App, tune_allocator


@click.command("hash-object")
@click.option("-w", "write", is_flag=True, help="Store the object too.")
@click.option("--stdin", "use_stdin", is_flag=True, help="Read the content from stdin.")
@click.option("--stdin-paths", is_flag=True, help="Read file paths from stdin, one per line.")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_obj
def command(app: App, write: bool, use_stdin: bool, stdin_paths: bool,
            files: tuple[str, ...]) -> None:
    """Print the id of each FILE's content object (a blob, or a chunks object for a file of
    several chunks); with -w, store it. FILE '-' is stdin."""
    from vst.plumbing.hash_object import hash_object

    if use_stdin and stdin_paths:
        raise click.UsageError("--stdin and --stdin-paths cannot be combined")
    paths = [path for path in files if path != "-"]
    if len(paths) < len(files):  # '-' names stdin, as everywhere a path is taken
        if stdin_paths or len(files) - len(paths) > 1:
            raise click.UsageError("stdin can be read only once")
        use_stdin = True
    if stdin_paths:
        paths += [line.rstrip("\n") for line in sys.stdin if line.rstrip("\n")]
    if not paths and not use_stdin:
        raise click.UsageError("nothing to hash: give FILE arguments, --stdin or --stdin-paths")
    tune_allocator()
    store = app.open_store() if write else app.maybe_store()
    results = hash_object(store, paths=paths, write=write,
                          stdin=sys.stdin.buffer if use_stdin else None)
    names: list[str | None] = [*paths, None]
    for stored, name in zip(results, names, strict=False):
        app.emit_id(stored.oid, stored.kind.label, size=stored.size, path=name)
