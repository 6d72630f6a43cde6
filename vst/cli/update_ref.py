"""vst update-ref [-m REASON] COLLECTION NEW [OLD]"""

from __future__ import annotations

import click

from vst.cli.app import App


@click.command("update-ref")
@click.option("-m", "reason", default="update-ref", metavar="REASON",
              help="The reason recorded in the reflog.")
@click.argument("collection")
@click.argument("new")
@click.argument("old", required=False)
@click.pass_obj
def command(app: App, reason: str, collection: str, new: str, old: str | None) -> None:
    """Point COLLECTION at commit NEW. With OLD (an id, or 64 zeros for 'no commit yet'),
    only if the head is still OLD: a compare-and-swap that fails with exit code 16."""
    from vst.objects.oid import Oid, is_full_hex
    from vst.plumbing.rev_parse import peel_to_commit
    from vst.plumbing.update_ref import ANY, update_ref

    store = app.open_store()
    target = peel_to_commit(store, app.resolve_rev(new))
    expected: object = ANY
    if old is not None:
        expected = Oid.from_hex(old) if is_full_hex(old) else app.resolve_rev(old)
    update_ref(store, collection, target, expected, committer=app.identity("COMMITTER", store),
               message=reason)
