"""Layered configuration: three TOML files, the most specific one wins.

    global   <user config dir>/vst/config.toml   (the CLI passes
                                                  vst.cli.app.user_dir("config"))
    store    <store>/config.toml                 only its user-level sections
                                                  (Store.USER_SECTIONS)
    local    <working copy>/.vst/config.toml

Keys are git-like ``section.name`` (case-sensitive parts of ``[A-Za-z0-9_-]``; more dots
for nested sections), stored as TOML tables: ``user.name`` is ``name`` in ``[user]``. See
docs/format.md ("config files") and docs/cli/vst-config.md.

Nothing here reads the environment: the CLI finds the paths and hands them in.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from vst.errors import (
    CorruptConfig,
    Locked,
    NotAStore,
    NotAWorkingCopy,
    UsageError,
    from_os_error,
)
from vst.fsio import DEFAULT_FS, FileSystem, flock_within

if TYPE_CHECKING:
    from vst.store import Store

LAYERS = ("global", "store", "local")  # least specific first
# Sections that describe a store's format: refused in every layer, not only the store's,
# since a value there could only mislead (the store reads its own config.toml alone).
FORMAT_SECTIONS = frozenset({"store", "chunking", "pack", "volumes"})
KEY_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+\Z")
# The characters of TOML booleans, integers and floats: anything else stays a string
# without asking the TOML parser (which would also take dates, arrays or "1 # comment").
_SCALAR_RE = re.compile(r"[0-9A-Za-z_+.-]+\Z")
LOCK_TIMEOUT = 10.0


def find_working_copy(start: str) -> str | None:
    """The nearest directory at or above ``start`` that holds a ``.vst/`` folder."""
    path = os.path.abspath(start)
    while True:
        if os.path.isdir(os.path.join(path, ".vst")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def split_key(key: str) -> list[str]:
    if not KEY_RE.match(key):
        raise UsageError(f"invalid config key '{key}'",
                         hint="keys look like 'section.name' (letters, digits, '_' and '-' "
                              "in each dot-separated part)")
    return key.split(".")


def parse_value(text: str) -> Any:
    """A value typed from the command line: a TOML boolean, integer or finite float when
    ``text`` is one (``true``, ``42``, ``0x1f``, ``1.5``), else the string itself. ``nan`` and
    ``inf`` stay strings: a name is likelier than a non-finite number in a config."""
    if not _SCALAR_RE.match(text):
        return text
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return text


def format_value(value: Any) -> str:
    """A value as ``--get`` and ``--list`` print it, on one line: TOML's spelling for
    booleans and numbers, strings as they are; arrays, inline tables and dates (only a
    hand-edited file has them) in TOML's inline form."""
    return value if isinstance(value, str) else _inline(value)


