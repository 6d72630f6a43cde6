"""A real OpenSSH server for the tests, on 127.0.0.1 only.

``start_sshd`` runs the system's ``/usr/sbin/sshd -D -e`` as the current user (root in CI, an
ordinary user elsewhere: an unprivileged sshd can only log its own user in, which is all the
tests need) on a free port, with everything it reads under ``base``: a generated host key,
an ``authorized_keys`` file, its config, pid file and log. The client side is a generated
``ssh_config`` that pins the host key, so ``ssh -F <ssh_config> vst-test-host CMD`` runs
with no prompt and nothing read from or written to the user's own ``~/.ssh``.

Each forced command (``Sshd.authorize_command``) gets its own user key and host alias:
sshd applies the options of the first ``authorized_keys`` line whose key matches, so one
key cannot be both unrestricted and forced.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and refuses to start from a relative path
HOST_ALIAS = "vst-test-host"
START_TIMEOUT = 20.0
# Where a root sshd chroots its unprivileged pre-authentication child; it must exist.
PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class SshServer:
    """What tests need of the running server. ``ssh_command`` (or ``vst_ssh``, the same as
    one string for ``VST_SSH``) followed by ``host`` and a command runs it on the server."""

    host: str
    port: int
    user: str
    ssh_config: Path
    sshd: Sshd = field(repr=False, compare=False)

    @property
    def ssh_command(self) -> list[str]:
        return [shutil.which("ssh") or "ssh", "-F", str(self.ssh_config)]

    @property
    def vst_ssh(self) -> str:
        return shlex.join(self.ssh_command)

    def authorize_command(self, command: str, options: str = "restrict") -> str:
        """See ``Sshd.authorize_command``."""
        return self.sshd.authorize_command(command, options)


class Sshd:
    def __init__(self, base: Path, port: int, user: str) -> None:
        self.base = base
        self.port = port
        self.user = user
        self.authorized_keys = base / "authorized_keys"
        self.ssh_config = base / "ssh_config"
        self.known_hosts = base / "known_hosts"
        self.log = base / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None
        # host alias -> private key file, in the order they were made
        self._aliases: dict[str, Path] = {}

    @property
    def server(self) -> SshServer:
        return SshServer(HOST_ALIAS, self.port, self.user, self.ssh_config, self)

    def authorize_command(self, command: str, options: str = "restrict") -> str:
        """Make a new user key whose ``authorized_keys`` line is
        ``command="<command>",<options> <key>`` and return the host alias that logs in with
        it (``ssh -F <ssh_config> <alias> ANYTHING`` runs ``command``, with ``ANYTHING`` in
        ``SSH_ORIGINAL_COMMAND``). ``options`` is put verbatim after the command."""
        if "\n" in command or "\r" in command or "\n" in options:
            raise ValueError("authorized_keys options cannot hold a line break")
        alias = f"{HOST_ALIAS}-forced-{len(self._aliases)}"
        key = _keygen(self.base / f"user_key_{len(self._aliases)}", alias)
        # sshd's option parser turns \" into " and keeps every other backslash as it is.
        quoted = command.replace('"', '\\"')
        entry = f'command="{quoted}"' + (f",{options}" if options else "")
        public = key.with_suffix(".pub").read_text().strip()
        with open(self.authorized_keys, "a") as out:
            out.write(f"{entry} {public}\n")
        self._aliases[alias] = key
        self._write_client_config()
        return alias

    def _write_client_config(self) -> None:
        blocks = [f"Host {alias}\n  IdentityFile {_quote(key)}\n"
                  for alias, key in self._aliases.items()]
        # ssh takes the first value it finds for each option, so the shared part goes last.
        blocks.append(
            "Host *\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {self.user}\n"
            f"  UserKnownHostsFile {_quote(self.known_hosts)}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  CheckHostIP no\n"
            "  UpdateHostKeys no\n"
            "  BatchMode yes\n"
            "  IdentitiesOnly yes\n"
            "  IdentityAgent none\n"
            "  PubkeyAuthentication yes\n"
            "  PasswordAuthentication no\n"
            "  KbdInteractiveAuthentication no\n"
            "  ControlMaster no\n"
            "  ControlPath none\n"
            "  ConnectTimeout 10\n"
            "  LogLevel ERROR\n")
        # ssh processes may be reading it while another alias is added: replace, never
        # rewrite in place.
        temporary = self.ssh_config.with_suffix(".tmp")
        temporary.write_text("\n".join(blocks))
        os.replace(temporary, self.ssh_config)

    def stop(self) -> None:
        # Sessions still open are sshd's children in their own sessions; they end when
        # their client does. Only the listener is stopped here.
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


def find_sshd() -> str | None:
    """The server's path when sshd, ssh and ssh-keygen are all installed, else None."""
    if not (os.path.isfile(SSHD) and os.access(SSHD, os.X_OK)):
        return None
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return None
    return SSHD


