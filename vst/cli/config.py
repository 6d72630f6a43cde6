"""vst config [--global | --store | --local] [--get | --unset | --list] [KEY [VALUE]]"""

from __future__ import annotations

import click

from vst.cli.app import App


@click.command("config")
@click.option("--global", "layer", flag_value="global",
              help="The user's file (<user config dir>/vst/config.toml).")
@click.option("--store", "layer", flag_value="store", help="The store's config.toml.")
@click.option("--local", "layer", flag_value="local",
              help="The working copy's .vst/config.toml.")
@click.option("--get", "action", flag_value="get", help="Print KEY's value (exit 1 if unset).")
@click.option("--unset", "action", flag_value="unset",
              help="Remove KEY (exit 1 if it was not set).")
@click.option("-l", "--list", "action", flag_value="list", help="Print every key=value.")
@click.argument("key", required=False)
@click.argument("value", required=False)
@click.pass_obj
def command(app: App, layer: str | None, action: str | None, key: str | None,
            value: str | None) -> int:
    """Get, set, unset or list options. KEY alone gets, KEY VALUE sets (in the working copy
    when inside one, else globally); without a layer option, --get and --list read all."""
    from vst.config import format_value, json_value, parse_value

    action = action or ("set" if value is not None else "get")
    if (action == "list" and key is not None) or (action in ("get", "unset") and value is not None):
        raise click.UsageError(f"too many arguments for --{action}")
    if action != "list" and key is None:
        raise click.UsageError("missing KEY")
    config = app.config()
    if layer:
        config.require(layer)
    if action in ("list", "get"):
        if key is None:
            found = config.items(layer)
        else:
            hit = config.lookup(key, layer)
            found = [(key, hit[0], hit[1])] if hit else []
        for name, setting, where in found:
            if app.json:
                app.emit_json({"type": "config", "key": name, "value": json_value(setting),
                               "layer": where})
            else:
                click.echo(format_value(setting) if key else f"{name}={format_value(setting)}")
        return 0 if found or action == "list" else 1
    assert key is not None
    layer = layer or ("local" if config.paths["local"] else "global")
    if action == "unset":
        return 0 if config.unset(layer, key) else 1
    assert value is not None
    config.set(layer, key, parse_value(value))
    return 0