def _inline(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_inline(item)}" for key, item in value.items()) + "}"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def json_value(value: Any) -> Any:
    """A value for a --json record: JSON's own types where TOML's match, text otherwise."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class ConfigLayers:
    """The three config files. A path may be None (no store, not in a working copy).

    ``store``: the open Store whose config.toml is ``store_path``; store-layer writes go
    through it (``Store.edit_user_config``) so that the volumes' meta/ mirrors follow. If it
    is not given, the store is opened when a store-layer write needs it.
    """

    def __init__(self, global_path: str | None, store_path: str | None,
                 local_path: str | None, *, store: Store | None = None,
                 fs: FileSystem = DEFAULT_FS) -> None:
        if store is not None and store_path is None:
            store_path = os.path.join(store.path, "config.toml")
        self.paths: dict[str, str | None] = {"global": global_path, "store": store_path,
                                             "local": local_path}
        self._store = store
        self.fs = fs
        self._tables: dict[str, dict[str, Any]] = {}

    def table(self, layer: str) -> dict[str, Any]:
        """One layer's settings as TOML tables (the store layer: its user sections only)."""
        _check_layer(layer)
        if layer not in self._tables:
            table = _load(self.paths[layer])
            if layer == "store":
                from vst.store import Store

                table = {k: v for k, v in table.items() if k in Store.USER_SECTIONS}
            self._tables[layer] = table
        return self._tables[layer]

    def get(self, key: str, layer: str | None = None) -> Any | None:
        """The value of ``key`` in the most specific layer that sets it (or in ``layer``)."""
        found = self.lookup(key, layer)
        return found[0] if found else None

    def lookup(self, key: str, layer: str | None = None) -> tuple[Any, str] | None:
        """(value, layer it comes from), or None when no layer (or not ``layer``) sets it."""
        parts = split_key(key)
        for name in reversed(LAYERS) if layer is None else (layer,):
            value = _find(self.table(name), parts)
            if value is not None:
                return value, name
        return None

    def items(self, layer: str | None = None) -> list[tuple[str, Any, str]]:
        """(key, value, layer) for every setting, least specific layer first (so a later
        line overrides an earlier one with the same key, as in ``git config --list``)."""
        return [(key, value, name) for name in (LAYERS if layer is None else (layer,))
                for key, value in _flatten(self.table(name), "")]

    def set(self, layer: str, key: str, value: Any) -> None:
        """Durably set ``key`` to ``value`` (a string, boolean, integer or float) in ``layer``."""
        parts = self._writable(layer, key)
        if not isinstance(value, str | bool | int | float) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise UsageError(f"cannot store {value!r} in the config: use a string, boolean, "
                             "integer or finite float")
        self._edit(layer, lambda table: _put(table, parts, value, key))

    def unset(self, layer: str, key: str) -> bool:
        """Remove ``key`` from ``layer``; False if it was not set there."""
        parts = self._writable(layer, key)
        removed: bool = self._edit(layer, lambda table: _remove(table, parts))
        return removed

    def _writable(self, layer: str, key: str) -> list[str]:
        _check_layer(layer)
        parts = split_key(key)
        if parts[0] in FORMAT_SECTIONS:
            raise UsageError(f"'{key}' is a store format setting; vst config does not change "
                             "it", hint="format settings are fixed when the store is created")
        if layer == "store":
            from vst.store import Store

            if parts[0] not in Store.USER_SECTIONS:
                raise UsageError(f"'{key}' cannot be set in the store's config",
                                 hint="the store layer takes only these sections: "
                                      + ", ".join(sorted(Store.USER_SECTIONS)))
        self.require(layer)
        return parts

    def require(self, layer: str) -> str:
        """The path of ``layer``'s file; an error saying why there is none."""
        _check_layer(layer)
        path = self.paths[layer]
        if path is not None:
            return path
        if layer == "local":
            raise NotAWorkingCopy("not in a working copy (no .vst/ here or above)",
                                  hint="use --global, or run inside a working copy")
        if layer == "store":
            raise NotAStore("no store given",
                            hint="pass --store PATH to vst, set VST_STORE, or run inside a store")
        raise UsageError(f"no {layer} config file is known")

    def _edit(self, layer: str, edit: Callable[[dict[str, Any]], Any]) -> Any:
        """Read-modify-write one layer's file under a lock, from what is on disk now."""
        self._tables.pop(layer, None)
        path = self.paths[layer]
        assert path is not None
        if layer == "store":
            from vst.store import Store

            store = self._store or Store.open(os.path.dirname(path), fs=self.fs)
            return store.edit_user_config(edit)
        self.fs.makedirs(os.path.dirname(path))
        with _file_lock(path):
            table = _load(path)
            before = copy.deepcopy(table)
            result = edit(table)
            if table != before:
                import tomli_w

                # Written whole: comments and layout of a hand-edited file are not kept.
                self.fs.write_file(path, tomli_w.dumps(table).encode())
        return result


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise UsageError(f"unknown config layer '{layer}'",
                         hint="use one of: " + ", ".join(LAYERS))


def _load(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise from_os_error(exc, f"cannot read '{path}'") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorruptConfig(f"cannot parse '{path}': {exc}",
                            hint="fix or remove the file; it is TOML") from None


def _find(table: dict[str, Any], parts: list[str]) -> Any | None:
    node: Any = table
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if isinstance(node, dict) else node  # a section is not a value


def _flatten(table: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for name, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _put(table: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    node = table
    for depth, part in enumerate(parts[:-1], 1):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"cannot set '{key}': '{'.'.join(parts[:depth])}' is a value, "
                             "not a section")
        node = child
    if isinstance(node.get(parts[-1]), dict):
        raise UsageError(f"cannot set '{key}': it is a section, not a value")
    node[parts[-1]] = value


def _remove(table: dict[str, Any], parts: list[str]) -> bool:
    """Remove the value at ``parts``, and the sections it leaves empty."""
    path = [table]
    for part in parts[:-1]:
        child = path[-1].get(part)
        if not isinstance(child, dict):
            return False
        path.append(child)
    if parts[-1] not in path[-1] or isinstance(path[-1][parts[-1]], dict):
        return False
    del path[-1][parts[-1]]
    for depth in range(len(parts) - 1, 0, -1):
        if path[depth]:
            break
        del path[depth - 1][parts[depth - 1]]
    return True


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """Serialise read-modify-write of one config file between processes: an flock() on its
    directory, which (unlike the file, replaced by each write) stays the same inode and
    leaves no lock file behind. flock locks vanish with their process."""
    directory = os.path.dirname(path) or "."
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, f"cannot open '{directory}'") from None
    try:
        if not flock_within(fd, LOCK_TIMEOUT):
            raise Locked(f"'{path}' is locked by another process")
        yield
    finally:
        os.close(fd)
