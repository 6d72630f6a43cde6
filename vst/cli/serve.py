"""vst serve --stdio [--restrict-to DIR]... [--append-only] [--read-only] [STORE]"""

from __future__ import annotations

import click

from vst.cli.app import App, tune_allocator


@click.command("serve")
@click.option("--stdio", is_flag=True, required=True,
              help="Serve one client on stdin and stdout (what ssh runs).")
@click.option("--restrict-to", "restrict_to", multiple=True, metavar="DIR",
              help="Serve only stores inside DIR (symlinks resolved); may be repeated.")
@click.option("--append-only", is_flag=True,
              help="Refs only move forward and nothing is overwritten.")
@click.option("--read-only", is_flag=True, help="Refuse every change.")
@click.argument("store", required=False)
@click.pass_obj
def command(app: App, stdio: bool, restrict_to: tuple[str, ...], append_only: bool,
            read_only: bool, store: str | None) -> None:
    """Serve the store STORE to a vst client over ssh. Under a forced command in
    authorized_keys the store comes from what the client asked for
    ($SSH_ORIGINAL_COMMAND), which may narrow the modes but never widen them."""
    from vst.ssh.server import Modes, serve_stdio

    tune_allocator()  # packs arrive a megabyte at a time
    serve_stdio(store, Modes(read_only=read_only, append_only=append_only,
                             restrict_to=restrict_to))