def _quote(path: Path) -> str:
    # Both config parsers accept double-quoted arguments, which covers spaces in paths.
    return f'"{path}"'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True)
    return path


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _PortTaken(RuntimeError):
    """sshd exited because another process bound its port first."""


def start_sshd(base: Path) -> Sshd:
    """Start sshd with its files under ``base`` and return once ``ssh vst-test-host true``
    succeeded; raise RuntimeError, with the tail of sshd's log, when it does not."""
    sshd = find_sshd()
    if sshd is None:
        raise RuntimeError(f"{SSHD}, ssh or ssh-keygen is not installed")
    base.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = _keygen(base / "host_key", "vst-test-host")
    user_key = _keygen(base / "user_key", user)
    # The port is free when picked but may be taken before sshd binds it: try another.
    for _attempt in range(3):
        server = _start_on(sshd, base, _free_port(), user, host_key, user_key)
        try:
            _wait_for_login(server)
            return server
        except BaseException as exc:
            server.stop()
            if isinstance(exc, _PortTaken):
                continue
            if isinstance(exc, RuntimeError):
                raise RuntimeError(f"{exc}\n--- tail of {server.log} ---\n"
                                   f"{log_tail(server.log)}") from None
            raise
    raise RuntimeError(f"sshd could not bind a free port three times; see {base}/sshd.log")


def _start_on(sshd: str, base: Path, port: int, user: str, host_key: Path,
              user_key: Path) -> Sshd:
    server = Sshd(base, port, user)
    server.authorized_keys.write_text(user_key.with_suffix(".pub").read_text())
    host_public = host_key.with_suffix(".pub").read_text().split()
    server.known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    server._aliases[HOST_ALIAS] = user_key
    server._write_client_config()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {_quote(host_key)}\n"
        f"PidFile {_quote(base / 'sshd.pid')}\n"
        f"AuthorizedKeysFile {_quote(server.authorized_keys)}\n"
        "AuthorizedPrincipalsFile none\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "HostbasedAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        # The key files live in a pytest temporary folder, whatever its modes.
        "StrictModes no\n"
        "UsePAM no\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        "X11Forwarding no\n"
        "PermitUserEnvironment no\n"
        # Tests may open many connections at once; the default (10:30:100) drops some.
        "MaxStartups 200\n"
        "MaxSessions 50\n"
        "LoginGraceTime 30\n"
        "LogLevel VERBOSE\n")
    with open(server.log, "wb") as out:
        server.process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, cwd=base)
    return server


def _wait_for_login(server: Sshd) -> None:
    assert server.process is not None
    deadline = time.monotonic() + START_TIMEOUT
    last = "no attempt"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if "Address already in use" in log_tail(server.log):
                raise _PortTaken(f"port {server.port} was taken")
            raise RuntimeError(f"sshd exited with status {server.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except OSError as exc:
            last = f"port {server.port}: {exc}"
            time.sleep(0.05)
            continue
        try:
            result = subprocess.run([*server.server.ssh_command, HOST_ALIAS, "true"],
                                    stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            last = "ssh ... true timed out"
            break
        if result.returncode == 0:
            return
        last = (f"ssh ... true exited with {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}")
        time.sleep(0.1)
    raise RuntimeError(f"no login to sshd in {START_TIMEOUT:.0f} s: {last}")
