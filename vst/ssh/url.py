"""SSH store addresses, and the command that reaches one.

Two spellings, as in git: ``ssh://[user@]host[:port]/path`` (the path is absolute; ``/~/x``
is ``x`` in the remote home) and ``[user@]host:path`` (scp-like: taken when a ``:`` comes
before any ``/``; a relative path is relative to the remote home). ``./a:b`` stays a local
path.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from vst.errors import UsageError


class SshAddress(NamedTuple):
    user: str | None
    host: str
    port: int | None
    path: str

    @property
    def url(self) -> str:
        """The canonical spelling (what working copies and the known-state file record)."""
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.path.startswith("/") else f"/~/{self.path}"
        return f"ssh://{who}{host}{port}{path}"

    def argv(self, ssh_command: str, remote_vst: str) -> list[str]:
        """The command to spawn: ``ssh_command`` (split like a shell would, as
        GIT_SSH_COMMAND is), the port, ``--`` and the destination, and the remote
        command line ``remote_vst serve --stdio PATH``."""
        import shlex

        try:
            argv = shlex.split(ssh_command)
        except ValueError as exc:
            raise UsageError(f"cannot parse the ssh command '{ssh_command}': {exc}") from None
        if not argv:
            raise UsageError("the ssh command is empty (VST_SSH or core.sshCommand)")
        if self.port:
            argv += ["-p", str(self.port)]
        destination = f"{self.user}@{self.host}" if self.user else self.host
        remote = f"{remote_vst} serve --stdio {shlex.quote(self.path)}"
        return [*argv, "--", destination, remote]


def is_ssh(url: str) -> bool:
    if url.startswith("ssh://"):
        return True
    if "://" in url or url.startswith(("/", ".", "~")):
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon > 0 and (slash < 0 or colon < slash)


def shown(url: str) -> str:
    """``url`` for a one-line message: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in url)


def parse(url: str) -> SshAddress:
    """The address in ``url`` (UsageError for a malformed one, or a host or user that
    ssh would take for an option)."""
    try:
        return _parse(url)
    except UsageError as exc:
        raise UsageError(exc.message.replace(f"'{url}'", f"'{shown(url)}'"),
                         hint=exc.hint) from None


def _parse(url: str) -> SshAddress:
    # Imported here: every command asks is_ssh() of its store, few parse an address.
    from urllib.parse import unquote

    if url.startswith("ssh://"):
        rest = url[len("ssh://"):]
        authority, slash, path = rest.partition("/")
        if not slash or not path:
            raise UsageError(f"'{url}': no path to the store after the host")
        path = unquote(path)
        path = (path[2:] or ".") if path.startswith("~/") else "/" + path
        user, at, hostport = authority.rpartition("@")
        if hostport.startswith("["):
            host, bracket, after = hostport[1:].partition("]")
            if not bracket or (after and not after.startswith(":")):
                raise UsageError(f"'{url}': malformed host")
            port_text = after[1:]
        else:
            host, _, port_text = hostport.partition(":")
        port = None
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise UsageError(f"'{url}': bad port '{port_text}'")
            port = int(port_text)
        address = SshAddress(unquote(user) if at else None, host, port, path)
    else:
        destination, _, path = url.partition(":")
        user, at, host = destination.rpartition("@")
        if not path:
            raise UsageError(f"'{url}': no path to the store after the host")
        if path.startswith("~/"):  # the remote home, which relative paths start from
            path = path[2:] or "."
        address = SshAddress(user if at else None, host, None, path)
    _check(address, url)
    return address


def _check(address: SshAddress, url: str) -> None:
    # ssh reads an argument starting with '-' as an option ("-oProxyCommand=..."), whatever
    # comes before it: refused here, before anything is spawned (git's CVE-2017-1000117).
    if not address.host:
        raise UsageError(f"'{url}': no host")
    for what, value in (("host", address.host), ("user", address.user or "")):
        if value.startswith("-"):
            raise UsageError(f"'{url}': a {what} may not begin with '-'")
        if any(c.isspace() or ord(c) < 0x20 for c in value):
            raise UsageError(f"'{url}': the {what} holds a space or control character")
    if "\0" in address.path or "\n" in address.path:
        raise UsageError(f"'{url}': the path holds a control character")


def ssh_command(configured: object) -> str:
    """The ssh to run: $VST_SSH, else config core.sshCommand, else ``ssh``."""
    from_env = os.environ.get("VST_SSH")
    if from_env:
        return from_env
    if isinstance(configured, str) and configured.strip():
        return configured
    return "ssh"
