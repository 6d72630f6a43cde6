"""What every command shares: global options, opening the store, messages and progress."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import click

from vst.errors import NotAStore, UsageError
from vst.store import Store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vst.config import ConfigLayers
    from vst.objects.commit import Signature
    from vst.objects.oid import Oid
    from vst.plumbing.diff_tree import Change
    from vst.porcelain.hooks import Hooks
    from vst.userkeys import UserKeys
    from vst.workdir import WorkingCopy


class App:
    """The global options, and the store opened once for the command."""

    def __init__(self, store_url: str | None, quiet: bool = False, json: bool = False,
                 debug: bool = False, passphrase_file: str | None = None) -> None:
        self.store_url = store_url
        self.quiet = quiet
        self.json = json
        self.debug = debug
        self.passphrase_file = passphrase_file
        self._keys: UserKeys | None = None
        self._store: Store | None = None
        self._copy: WorkingCopy | Literal[False] | None = False

    def store_path(self) -> str:
        """The store: --store (or VST_STORE), else the working copy's, else the current
        directory if it is a store, else the user's own store if it exists. A local path,
        or an SSH address as given."""
        from vst.ssh.url import is_ssh

        url = self.store_url
        copy = self.working_copy()
        if copy is not None:
            if url and _same_store(url, copy.store_url):
                url = copy.store_url
            elif url:
                from vst.errors import UsageError

                raise UsageError(f"this working copy belongs to the store '{copy.store_url}', "
                                 f"not '{url}'",
                                 hint="run the command outside the working copy, or unset "
                                      "VST_STORE")
            else:
                url = copy.store_url
        if url:
            if is_ssh(url):
                return url
            if "://" in url and not url.startswith("file://"):
                raise NotAStore(f"unsupported store URL '{url}'",
                                hint="a store is a local path, file://PATH, "
                                     "ssh://[USER@]HOST[:PORT]/PATH or [USER@]HOST:PATH")
            return url.removeprefix("file://")
        if os.path.isfile("config.toml") and os.path.isdir("refs"):
            return "."
        own = self.default_store_path()
        if is_ssh(own) or os.path.isfile(os.path.join(own, "config.toml")):
            return own
        raise NotAStore("no store given, and you have no store of your own yet",
                        hint="'vst init' creates one; or pass --store PATH or set VST_STORE")

    def default_store_path(self) -> str:
        """The user's own store, for commands that may create one (init): --store, else
        the global config's core.store, else ``<user data dir>/store``."""
        if self.store_url:
            return self.store_url
        from vst.config import ConfigLayers

        # The global layer only: the store layer would need the store being looked for.
        own = ConfigLayers(os.path.join(user_dir("config"), "config.toml"), None, None)
        configured = own.get("core.store")
        if isinstance(configured, str) and configured:
            return os.path.expanduser(configured)
        return os.path.join(user_dir("data"), "store")

    def working_copy(self) -> WorkingCopy | None:
        """The working copy holding the current directory, if any (looked up once)."""
        if self._copy is False:
            from vst.workdir import WorkingCopy

            self._copy = WorkingCopy.find(os.getcwd())
        assert self._copy is not False
        return self._copy

    def use_working_copy(self, copy: WorkingCopy) -> None:
        """Act for ``copy`` (named on the command line) rather than the one around us."""
        self._copy = copy

    def require_working_copy(self) -> WorkingCopy:
        copy = self.working_copy()
        if copy is None:
            from vst.errors import NotAWorkingCopy

            raise NotAWorkingCopy("not a working copy (no .vst/ here or in any parent folder)",
                                  hint="clone a collection with 'vst clone NAME', or make "
                                       "this folder one with 'vst init'")
        return copy

    def head(self) -> tuple[str, Oid | None] | None:
        copy = self.working_copy()
        return (copy.collection, copy.base()) if copy else None

    def tree_paths(self, paths: Sequence[str]) -> list[bytes]:
        """PATH arguments as paths in a tree: in a working copy relative to the current
        folder (as in git), elsewhere as given."""
        copy = self.working_copy()
        if copy is None:
            return [os.fsencode(p) for p in paths]
        from vst.porcelain.status import relative_paths

        return relative_paths(copy, paths)

    def resolve_rev(self, rev: str) -> Oid:
        """A revision, with HEAD meaning the working copy's base commit."""
        from vst.plumbing.rev_parse import rev_parse

        return rev_parse(self.open_store(), rev, self.head())

    def default_rev(self) -> Oid:
        """HEAD: the working copy's base commit (for log, show and diff without REV)."""
        self.require_working_copy()
        return self.resolve_rev("HEAD")

    def hooks(self, copy: WorkingCopy) -> Hooks:
        """The working copy's hooks (config core.hooksPath, else .vst/hooks)."""
        from vst.porcelain.hooks import Hooks

        directory = self.config(self.maybe_store(), copy).get("core.hooksPath")
        if isinstance(directory, str) and directory:
            directory = os.path.join(copy.root, os.path.expanduser(directory))
        else:
            directory = copy.hooks_dir
        env = {"VST_STORE": self.store_path(), "VST_COLLECTION": copy.collection,
               "VST_WORK_TREE": copy.root}
        return Hooks(directory, os.path.join(copy.state, "COMMIT_EDITMSG"), env, copy.root,
                     show=lambda text: click.echo(text.rstrip("\n"), err=True), warn=self.warn)

    def working_copy_changes(self, base: Oid | None, paths: list[bytes]) -> tuple[
            list[Change], Callable[[Change], bytes]]:
        """For ``vst diff``: the changes from commit ``base`` (None: HEAD) to the working
        copy's files, and a loader of the working copy's side."""
        from vst.porcelain.status import working_diff

        copy = self.require_working_copy()
        return working_diff(self.open_store(), copy, base if base else copy.base(), paths,
                            warn=self.warn)

    def round_trips(self) -> dict[str, int]:
        """For --json: the requests sent to the store so far, when it is reached over SSH
        (``{"round_trips": N}``), else nothing."""
        connection = getattr(self._store, "connection", None) if self._store else None
        return {"round_trips": connection.requests} if connection is not None else {}

    def store_location(self) -> str:
        """``store_path`` as a working copy records it: absolute, or an SSH address."""
        from vst.ssh.url import is_ssh, parse

        path = self.store_path()
        return parse(path).url if is_ssh(path) else os.path.abspath(path)

    def open_store(self) -> Store:
        if self._store is None:
            self._store = self.open_store_at(self.store_path())
            click.get_current_context().call_on_close(self._store.close)
        return self._store

    def open_store_at(self, location: str) -> Store:
        """The store at ``location`` (a path or an SSH address), given your keys; the
        caller closes it."""
        from vst.ssh.url import is_ssh

        if not is_ssh(location):
            return self.attach(Store.open(location.removeprefix("file://"), warn=self.warn))
        from vst.ssh.client import RemoteStore
        from vst.ssh.url import parse, ssh_command

        address = parse(location)
        own = self.config(store=None, copy=None, with_store=False)
        remote_vst = os.environ.get("VST_REMOTE_VST") or own.get("core.remoteVst") or "vst"
        remote = RemoteStore.connect(address, ssh_command(own.get("core.sshCommand")),
                                     str(remote_vst), self.warn)
        return self.attach(remote)  # type: ignore[arg-type]

    def attach(self, store: Store) -> Store:
        """Give ``store`` your keys and what this client remembers of it (vst/known.py)."""
        from blake3 import blake3

        from vst.known import KnownState

        store.keyrings.source = self.user_keys()
        location = store.path if "://" in store.path else os.path.realpath(store.path)
        name = blake3(location.encode()).hexdigest()[:32]
        store.known = KnownState(os.path.join(user_dir("state"), "known", f"{name}.toml"),
                                 store.store_id, location, warn=self.warn)
        return store

    def user_keys(self) -> UserKeys:
        """Your keys: the files in <config dir>/keys, $VST_KEY_FILE, and a passphrase from
        --passphrase-file, $VST_PASSPHRASE or the terminal, asked only when needed."""
        if self._keys is None:
            from vst.userkeys import UserKeys

            self._keys = UserKeys(os.path.join(user_dir("config"), "keys"),
                                  key_file=os.environ.get("VST_KEY_FILE") or None,
                                  passphrase=self._passphrase)
        return self._keys

    def _passphrase(self, why: str) -> bytes | None:
        if self.passphrase_file:
            try:
                with open(self.passphrase_file, "rb") as f:
                    return f.read().rstrip(b"\r\n") or None
            except OSError as exc:
                from vst.errors import from_os_error

                raise from_os_error(exc, f"cannot read '{self.passphrase_file}'") from exc
        given = os.environ.get("VST_PASSPHRASE")
        if given:
            return given.encode()
        if sys.stdin.isatty() and sys.stderr.isatty():
            import getpass

            try:
                typed = getpass.getpass(f"{why}: ", stream=sys.stderr)
            except EOFError:
                return None
            return typed.encode() or None
        return None

    def announce_new_key(self) -> None:
        """Once, when a command made your first key: where it is and how to keep a way in
        if this machine is lost."""
        created = self._keys.created if self._keys is not None else None
        if created is None or self.quiet:
            return
        click.echo(f"vst: created your key {created.fingerprint} in '{created.path}'. "
                   "Without it your encrypted collections cannot be read: add a recovery "
                   "passphrase with 'vst key grant --passphrase', or keep a copy with "
                   "'vst key export --paper'.", err=True)

    def maybe_store(self) -> Store | None:
        try:
            return self.open_store()
        except NotAStore:
            return None

    def warn(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"vst: warning: {message}", err=True)

    def emit_id(self, oid: object, kind: str, **extra: object) -> None:
        """An id on stdout: the bare id, or under --json an "object" record."""
        if self.json:
            self.emit_json({"type": "object", "id": str(oid), "kind": kind, **extra})
        else:
            click.echo(str(oid))

    def emit_json(self, record: dict[str, Any]) -> None:
        import json

        click.echo(json.dumps(record, sort_keys=False))

    def config(self, store: Store | None = None, copy: WorkingCopy | None = None, *,
               with_store: bool = True) -> ConfigLayers:
        """The layered config (vst/config.py): global (``user_dir("config")``, so
        $XDG_CONFIG_HOME), the store's (``store``, else the command's store if there is one
        and ``with_store``; a store reached over SSH has no layer here) and the working
        copy's (``copy``, else the one around the current directory)."""
        from vst.config import ConfigLayers, find_working_copy

        work_tree = copy.root if copy is not None else find_working_copy(os.getcwd())
        if store is None and with_store:
            store = self.maybe_store()
        return ConfigLayers(os.path.join(user_dir("config"), "config.toml"),
                            None, work_tree and os.path.join(work_tree, ".vst", "config.toml"),
                            store=store if isinstance(store, Store) else None)

    def identity(self, role: str, store: Store | None = None) -> Signature:
        """Author or committer from VST_<ROLE>_NAME/EMAIL/DATE, then config user.name and
        user.email (local, store, global), then the login name and host name."""
        from vst.plumbing.ident import signature

        config = self.config(store)
        name = os.environ.get(f"VST_{role}_NAME") or config.get("user.name") or _login()
        email = os.environ.get(f"VST_{role}_EMAIL") or config.get("user.email") or \
            f"{_login()}@{_hostname()}"
        return signature(str(name), str(email), os.environ.get(f"VST_{role}_DATE"))

    def progress(self, label: str, total: int | None = None) -> Progress:
        """Progress for a long command: a bar on a terminal, JSON lines under --json (after
        the first second), nothing on a pipe or with -q."""
        return Progress(label, total, enabled=not self.quiet and not self.json
                        and sys.stderr.isatty(), json=self.json and not self.quiet)


