"""Running the real CLI entry point in-process, for tests that check output and exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from click.testing import CliRunner

from vst.cli import main

if TYPE_CHECKING:
    from vst.store import Store
    from vst.userkeys import UserKeys


@dataclass
class Ran:
    code: int
    out: bytes
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def vst_run(*args: str, input: bytes | None = None,
            env: Mapping[str, str | None] | None = None) -> Ran:
    """Run ``vst.cli.main`` in-process with click's CliRunner isolation (main() always
    calls sys.exit); the working directory is restored afterwards (``-C`` changes it)."""
    cwd = os.getcwd()
    code: int | str | None = None
    with CliRunner().isolation(input=input, env={"VST_STORE": None, **(env or {})}) as streams:
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = streams[0].getvalue(), streams[1].getvalue()
    os.chdir(cwd)
    assert isinstance(code, int), f"main() exited with {code!r}"
    return Ran(code, out, err.decode())


def user_keys() -> UserKeys:
    """The keys of the user the environment describes (XDG_CONFIG_HOME), as the CLI finds
    them: what tests hand to stores they open themselves."""
    from vst.cli.app import user_dir
    from vst.userkeys import UserKeys

    return UserKeys(os.path.join(user_dir("config"), "keys"))


def open_keyed(path: str) -> Store:
    """``Store.open(path)`` as the CLI opens it: with the user's keys (to read encrypted
    collections) and what this user's client remembers of the store."""
    from vst.cli.app import App
    from vst.store import Store

    return App(None).attach(Store.open(path))
