"""The working copy's hooks as the porcelain runs them: pre-hooks that may refuse, post-hooks
whose failure is only a warning, and ``commit-msg``, which may edit the message."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vst.hooks import run_hook, run_pre_hook

Show = Callable[[str], None]


@dataclass
class Hooks:
    """``directory`` None runs no hook (a restore outside any working copy, tests)."""

    directory: str | None = None
    message_file: str | None = None  # where commit-msg finds the message (.vst/COMMIT_EDITMSG)
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    show: Show = lambda _: None  # hook output, for the user's terminal
    warn: Show = lambda _: None

    def pre(self, name: str, args: Sequence[str] = (), stdin: bytes | None = None) -> None:
        """Run a pre-hook; HookRejected (exit 19) when it exits non-zero."""
        output = run_pre_hook(self.directory, name, args, stdin=stdin, env=self.env,
                              cwd=self.cwd, warn=self.warn)
        if output:
            self.show(output)

    def post(self, name: str, args: Sequence[str] = (), stdin: bytes | None = None) -> None:
        result = run_hook(self.directory, name, args, stdin=stdin, env=self.env, cwd=self.cwd,
                          warn=self.warn)
        if result.output:
            self.show(result.output)
        if result.ran and result.code != 0:
            self.warn(f"the {name} hook exited with status {result.code}")

    def edit_message(self, name: str, message: bytes) -> bytes:
        """Run ``commit-msg`` on a file holding ``message``; the hook may rewrite it."""
        if self.directory is None or self.message_file is None \
                or not os.access(os.path.join(self.directory, name), os.X_OK):
            return message
        path = self.message_file
        with open(path, "wb") as f:
            f.write(message)
        self.pre(name, [path])
        with open(path, "rb") as f:
            return f.read()
