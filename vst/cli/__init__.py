"""The command line: a click group that loads each command's module only when it runs, the
global options, and the one place where exceptions become messages and exit codes."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import click

from vst import __version__
from vst.errors import VstError

# name -> (module under vst.cli, section, one-line help). Kept here, not in the modules,
# so that `vst --help` imports nothing else.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("init", "porcelain", "Make a folder the working copy of a new collection"),
    "clone": ("clone", "porcelain", "Restore a collection into a new working copy"),
    "status": ("status", "porcelain", "Show what changed since the base commit"),
    "commit": ("commit", "porcelain", "Snapshot the working copy as a new commit"),
    "log": ("log", "porcelain", "Show commit history"),
    "show": ("show", "porcelain", "Show a commit with its patch, a tree or a file"),
    "diff": ("diff", "porcelain", "Show changes between revisions or the working copy"),
    "restore": ("restore", "porcelain", "Bring files back from any commit"),
    "pull": ("pull", "porcelain", "Bring the working copy to the collection's head"),
    "drop": ("drop", "porcelain", "Remove a working copy when nothing would be lost"),
    "store": ("store", "porcelain", "Create a store; show and set its settings"),
    "collection": ("collection", "porcelain", "Create and list collections, set their policy"),
    "volume": ("volume", "porcelain", "Add, list, validate and remove volumes"),
    "key": ("key", "porcelain", "Make, list, export, import, grant, revoke and rotate keys"),
    "policy": ("policy", "porcelain", "Set, list and remove replication policies"),
    "replicate": ("replicate", "porcelain", "Bring every pack to its policy's copies"),
    "config": ("config", "porcelain", "Get and set options (global, store, working copy)"),
    "index": ("index", "porcelain", "Maintain the object index cache"),
    "scrub": ("scrub", "porcelain", "Verify every pack on the volumes, without keys"),
    "repair": ("repair", "porcelain", "Rewrite bad or missing pack copies from verified ones"),
    "recover": ("recover", "porcelain", "Rebuild a lost store from one of its volumes"),
    "serve": ("serve", "porcelain", "Serve a store to vst clients over ssh"),
    "hash-object": ("hash_object", "plumbing", "Compute a file's object id, optionally store it"),
    "cat-file": ("cat_file", "plumbing", "Show an object's type, size or content"),
    "ls-tree": ("ls_tree", "plumbing", "List the contents of a tree"),
    "mktree": ("mktree", "plumbing", "Build a tree object from ls-tree records"),
    "write-tree": ("write_tree", "plumbing", "Store a directory and print its tree id"),
    "commit-tree": ("commit_tree", "plumbing", "Create a commit object"),
    "update-ref": ("update_ref", "plumbing", "Move a collection's head (compare-and-swap)"),
    "show-ref": ("show_ref", "plumbing", "List collection heads"),
    "rev-parse": ("rev_parse", "plumbing", "Resolve a revision to an object id"),
    "push-blob": ("push_blob", "plumbing", "Copy objects to another store"),
    "verify-pack": ("verify_pack", "plumbing", "Check a pack byte by byte"),
    "count-objects": ("count_objects", "plumbing", "Count objects and packs"),
    "fsck": ("fsck", "plumbing", "Check connectivity and integrity of the store"),
}
SECTIONS = (("porcelain", "Commands"), ("plumbing", "Plumbing commands"))


class _NeverRaised(click.UsageError):
    pass


# click >= 8.2 raises this for a group run without a subcommand; older versions print help.
_NoArgsIsHelp: type[click.UsageError] = getattr(click.exceptions, "NoArgsIsHelpError",
                                               _NeverRaised)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        spec = COMMANDS.get(name)
        if spec is None:
            return None
        import importlib

        module = importlib.import_module(f"vst.cli.{spec[0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for section, title in SECTIONS:
            rows = [(name, help_) for name, (_, sec, help_) in COMMANDS.items() if sec == section]
            with formatter.section(title):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vst", message="%(prog)s %(version)s")
@click.option("-C", "directory", metavar="DIR", help="Run as if started in DIR.")
@click.option("--store", "store_url", metavar="URL", envvar="VST_STORE",
              help="The store to use (default: $VST_STORE, the working copy's, the current "
                   "directory, or your own).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors and results.")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.option("--passphrase-file", metavar="FILE",
              help="Read the passphrase of your key (or a recovery passphrase) from FILE "
                   "(default: $VST_PASSPHRASE, else asked on the terminal).")
@click.pass_context
def cli(ctx: click.Context, directory: str | None, store_url: str | None, quiet: bool,
        json_output: bool, debug: bool, passphrase_file: str | None) -> None:
    """vst: versioned, deduplicated storage for all of your data."""
    from vst.cli.app import App

    if directory:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise click.UsageError(f"cannot change to '{directory}': {exc.strerror}") from None
    ctx.obj = App(store_url=store_url, quiet=quiet, json=json_output, debug=debug,
                  passphrase_file=passphrase_file)


def _quiet_thread_error(args: threading.ExceptHookArgs) -> None:
    """A helper thread's uncaught error (the process pool's manager thread when a worker
    is killed, say) becomes one line; the command itself still reports the failure."""
    name = args.thread.name if args.thread else "a thread"
    sys.stderr.write(f"vst: warning: {name}: {args.exc_type.__name__}: {args.exc_value}\n")


def _traceback() -> None:
    import traceback

    traceback.print_exc()


def _report(message: str, hint: str | None, code: int, as_json: bool) -> None:
    lines = [f"vst: error: {message}"]
    if hint:
        lines.append(f"hint: {hint}")
    if as_json:
        import json

        lines.append(json.dumps({"type": "error", "code": code, "message": message,
                                 **({"hint": hint} if hint else {})}))
    sys.stderr.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group and map every outcome to an exit code."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    debug = "--debug" in args
    previous_hook = threading.excepthook
    if not debug:
        threading.excepthook = _quiet_thread_error
    code = 0
    try:
        # make_context + invoke rather than cli.main(): click's main() turns a broken pipe
        # into exit 1 and prints a blank line on Ctrl-C; here every outcome reaches the
        # handlers below.
        with cli.make_context("vst", list(args)) as ctx:
            result: Any = cli.invoke(ctx)
        code = result if isinstance(result, int) else 0
    except VstError as exc:
        if debug:
            _traceback()
        _report(exc.message, exc.hint, exc.exit_code, as_json)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        _report("interrupted", None, 130, as_json)
        code = 130
    except _NoArgsIsHelp as exc:  # a group run without a subcommand (`vst index`)
        command = exc.ctx.command_path if exc.ctx else "vst"
        _report("missing command", f"see '{command} --help'", 2, as_json)
        code = 2
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "vst"
        _report(exc.format_message(), f"see '{command} --help'", 2, as_json)
        code = 2
    except click.ClickException as exc:
        _report(exc.format_message(), None, exc.exit_code, as_json)
        code = exc.exit_code
    except KeyboardInterrupt:
        _report("interrupted", None, 130, as_json)
        code = 130
    except BrokenPipeError:
        code = _broken_pipe()
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if debug:
            _traceback()
        _report(f"internal error: {type(exc).__name__}: {exc}",
                "rerun with --debug and report it", 70, as_json)
        code = 70
    threading.excepthook = previous_hook
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _broken_pipe()
    sys.exit(code)


def _broken_pipe() -> int:
    # The reader went away (`vst ... | head`): exit quietly with 128 + SIGPIPE, and point
    # stdout at /dev/null so the interpreter's final flush does not complain again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
