"""vst commit [-m MSG] [--dry-run] [--allow-empty]"""

from __future__ import annotations

from typing import BinaryIO

import click

from vst.cli.app import App, human_size, tune_allocator


@click.command("commit")
@click.option("-m", "--message", metavar="MSG", help="The commit message.")
@click.option("-F", "--file", "message_file", type=click.File("rb"), metavar="FILE",
              help="Take the message from FILE ('-': standard input).")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be committed; store nothing.")
@click.option("--allow-empty", is_flag=True, help="Commit even when nothing changed.")
@click.pass_obj
def command(app: App, message: str | None, message_file: BinaryIO | None,
            dry_run: bool, allow_empty: bool) -> None:
    """Snapshot the whole working copy as a new commit; print its id.

    Without -m or -F the message is a summary of the changes.
    """
    from vst.workdir import inodes_warmed

    if message is not None and message_file is not None:
        raise click.UsageError("give -m or -F, not both")
    text = message.encode() if message is not None else \
        message_file.read() if message_file is not None else None
    if text is not None and not text.strip():
        raise click.UsageError("empty commit message (leave out -m for a summary of the "
                               "changes)")
    copy = app.require_working_copy()
    with inodes_warmed(copy):  # from here, before the imports: they take a cold disk's time
        from vst.plumbing.quoting import quote
        from vst.porcelain.commit import commit

        store = app.open_store()
        tune_allocator()
        progress = app.progress("Committing")
        try:
            result = commit(store, copy, text, author=app.identity("AUTHOR", store),
                            committer=app.identity("COMMITTER", store), hooks=app.hooks(copy),
                            dry_run=dry_run, allow_empty=allow_empty, warn=app.warn,
                            on_bytes=progress.add)
        finally:
            progress.close()
    counts = {word: result.count(s) for s, word in
              (("A", "added"), ("M", "modified"), ("D", "deleted"), ("T", "type_changed"))}
    if app.json:
        app.emit_json({"type": "commit", "id": result.commit.hex if result.commit else None,
                       "parent": result.parent.hex if result.parent else None,
                       "collection": copy.collection, "dry_run": dry_run, **counts,
                       "bytes_read": result.read_bytes, "bytes_new": result.new_bytes,
                       "policy": result.policy, "under_replicated_packs": result.short_packs,
                       "changing": [p.decode(errors="surrogateescape") for p in result.changing],
                       **app.round_trips()})
        return
    if dry_run:
        for change in result.changes:
            click.echo(f"{change.status} {quote(change.path)}")
        return
    if result.commit is None:
        if not app.quiet:
            click.echo("nothing to commit, working copy clean", err=True)
        return
    click.echo(result.commit.hex)
    if not app.quiet:
        summary = ", ".join(f"{n} {w.replace('_', ' ')}" for w, n in counts.items() if n) \
            or "no changes"
        click.echo(f"[{copy.collection} {result.commit.short()}] {summary}; "
                   f"{human_size(result.read_bytes)} read, {human_size(result.new_bytes)} new "
                   "after dedup and compression", err=True)
    if result.short_packs:
        down = ", ".join(f"'{name}'" for name in sorted(result.unavailable)) or "none"
        app.warn(f"{result.short_packs} pack{'' if result.short_packs == 1 else 's'} of this "
                 f"commit {'has' if result.short_packs == 1 else 'have'} fewer than the "
                 f"{result.copies} copies policy '{result.policy}' asks (volumes out: {down}); "
                 "run 'vst replicate' once they are back")
