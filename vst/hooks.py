"""git-style hooks: executables in a hooks folder that vst runs at fixed points.

Working-copy hooks live in ``<working copy>/.vst/hooks/`` (or config ``core.hooksPath``);
store hooks in ``<store>/hooks/``. Every hook, its arguments, stdin and environment are
documented in docs/hooks.md. A hook that is missing is not run; one that is not executable
is not run either, with a warning (as git does).

A hook's stdout and stderr are captured together and returned, so that the CLI shows them
on the user's stderr; stdout of vst itself stays for results. A pre-hook (``run_pre_hook``)
that fails raises HookRejected carrying that output.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vst.errors import HookRejected

WORKING_COPY_HOOKS = ("pre-commit", "commit-msg", "post-commit", "post-checkout", "pre-drop")
STORE_HOOKS = ("pre-receive", "post-receive")

Warn = Callable[[str], None]


@dataclass(frozen=True)
class HookResult:
    """What running a hook gave. ``code`` is the exit status; 128+N when the hook was killed
    by signal N (as shells report it); 126 when it could not be executed. ``problem`` says
    why it failed, as the end of a sentence ("exited with status 1"), None if it did not."""

    ran: bool
    code: int = 0
    output: str = ""
    problem: str | None = None


NOT_RUN = HookResult(ran=False)


def run_hook(hooks_dir: str | None, name: str, args: Sequence[str] = (),
             stdin: bytes | None = None, env: Mapping[str, str] | None = None,
             cwd: str | None = None, *, warn: Warn | None = None) -> HookResult:
    """Run ``hooks_dir/name`` with ``args`` if it exists and is executable.

    ``stdin``: the bytes fed to the hook (None: /dev/null). ``env``: variables added to the
    environment vst runs in (VST_STORE, VST_COLLECTION, VST_WORK_TREE where known).
    ``cwd``: where it runs. A hook that fails is not an exception here: see ``problem``.
    """
    if hooks_dir is None:
        return NOT_RUN
    path = os.path.join(hooks_dir, name)
    if not os.path.isfile(path):  # follows symlinks: a linked hook is fine, as in git
        return NOT_RUN
    if not os.access(path, os.X_OK):
        if warn is not None:
            warn(f"the '{path}' hook was ignored because it is not set as executable "
                 f"(chmod +x it to run it)")
        return NOT_RUN
    import subprocess

    # The hook inherits vst's environment (it may call vst itself, with VST_STORE...);
    # passing it through is not configuring vst from it.
    child_env = {**os.environ, **env} if env else None
    try:
        done = subprocess.run([path, *args], input=stdin,
                              stdin=subprocess.DEVNULL if stdin is None else None,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
                              env=child_env, check=False)
    except OSError as exc:
        return HookResult(True, 126, "", f"could not be run: {_exec_problem(path, cwd, exc)}")
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode < 0:
        number = -done.returncode
        return HookResult(True, 128 + number, output,
                          f"was killed by signal {number} ({_signal_name(number)})")
    if done.returncode:
        return HookResult(True, done.returncode, output,
                          f"exited with status {done.returncode}")
    return HookResult(True, 0, output)


def run_pre_hook(hooks_dir: str | None, name: str, args: Sequence[str] = (),
                 stdin: bytes | None = None, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, *, warn: Warn | None = None) -> str:
    """``run_hook`` for a hook that may veto: a failure raises HookRejected (exit 19), with
    the hook's output as the hint. Returns the hook's output to show ("" if it did not run)."""
    result = run_hook(hooks_dir, name, args, stdin, env, cwd, warn=warn)
    if result.problem is not None:
        hint = result.output.rstrip() or None
        if result.code == 126 and hint is None:
            hint = f"check '{os.path.join(hooks_dir or '', name)}'"
        raise HookRejected(f"rejected by the '{name}' hook: it {result.problem}", hint=hint)
    return result.output


def working_copy_hooks_dir(work_tree: str, hooks_path: object = None,
                           home: str | None = None) -> str:
    """Where the hooks of the working copy at ``work_tree`` live: config ``core.hooksPath``
    when set (absolute; ``~/...`` when ``home`` is given; else relative to the working copy
    root, as git takes it), else ``<work_tree>/.vst/hooks``."""
    if not isinstance(hooks_path, str) or not hooks_path:
        return os.path.join(work_tree, ".vst", "hooks")
    if home is not None and (hooks_path == "~" or hooks_path.startswith("~/")):
        hooks_path = home + hooks_path[1:]
    return os.path.join(work_tree, hooks_path)  # an absolute hooks_path wins in join


def _exec_problem(path: str, cwd: str | None, exc: OSError) -> str:
    """Why exec() failed, in words that point at the fix."""
    if exc.errno == errno.ENOEXEC:
        return "it is not a program its system can start (does it begin with a '#!' line?)"
    if exc.errno == errno.ENOENT and exc.filename != cwd:
        # The hook exists (checked above), so the missing file is its '#!' interpreter.
        interpreter = _interpreter(path)
        if interpreter:
            return f"its interpreter '{interpreter}' was not found (see its '#!' line)"
    return exc.strerror or str(exc)


def _interpreter(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split()
    return words[0].decode("utf-8", "replace") if words else None


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"
