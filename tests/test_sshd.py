"""The ``ssh_server`` fixture itself: a real sshd that the SSH transport's tests can rely on
(commands and their status come back, forced commands apply, binary streams stay intact,
and the client never prompts)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from sshserver import SshServer

pytestmark = pytest.mark.service

TIMEOUT = 60


def ssh(server: SshServer, host: str, command: str, data: bytes = b"",
        config: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    ssh_command = server.ssh_command
    if config is not None:
        ssh_command = [ssh_command[0], "-F", str(config)]
    return subprocess.run([*ssh_command, host, command], input=data, capture_output=True,
                          timeout=TIMEOUT)


def test_a_command_runs_as_the_user_and_its_output_and_status_come_back(
        ssh_server: SshServer) -> None:
    result = ssh(ssh_server, ssh_server.host, "echo out; echo err >&2; id -un; exit 7")
    assert result.returncode == 7
    assert result.stdout == f"out\n{ssh_server.user}\n".encode()
    assert result.stderr == b"err\n"


def test_the_server_listens_on_loopback_only(ssh_server: SshServer) -> None:
    result = ssh(ssh_server, ssh_server.host, 'printf %s "$SSH_CONNECTION"')
    assert result.returncode == 0, result.stderr
    client_ip, _client_port, server_ip, server_port = result.stdout.decode().split()
    assert (client_ip, server_ip, int(server_port)) == ("127.0.0.1", "127.0.0.1",
                                                        ssh_server.port)


def test_a_forced_command_replaces_the_one_asked_for(ssh_server: SshServer) -> None:
    # Double quotes and a backslash check how the command is quoted in authorized_keys.
    alias = ssh_server.authorize_command(
        r'printf "forced\\n%s" "$SSH_ORIGINAL_COMMAND"; test -z "$SSH_TTY"')
    asked = "vst serve --stdio 'srv/a b'; rm -rf /nothing"
    result = ssh(ssh_server, alias, asked)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"forced\n" + asked.encode()
    # The key of the plain alias is still unrestricted.
    assert ssh(ssh_server, ssh_server.host, "echo free").stdout == b"free\n"


def test_forced_commands_each_have_their_own_key(ssh_server: SshServer) -> None:
    first = ssh_server.authorize_command("echo first")
    second = ssh_server.authorize_command("echo second")
    assert first != second
    assert ssh(ssh_server, first, "x").stdout == b"first\n"
    assert ssh(ssh_server, second, "x").stdout == b"second\n"


@pytest.mark.parametrize("forced", [False, True], ids=["plain", "forced"])
def test_binary_data_crosses_both_ways_intact(ssh_server: SshServer, forced: bool) -> None:
    data = os.urandom(10 * 1024 * 1024) + bytes(range(256)) + b"\r\n\x00\xff~.\n~?"
    # The server hashes what it read to a file and echoes it back: each direction is
    # checked on its own.
    target = ssh_server.ssh_config.parent / f"received-{forced}"
    command = f"tee '{target}'"
    host = ssh_server.authorize_command(command) if forced else ssh_server.host
    result = ssh(ssh_server, host, command, data)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert len(result.stdout) == len(data)
    assert result.stdout == data
    target.unlink()


def test_an_unknown_host_key_fails_without_a_prompt(ssh_server: SshServer,
                                                    tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    known = ssh_server.ssh_config.parent / "known_hosts"
    config.write_text(ssh_server.ssh_config.read_text().replace(str(known), str(empty)))
    result = ssh(ssh_server, ssh_server.host, "echo in", config=config)
    assert result.returncode == 255
    assert b"Host key verification failed" in result.stderr
    assert result.stdout == b""