_XDG_HOMES = {"config": ("XDG_CONFIG_HOME", ".config"), "data": ("XDG_DATA_HOME", ".local/share"),
              "state": ("XDG_STATE_HOME", ".local/state")}


def user_dir(kind: Literal["config", "data", "state"]) -> str:
    """vst's folder in your config, data or state directory: the XDG base directories (an
    absolute ``$XDG_CONFIG_HOME``, else ``~/.config``, ...), as platformdirs gives them on
    Linux and the BSDs; platformdirs itself on macOS and Windows. Not platformdirs
    everywhere: its imports cost every command 18 ms of a cold start."""
    if sys.platform in ("darwin", "win32"):
        import platformdirs

        return str(getattr(platformdirs, f"user_{kind}_dir")("vst"))
    variable, default = _XDG_HOMES[kind]
    base = os.environ.get(variable, "")
    if not os.path.isabs(base):
        base = os.path.join(_home(), default)
    return os.path.join(base, "vst")


def _home() -> str:
    """$HOME if it is an absolute path, else the account's home (as platformdirs does: an
    empty or relative $HOME would put vst's folders under the current one)."""
    home = os.environ.get("HOME", "")
    if os.path.isabs(home):
        return home
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):
        home = ""
    if not os.path.isabs(home):
        raise UsageError("cannot find your home directory",
                         hint="set HOME, or XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_STATE_HOME")
    return home


