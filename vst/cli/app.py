"""What every command shares: global options, opening the store, messages and progress."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from vst.errors import NotAStore
from vst.store import Store

if TYPE_CHECKING:
    from vst.objects.commit import Signature


class App:
    """The global options, and the store opened once for the command."""

    def __init__(self, store_url: str | None, quiet: bool = False, json: bool = False,
                 debug: bool = False) -> None:
        self.store_url = store_url
        self.quiet = quiet
        self.json = json
        self.debug = debug
        self._store: Store | None = None

    def store_path(self) -> str:
        if self.store_url:
            if "://" in self.store_url and not self.store_url.startswith("file://"):
                raise NotAStore(f"unsupported store URL '{self.store_url}'",
                                hint="this version of vst reaches local stores only")
            return self.store_url.removeprefix("file://")
        if os.path.isfile("config.toml") and os.path.isdir("refs"):
            return "."
        raise NotAStore("no store given",
                        hint="pass --store PATH, set VST_STORE, or run inside a store")

    def open_store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.store_path(), warn=self.warn)
            click.get_current_context().call_on_close(self._store.close)
        return self._store

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

    def identity(self, role: str, store: Store | None = None) -> Signature:
        """Author or committer from VST_<ROLE>_NAME/EMAIL/DATE, then the store's [user]
        table, then the login name and host name."""
        import socket

        from vst.plumbing.ident import signature

        user = store.config.get("user") if store else None
        if not isinstance(user, dict):
            user = {}
        name = os.environ.get(f"VST_{role}_NAME") or user.get("name") or _login()
        email = os.environ.get(f"VST_{role}_EMAIL") or user.get("email") or \
            f"{_login()}@{socket.gethostname()}"
        return signature(str(name), str(email), os.environ.get(f"VST_{role}_DATE"))

    def progress(self, label: str, total: int | None = None) -> Progress:
        return Progress(label, total, enabled=not self.quiet and not self.json
                        and sys.stderr.isatty())


def tune_allocator() -> None:
    """Keep glibc from returning every large buffer to the kernel as soon as it is freed.

    Ingest allocates and frees megabytes per chunk (read, sealed record, pack). With
    glibc's default dynamic mmap threshold many of these come from fresh mmap()s, and each
    page is faulted in and zeroed again: on the 1 GiB benchmark that was 124,000 page
    faults and 4.8 s of system time out of 5.4 s. Serving them from the heap and trimming
    it lazily cut it to 40,000 faults and 1.8 s. A no-op where glibc is not the allocator.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    mallopt(m_trim_threshold, 64 * 1024 * 1024)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Progress:
    """A one-line byte counter with throughput on stderr; silent unless on a terminal."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.start = time.monotonic()
        self._shown = 0.0

    def add(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.1:
            self._shown = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed / 1e6
        text = f"{self.label}: {self.done / 1e6:,.1f} MB"
        if self.total:
            percent = 100 * self.done / self.total
            eta = (self.total - self.done) / max(self.done / elapsed, 1)
            text += f" of {self.total / 1e6:,.1f} MB ({percent:.0f}%, ETA {eta:.0f}s)"
        sys.stderr.write(f"\r{text}, {rate:,.1f} MB/s\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._shown:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
