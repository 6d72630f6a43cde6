"""vst key gen [LABEL] | list | export [KEY] | import [FILE] | grant ... | revoke KEK ..."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

import click

from vst.cli.app import App, plural

if TYPE_CHECKING:
    from vst.userkeys import KeyInfo

MAX_IMPORT_SIZE = 1 << 16


@click.group("key")
def command() -> None:
    """Make, list, export, import, grant and revoke your keys (KEKs)."""


def new_passphrase(app: App, what: str) -> bytes:
    """A passphrase to seal something new with: from --passphrase-file or VST_PASSPHRASE,
    else typed twice on the terminal."""
    if app.passphrase_file or os.environ.get("VST_PASSPHRASE"):
        given = app._passphrase(what)
    elif sys.stdin.isatty() and sys.stderr.isatty():
        import getpass

        try:
            given = getpass.getpass(f"{what}: ", stream=sys.stderr).encode()
            again = getpass.getpass(f"{what} (again): ", stream=sys.stderr).encode()
        except EOFError:
            given = again = b""
        if given != again:
            from vst.errors import UsageError

            raise UsageError("the two passphrases differ")
    else:
        given = None
    if not given:
        from vst.errors import UsageError

        raise UsageError(f"no {what} given",
                         hint="use --passphrase-file FILE, set VST_PASSPHRASE, or run it on "
                              "a terminal")
    return given


def kek_record(info: KeyInfo) -> dict[str, Any]:
    return {"type": "kek", "label": info.label, "kind": info.kind,
            "fingerprint": info.fingerprint, "public": info.public.hex(),
            "sealed": info.sealed, "path": info.path,
            "command": list(info.command) if info.kind == "command" else None}


def _describe(info: KeyInfo) -> str:
    if info.kind == "command":
        return f"command: {shlex.join(info.command)}"
    return "sealed" if info.sealed else "unsealed"


@command.command("gen")
@click.argument("label", required=False)
@click.option("--passphrase", "seal", is_flag=True,
              help="Seal the private key with a passphrase (--passphrase-file, "
                   "VST_PASSPHRASE, or typed twice).")
@click.option("--command", "program", metavar="CMD",
              help="A command KEK: CMD (split as a shell would) holds the private key.")
@click.option("--public", metavar="HEX", help="The public key of --command's private key.")
@click.pass_obj
def gen(app: App, label: str | None, seal: bool, program: str | None,
        public: str | None) -> None:
    """Make a new key in your key folder (LABEL: default, else key-N); print its
    fingerprint."""
    from vst.porcelain.key import key_gen, parse_public

    passphrase = new_passphrase(app, "passphrase for the new key") if seal else None
    info = key_gen(app.user_keys(), label, passphrase=passphrase,
                   command=shlex.split(program) if program else (),
                   public=parse_public(public) if public is not None else None)
    if app.json:
        app.emit_json(kek_record(info))
        return
    click.echo(info.fingerprint)
    if not app.quiet:
        click.echo(f"Created key '{info.label}' ({info.kind}, {_describe(info)}) in "
                   f"'{info.path}'. New keyrings are wrapped for it; for existing ones run "
                   f"'vst key grant --key {info.label}'.", err=True)


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON records (as 'vst --json').")
@click.pass_obj
def list_(app: App, as_json: bool) -> None:
    """List your keys and, with a store at hand, its keyrings and their envelopes."""
    from vst.porcelain.key import key_list

    listing = key_list(app.user_keys(), app.maybe_store())
    for problem in listing.problems:
        app.warn(problem)
    if app.json or as_json:
        for info in listing.keys:
            app.emit_json(kek_record(info))
        for ring in listing.keyrings or ():
            app.emit_json({"type": "keyring", "name": ring.name, "id": ring.keyring_id,
                           "collections": list(ring.collections), "problem": ring.problem,
                           "envelopes": [{"kek": e.fingerprint, "kind": e.kind,
                                          "held": e.held, "label": e.label}
                                         for e in ring.envelopes]})
        return
    click.echo("Your keys:" if listing.keys else "You have no keys ('vst key gen').")
    for info in listing.keys:
        click.echo(f"  {info.label}\t{info.kind}\t{info.fingerprint}\t{_describe(info)}\t"
                   f"{info.path}")
    for ring in listing.keyrings or ():
        used = ", ".join(ring.collections) or "no collection"
        click.echo(f"keyring {ring.name} ({used})" + (f": {ring.problem}" if ring.problem
                                                      else ""))
        for env in ring.envelopes:
            mark = "*" if env.held else " "
            click.echo(f"  {mark} {env.fingerprint}\t{env.kind}"
                       + (f"\t{env.label}" if env.label else ""))


@command.command("export")
@click.argument("key", required=False)
@click.option("--paper", is_flag=True, help="A printable form, easy to type back.")
@click.pass_obj
def export(app: App, key: str | None, paper: bool) -> None:
    """Write the private key of KEY (a label or fingerprint; default: your only key, or
    'default') to stdout, unsealed. Refused to a terminal unless --paper."""
    from vst.errors import Refused
    from vst.porcelain.key import key_export

    if not paper and sys.stdout.isatty():
        raise Refused("not writing a private key to the terminal",
                      hint="redirect it ('vst key export > key.toml'), or use --paper")
    exported = key_export(app.user_keys(), key, paper=paper)
    app.warn(f"this is the SECRET private key of '{exported.info.label}' "
             f"({exported.info.fingerprint}), unsealed: whoever reads it opens every keyring "
             "it opens. Keep it offline.")
    sys.stdout.buffer.write(exported.data)


@command.command("import")
@click.argument("file", default="-")
@click.option("--label", metavar="LABEL", help="Its label (default: the one it carries).")
@click.option("--paper", is_flag=True, help="Read the paper form of 'vst key export --paper'.")
@click.option("--passphrase", "seal", is_flag=True,
              help="Seal it with a passphrase (--passphrase-file, VST_PASSPHRASE, or typed "
                   "twice).")
@click.pass_obj
def import_(app: App, file: str, label: str | None, paper: bool, seal: bool) -> None:
    """Add a private key from FILE (default: stdin): a key file, or with --paper the paper
    form; print its fingerprint."""
    from vst.errors import UsageError, from_os_error
    from vst.porcelain.key import key_import

    if file == "-":
        if sys.stdin.isatty() and not app.quiet:
            click.echo("Type or paste the key, then Ctrl-D:", err=True)
        data = sys.stdin.buffer.read(MAX_IMPORT_SIZE + 1)
    else:
        try:
            with open(file, "rb") as f:
                data = f.read(MAX_IMPORT_SIZE + 1)
        except OSError as exc:
            raise from_os_error(exc, f"cannot read '{file}'") from exc
    if len(data) > MAX_IMPORT_SIZE:
        raise UsageError(f"'{file}' is too large to be a key")
    passphrase = new_passphrase(app, "passphrase for the imported key") if seal else None
    info = key_import(app.user_keys(), data, label=label, paper=paper, passphrase=passphrase,
                      where=file)
    if app.json:
        app.emit_json(kek_record(info))
        return
    click.echo(info.fingerprint)
    if not app.quiet:
        click.echo(f"Imported key '{info.label}' ({_describe(info)}) into '{info.path}'.",
                   err=True)


@command.command("grant")
@click.argument("args", nargs=-1, metavar="[KEK_PUB] [COLLECTION]...")
@click.option("--passphrase", "recovery", is_flag=True,
              help="Add a recovery passphrase (--passphrase-file, VST_PASSPHRASE, or typed "
                   "twice).")
@click.option("--key", "label", metavar="LABEL", help="One of your keys.")
@click.pass_obj
def grant(app: App, args: tuple[str, ...], recovery: bool, label: str | None) -> None:
    """Let a KEK open the keyrings of COLLECTIONs (default: every keyring you can open):
    KEK_PUB (someone's X25519 public key, 64 hex digits), --key LABEL or --passphrase."""
    from vst.porcelain.key import grant_target, key_grant

    public = None
    if not recovery and label is None:
        if not args:
            raise click.UsageError("give KEK_PUB, --key LABEL or --passphrase")
        public, args = args[0], args[1:]
    store = app.open_store()
    passphrase = new_passphrase(app, "recovery passphrase") if recovery else None
    target = grant_target(app.user_keys(), public=public, label=label, passphrase=passphrase)
    done = key_grant(store, target, args)
    if app.json:
        app.emit_json({"type": "key_grant", "kek": done.fingerprint, "kind": done.kind,
                       "keyrings": list(done.keyrings), "unchanged": list(done.unchanged),
                       "skipped": done.skipped})
        return
    for name, why in done.skipped.items():
        app.warn(f"left out keyring '{name}': {why}")
    if app.quiet:
        return
    for name in done.keyrings + done.unchanged:
        state = "granted" if name in done.keyrings else "already granted"
        used = ", ".join(done.collections[name]) or "no collection"
        click.echo(f"{state}: {done.kind} {done.fingerprint} opens keyring '{name}' "
                   f"({used})", err=True)


@command.command("revoke")
@click.argument("kek")
@click.argument("collections", nargs=-1)
@click.option("--force", is_flag=True,
              help="Even when no envelope for a key you hold would be left.")
@click.option("--rotate", is_flag=True,
              help="Then rotate those keyrings: new data keys, everything re-encrypted.")
@click.pass_obj
def revoke(app: App, kek: str, collections: tuple[str, ...], force: bool,
           rotate: bool) -> None:
    """Remove KEK's envelopes (a label of yours, or a fingerprint or 8+ of its first hex
    digits) from the keyrings of COLLECTIONs (default: every keyring that has one)."""
    from vst.porcelain.key import key_revoke

    store = app.open_store()
    done = key_revoke(store, app.user_keys(), kek, collections, force=force)
    if app.json:
        app.emit_json({"type": "key_revoke", "kek": done.fingerprint, "label": done.label,
                       "keyrings": list(done.keyrings)})
    elif not app.quiet:
        for name in done.keyrings:
            used = ", ".join(done.collections[name]) or "no collection"
            click.echo(f"revoked: {done.fingerprint} no longer opens keyring '{name}' "
                       f"({used})", err=True)
    names = ", ".join(f"'{name}'" for name in done.keyrings)
    if rotate:
        for name in done.keyrings:
            _rotate(app, store, name, drop=[done.fingerprint])
        app.warn("revoking does not take back what this key already decrypted, nor copies "
                 "of the old packs its holder may have kept")
        return
    app.warn(f"revoking does not take back what this key already decrypted, nor the data "
             f"key of {plural(len(done.keyrings), 'keyring')} ({names}) that its holder may "
             "have kept: the data stays encrypted with that key until it is re-encrypted "
             "('vst key rotate', or 'vst key revoke --rotate')")


@command.command("rotate")
@click.argument("collections", nargs=-1, required=True)
@click.pass_obj
def rotate(app: App, collections: tuple[str, ...]) -> None:
    """Give the keyrings of COLLECTIONs new data keys and re-encrypt what they hold (the
    cost of those collections' data, not the store's). Ids and history stay the same."""
    store = app.open_store()
    names: list[str] = []
    for collection in collections:
        keyring = store.collection_keyring(collection)
        if keyring is None:
            from vst.errors import UsageError

            raise UsageError(f"collection '{collection}' is not encrypted")
        if keyring not in names:
            names.append(keyring)
    for name in names:
        _rotate(app, store, name, drop=[])


def _rotate(app: App, store: Any, name: str, *, drop: list[str]) -> None:
    from vst.porcelain.rotate import rotate_keyring

    file = store.keyrings.read(name)
    passphrase = app._passphrase("recovery passphrase of keyring " + repr(name) + " (to keep "
                                 "it; empty: drop it)") \
        if any(e.kind == "passphrase" and e.kek_fingerprint not in drop
               for e in file.envelopes) else None
    progress = app.progress("Re-encrypting")
    try:
        done = rotate_keyring(store, name, drop=drop, passphrase=passphrase,
                              on_bytes=progress.add)
    finally:
        progress.close()
    if app.json:
        app.emit_json({"type": "key_rotate", "old": done.old, "new": done.new,
                       "collections": done.collections, "packs": done.packs,
                       "objects": done.objects, "bytes": done.bytes,
                       "granted": done.granted, "lost": done.lost,
                       "kept_old_packs": done.kept_old_packs})
        return
    if not app.quiet:
        click.echo(f"rotated keyring '{done.old}' to '{done.new}' "
                   f"({', '.join(done.collections) or 'no collection'}): re-encrypted "
                   f"{plural(done.objects, 'object')} from {plural(done.packs, 'pack')}; "
                   f"it opens with {', '.join(done.granted)}", err=True)
    for fingerprint in done.lost:
        app.warn(f"the new keyring has no envelope for {fingerprint}: grant it again "
                 "('vst key grant') if it should still open it")
    if done.kept_old_packs:
        app.warn("the store is append-only: the old packs stay (readable with the old key)")