def store_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--store URL`` after the command name too (``vst clone --store URL NAME``), as the
    commands that often name a store take it; it means what the global option means."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            app = ctx.find_object(App)
            assert app is not None
            app.store_url = value

    return click.option("--store", "store_url", metavar="URL", expose_value=False,
                        callback=remember, is_eager=True,
                        help="The store (the same as 'vst --store URL ...').")(command)


def tune_allocator() -> None:
    """Keep glibc from returning every large buffer to the kernel as soon as it is freed.

    Ingest allocates and frees megabytes per chunk (read, sealed record, pack). With
    glibc's default dynamic mmap threshold many of these come from fresh mmap()s, and each
    page is faulted in and zeroed again: on the 1 GiB benchmark that was 124,000 page
    faults and 4.8 s of system time out of 5.4 s. Serving them from the heap and trimming
    it lazily cut it to 40,000 faults and 1.8 s.

    And at most two arenas, whatever the threads: each thread that allocated while
    another held the lock got an arena of its own, and kept the freed buffers of its
    chunks and records there. The commit of 50,000 files peaked at 87.2 MiB instead of
    90.7 (3 runs each), as fast; the 512 MiB text and the 1 GiB file took as long, at the
    same peak. A no-op where glibc is not the allocator.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    mallopt(m_trim_threshold, 64 * 1024 * 1024)
    mallopt(m_arena_max, 2)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _hostname() -> str:
    import socket  # only here: 5 ms of a cold start for commits that name their author

    return socket.gethostname()


class Progress:
    """Progress on stderr: a bar with throughput and ETA on a terminal, or (``json``) a
    ``{"type": "progress", ...}`` line a second; nothing otherwise. ``add`` may be called from
    any thread."""

    WIDTH = 24

    def __init__(self, label: str, total: int | None, enabled: bool, json: bool = False) -> None:
        import threading

        self.label = label
        self.total = total
        self.enabled = enabled
        self.json = json
        self.done = 0
        self.start = time.monotonic()
        self._shown = 0.0
        self._interval = 1.0 if json else 0.1
        self._lock = threading.Lock()

    @property
    def wanted(self) -> bool:
        """Whether anything is shown: a caller may skip work done only for progress."""
        return self.enabled or self.json

    def set_total(self, total: int) -> None:
        self.total = total

    def add(self, amount: int) -> None:
        if not (self.enabled or self.json):
            return  # called once per file: nothing to count for nobody
        with self._lock:
            self.done += amount
            now = time.monotonic()
            if (self.enabled or self.json) and now - self._shown >= self._interval:
                if not self._shown and self.json and now - self.start < self._interval:
                    return  # short commands print no progress at all
                self._shown = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if self.total and rate > 0 else None
        if self.json:
            import json

            record = {"type": "progress", "label": self.label, "bytes_done": self.done,
                      "bytes_total": self.total, "seconds": round(elapsed, 3),
                      "eta_seconds": round(eta, 1) if eta is not None else None}
            sys.stderr.write(json.dumps(record) + "\n")
            sys.stderr.flush()
            return
        text = f"{self.label}: "
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * self.WIDTH)
            text += (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * fraction:3.0f}% "
                     f"{self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB")
        else:
            text += f"{self.done / 1e6:,.1f} MB"
        text += f", {rate / 1e6:,.1f} MB/s"
        if eta is not None:
            text += f", ETA {_duration(eta)}"
        sys.stderr.write(f"\r{text}\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self._draw(time.monotonic())
                if not self.json:
                    sys.stderr.write("\n")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _same_store(a: str, b: str) -> bool:
    def canonical(url: str) -> str:
        from vst.ssh.url import is_ssh, parse

        if is_ssh(url):
            return parse(url).url
        return os.path.realpath(url.removeprefix("file://")) if "://" not in url or \
            url.startswith("file://") else url

    return canonical(a) == canonical(b)


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:,.1f} {unit}"


def plural(count: int, word: str) -> str:
    """plural(1, 'file') -> '1 file'; plural(2, 'file') -> '2 files'."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
