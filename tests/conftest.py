"""Shared fixtures and helpers.

- ``store``: a fresh store in a temporary directory, closed at teardown.
- ``make_tree``: builds a sample directory from a nested dict.
- ``env``: a user with no set-up (fresh XDG data and config folders) and a fixed identity.
- ``s3_server``: a real SeaweedFS S3 server on 127.0.0.1 for the whole session (tests/s3server.py),
  as ``(endpoint_url, access_key, secret_key, bucket)``; a ``service`` test when missing.
- ``ssh_server``: the system's OpenSSH server on 127.0.0.1 for the whole session
  (tests/sshserver.py), as an ``SshServer``: ``host``, ``port``, ``user``, ``ssh_config``
  (``vst_ssh`` is ``ssh -F <ssh_config>`` for ``VST_SSH``) and ``authorize_command(cmd)``, which
  returns a host alias whose key forces ``cmd``; a ``service`` test when missing.
- ``require_service(name, available)``: the policy for tests marked ``service`` (sshd,
  SeaweedFS...). They skip when the service is missing, but fail when
  ``VST_REQUIRE_SERVICES=1``, which CI sets so that a missing install step cannot hide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
from s3server import S3Server, find_weed, report_failure, start_seaweedfs
from sshserver import SshServer, find_sshd, start_sshd

from vst.store import Store

REQUIRE_SERVICES_ENV = "VST_REQUIRE_SERVICES"

# A spec maps names to: bytes or str (a file; str is written as UTF-8), a dict (a
# directory, built recursively) or ("symlink", target) (a symbolic link).
TreeSpec = Mapping[str, Any]


def require_service(name: str, available: bool) -> None:
    """Return if ``available``; otherwise skip the test, or fail it under CI's
    ``VST_REQUIRE_SERVICES=1``."""
    if available:
        return
    _missing_service(name)


def _missing_service(name: str) -> NoReturn:
    message = f"service '{name}' is not available"
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{message} and {REQUIRE_SERVICES_ENV}=1", pytrace=False)
    pytest.skip(message)


def make_tree(path: str | os.PathLike[str], spec: TreeSpec) -> Path:
    """Create the files, directories and symlinks of ``spec`` under ``path`` (created if
    missing) and return ``path`` as a Path.

    >>> make_tree(tmp_path / "src", {"a.txt": b"A", "sub": {"b": "B"},
    ...                              "link": ("symlink", "a.txt")})
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for name, value in spec.items():
        target = root / name
        if isinstance(value, bytes):
            target.write_bytes(value)
        elif isinstance(value, str):
            target.write_bytes(value.encode())
        elif isinstance(value, Mapping):
            make_tree(target, value)
        elif isinstance(value, tuple) and len(value) == 2 and value[0] == "symlink":
            os.symlink(value[1], target)
        else:
            raise TypeError(f"make_tree: unsupported spec for {name!r}: {value!r}")
    return root


@pytest.fixture(name="require_service")
def require_service_fixture() -> Callable[[str, bool], None]:
    return require_service


@pytest.fixture(name="make_tree")
def make_tree_fixture() -> Callable[[str | os.PathLike[str], TreeSpec], Path]:
    return make_tree


@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What vst remembers of stores (vst/known.py) goes to a folder of the test's, never the
    user's own: every test, whether or not it asks for ``env``."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A user with no set-up: fresh data and config folders, a fixed identity."""
    values = {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "VST_AUTHOR_NAME": "Ann", "VST_AUTHOR_EMAIL": "ann@example.com",
        "VST_COMMITTER_NAME": "Ann", "VST_COMMITTER_EMAIL": "ann@example.com",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store with its default embedded volume, at ``tmp_path / "store"``."""
    opened = Store.init(str(tmp_path / "store"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session (start-up takes a few seconds); tests share its bucket
    and keep apart by prefix."""
    weed = find_weed()
    require_service("seaweedfs", weed is not None)
    assert weed is not None
    base = tmp_path_factory.mktemp("seaweedfs")
    try:
        running = start_seaweedfs(weed, base)
    except Exception as exc:
        report_failure(base / "weed.log", exc)
        require_service(f"seaweedfs ({exc})", False)
        raise
    try:
        yield running.server
    finally:
        running.stop()


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One sshd for the session (start-up takes well under a second); tests keep apart by
    folder, and each forced command gets its own key and host alias."""
    require_service("sshd", find_sshd() is not None)
    try:
        running = start_sshd(tmp_path_factory.mktemp("sshd"))
    except Exception as exc:
        require_service(f"sshd ({exc})", False)
        raise
    try:
        yield running.server
    finally:
        running.stop()
