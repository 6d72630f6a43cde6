"""vst collection create NAME | list | set-policy NAME POLICY"""

from __future__ import annotations

import datetime as dt

import click

from vst.cli.app import App, human_size, plural


@click.group("collection")
def command() -> None:
    """Create and list collections, and choose their replication policy."""


@command.command("create")
@click.argument("name")
@click.option("--no-encrypt", is_flag=True, help="Store it unencrypted (default: encrypted).")
@click.option("--keyring", metavar="NAME",
              help="Share the keyring NAME (default: a keyring of its own).")
@click.pass_obj
def create(app: App, name: str, no_encrypt: bool, keyring: str | None) -> None:
    """Create an empty collection NAME, encrypted unless --no-encrypt."""
    from vst.porcelain.collection import collection_create

    collection_create(app.open_store(), name, encrypt=not no_encrypt, keyring=keyring)
    app.announce_new_key()


@command.command("list")
@click.pass_obj
def list_(app: App) -> None:
    """List collections: name, head, last commit time, files, size, policy and packs
    with fewer copies than the policy asks."""
    from vst.porcelain.collection import collection_list

    for info in collection_list(app.open_store()):
        when = dt.datetime.fromtimestamp(info.commit_time, dt.UTC) \
            if info.commit_time is not None else None
        if app.json:
            app.emit_json({"type": "collection", "name": info.name,
                           "head": info.head.hex if info.head else None,
                           "time": when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
                           "files": info.files, "size": info.size, "policy": info.policy,
                           "under_replicated_packs": info.under_replicated})
        else:
            head = info.head.short() if info.head else "-" * 12
            stamp = when.strftime("%Y-%m-%d %H:%M") if when else "(no commits)"
            short = f"\t{plural(info.under_replicated, 'pack')} under-replicated" \
                if info.under_replicated else ""
            click.echo(f"{info.name}\t{head}\t{stamp}\t{plural(info.files, 'file')}\t"
                       f"{human_size(info.size)}\t{info.policy}{short}")


@command.command("set-policy")
@click.argument("name")
@click.argument("policy")
@click.pass_obj
def set_policy(app: App, name: str, policy: str) -> None:
    """Make collection NAME follow POLICY. Its new commits go by it at once; run
    'vst replicate' to bring its existing packs to it."""
    from vst.porcelain.collection import collection_set_policy

    collection_set_policy(app.open_store(), name, policy)
    if not app.quiet:
        click.echo(f"collection '{name}' now follows policy '{policy}'; run 'vst replicate' "
                   "to apply it to what is stored already", err=True)
