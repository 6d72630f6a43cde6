"""vst commit-tree TREE [-p PARENT]... (-m MSG | -F FILE)"""

from __future__ import annotations

import sys

import click

from vst.cli.app import App


@click.command("commit-tree")
@click.argument("tree")
@click.option("-p", "parents", multiple=True, metavar="PARENT", help="A parent commit.")
@click.option("-m", "messages", multiple=True, metavar="MSG",
              help="The message; several -m make paragraphs.")
@click.option("-F", "message_file", metavar="FILE", help="Read the message from FILE ('-': stdin).")
@click.pass_obj
def command(app: App, tree: str, parents: tuple[str, ...], messages: tuple[str, ...],
            message_file: str | None) -> None:
    """Create a commit of TREE and print its id. Author and committer come from
    VST_AUTHOR_NAME/EMAIL/DATE and VST_COMMITTER_NAME/EMAIL/DATE, else the store's [user]."""
    from vst.fsio import read_file
    from vst.plumbing.commit_tree import commit_tree
    from vst.plumbing.rev_parse import peel_to_commit, peel_to_tree

    if messages and message_file:
        raise click.UsageError("give -m or -F, not both")
    if message_file == "-":
        message = sys.stdin.buffer.read()
    elif message_file:
        message = read_file(message_file)
    elif messages:
        message = "\n\n".join(messages).encode()
    else:
        raise click.UsageError("a commit needs a message: use -m MSG or -F FILE")
    store = app.open_store()
    oid = commit_tree(store, peel_to_tree(store, app.resolve_rev(tree)),
                      [peel_to_commit(store, app.resolve_rev(p)) for p in parents], message,
                      author=app.identity("AUTHOR", store),
                      committer=app.identity("COMMITTER", store))
    app.emit_id(oid, "commit")
