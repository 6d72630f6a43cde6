"""vst policy set NAME --volumes A,B [--copies N] | list | remove NAME"""

from __future__ import annotations

import click

from vst.cli.app import App


@click.group("policy")
def command() -> None:
    """Set, list and remove replication policies."""


@command.command("set")
@click.argument("name")
@click.option("--volumes", required=True, metavar="A,B,...",
              help="The volumes that hold the packs, in order of preference.")
@click.option("--copies", type=click.IntRange(min=1), metavar="N",
              help="Copies of each pack (default: one on each volume listed).")
@click.pass_obj
def set_(app: App, name: str, volumes: str, copies: int | None) -> None:
    """Create or change policy NAME. Collections following it write new packs by it at
    once; run 'vst replicate' to apply it to what is stored already."""
    from vst.porcelain.policy import policy_set

    policy = policy_set(app.open_store(), name, volumes, copies)
    if app.json:
        app.emit_json({"type": "policy", "name": policy.name, "volumes": list(policy.volumes),
                       "copies": policy.copies})
    elif not app.quiet:
        click.echo(f"policy '{policy.name}': {policy.copies} of "
                   f"{', '.join(policy.volumes)}", err=True)


@command.command("list")
@click.pass_obj
def list_(app: App) -> None:
    """List policies: name, copies, volumes, and the collections that follow each."""
    from vst.porcelain.policy import policy_list

    for info in policy_list(app.open_store()):
        policy = info.policy
        if app.json:
            app.emit_json({"type": "policy", "name": policy.name,
                           "volumes": list(policy.volumes), "copies": policy.copies,
                           "implicit": policy.implicit, "collections": list(info.collections)})
        else:
            note = " (built in: every volume)" if policy.implicit else ""
            click.echo(f"{policy.name}\t{policy.copies} of {','.join(policy.volumes)}{note}\t"
                       f"{','.join(info.collections) or '-'}")


@command.command("remove")
@click.argument("name")
@click.pass_obj
def remove(app: App, name: str) -> None:
    """Remove policy NAME; refused while a collection follows it."""
    from vst.porcelain.policy import policy_remove

    policy_remove(app.open_store(), name)
