"""S16 (RELIABILITY.md): a key forced to ``vst serve --stdio --restrict-to ROOT --append-only``
in ``authorized_keys`` reaches no store outside ROOT, moves no ref backwards and rewrites
nothing, and its server's memory stays bounded, whatever the client asks for or sends.

Against the real sshd (``ssh_server``), under one module folder:

    srv/a/store          the store the key is for (ROOT = srv/a)
    srv/a/link-*, hop    symlinks out of ROOT (and link-in, one inside it)
    srv/ab/store         a sibling whose path starts with ROOT's as a string: the prefix trap
    outside/store        elsewhere
    pwned/, victim       where a command that ran would leave a trace

Each attempt is one parametrized case, which asserts what the server answered and that
nothing escaped (no session served a store outside ROOT, the stores outside are unchanged
byte for byte, no trace of a command ran). A NUL cannot cross ssh (a command line and an
environment variable end at one), so the NUL path is tried where it can be: in the client's
address check, with the hosts and users that begin with '-'.

A login to sshd costs about half a second here, so each group's sessions run together in a
module fixture and its cases check the outcome of their own. The memory figure comes from
``vst serve --stdio`` run directly (as sshd runs it); ``VST_TORTURE=1`` sends the full 200
batches of ids instead of 16 (about 20 s more).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import blake3
import pytest
from clirun import vst_run
from sshproto import LENGTH, RawSession, environment, frame, message
from sshserver import SshServer

from vst.objects.commit import Commit
from vst.objects.oid import Oid
from vst.ssh.protocol import MAX_MESSAGE
from vst.ssh.server import MAX_IDS, MAX_KEYRING, MAX_PACK
from vst.store import Store

pytestmark = pytest.mark.service

VST = os.path.join(os.path.dirname(sys.executable), "vst")
TORTURE = os.environ.get("VST_TORTURE") == "1"
MIB = 1024 * 1024
ZERO = "0" * 64
WORKERS = 8
SESSION_TIMEOUT = 60.0
SIGNATURE = "Eve <eve@example.com> 1700000000 +0000"
# The default post-quantum key exchange costs the client ~70 ms of CPU per login here, and
# this file logs in about 130 times: the classic one is enough to test what runs after.
FAST_KEX = ("-o", "KexAlgorithms=curve25519-sha256")

def asked(path: str) -> str:
    """The remote command the vst client sends for ``path`` (vst/ssh/url.py)."""
    return f"vst serve --stdio {shlex.quote(path)}"


def digest(root: Path) -> dict[str, str]:
    """Every entry under ``root``: relative path -> content hash (or symlink target)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = "-> " + os.readlink(path)
            elif path.is_file():
                found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[relative] = "dir"
    return found


def new_store(path: Path) -> str:
    store = Store.init(str(path))
    try:
        return store.store_id
    finally:
        store.close()


def clean_stderr(text: str) -> bool:
    """No traceback and no internal error: what a bug looks like on the server's stderr."""
    return "Traceback" not in text and "internal error" not in text


# -- the site -----------------------------------------------------------------------------------


@dataclass
class Site:
    base: Path
    server: SshServer
    alias: str
    inside: dict[str, str]  # store id -> path, for the stores under ROOT
    before: dict[str, dict[str, str]] = field(default_factory=dict)

    def path(self, relative: str) -> str:
        return str(self.base / relative)

    @property
    def a(self) -> str:
        return self.path("srv/a/store")

    def ssh(self, command: str | None, *options: str) -> list[str]:
        """ssh through the forced key; no command at all when ``command`` is None."""
        ssh = [*self.server.ssh_command, *FAST_KEX, *options]
        return [*ssh, "-T", self.alias] if command is None else [*ssh, self.alias, command]

    def snapshot(self) -> dict[str, dict[str, str]]:
        return {"srv/ab": digest(self.base / "srv/ab"),
                "outside": digest(self.base / "outside")}

    def escapes(self) -> list[str]:
        """Traces of an escape: a store outside ROOT changed, a command ran."""
        found = [f"{where} changed" for where, now in self.snapshot().items()
                 if now != self.before[where]]
        found += [f"pwned/{name} appeared" for name in os.listdir(self.base / "pwned")]
        if not (self.base / "victim").is_file():
            found.append("victim was removed")
        return found


@pytest.fixture(scope="module")
def site(ssh_server: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Site:
    base = tmp_path_factory.mktemp("confinement")
    inside = {new_store(base / "srv/a/store"): "srv/a/store",
              new_store(base / "srv/a/abuse/store"): "srv/a/abuse/store"}
    new_store(base / "srv/ab/store")
    new_store(base / "outside/store")
    (base / "srv/a/link-out").symlink_to(base / "outside/store")
    (base / "srv/a/link-ab").symlink_to("../ab")
    (base / "srv/a/link-up").symlink_to("..")
    (base / "srv/a/hop").symlink_to("link-out")
    (base / "srv/a/link-in").symlink_to("store")
    (base / "pwned").mkdir()
    (base / "victim").write_text("still here\n")
    # Would run on import if a client could set PYTHONPATH for the server.
    (base / "lib").mkdir()
    (base / "lib/sitecustomize.py").write_text(
        f"open({str(base / 'pwned/setenv')!r}, 'w').close()\n")
    alias = ssh_server.authorize_command(
        f"{VST} serve --stdio --restrict-to {base / 'srv/a'} --append-only")
    made = Site(base, ssh_server, alias, inside)
    made.before = made.snapshot()
    return made


# -- what a session got ---------------------------------------------------------------------------


@dataclass
class Outcome:
    greeting: dict[str, Any] | None
    answer: dict[str, Any] | None  # to hello, when the greeting was not an error
    returncode: int
    stderr: str
    timed_out: bool

    @property
    def served(self) -> str | None:
        """The id of the store the session was opened on, if it was."""
        ok = (self.answer or {}).get("ok")
        return ok.get("store_id") if isinstance(ok, dict) else None

    @property
    def modes(self) -> list[str]:
        ok = (self.answer or {}).get("ok")
        return ok.get("modes", []) if isinstance(ok, dict) else []

    @property
    def refused(self) -> str | None:
        """The type of the error the greeting was, if it was one."""
        error = (self.greeting or {}).get("error")
        return error.get("type") if isinstance(error, dict) else None


def open_session(argv: list[str]) -> Outcome:
    session = RawSession(argv, timeout=SESSION_TIMEOUT)
    hello = session.hello()
    session.finish()
    answer = {key: value for key, value in hello.items() if key != "greeting"}
    return Outcome(hello["greeting"], answer or None, session.returncode or 0,
                   session.stderr.decode(errors="replace"), session.timed_out)


def params(cases: Sequence[Any]) -> list[Any]:
    """``cases`` for parametrize, those with a known ``bug`` as strict xfails."""
    return [pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=case.bug))
            if case.bug else case for case in cases]


def run_all(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# -- 1. what the client may ask for: paths and commands -------------------------------------------


@dataclass(frozen=True)
class Ask:
    id: str
    command: str | None  # a template (see _names); None: no command at all (a shell)
    expect: str  # the error the greeting must be
    options: tuple[str, ...] = ()  # more ssh options (templates too)
    path: str | None = None  # instead of a command: the store path the client asks for

    def argv(self, site: Site) -> list[str]:
        names = _names(site)
        if self.path is not None:
            command: str | None = asked(self.path.format(**names))
        else:
            command = self.command.format(**names) if self.command is not None else None
        return site.ssh(command, *(option.format(**names) for option in self.options))


def _names(site: Site) -> dict[str, str]:
    return {"base": str(site.base), "a": site.a, "ab": site.path("srv/ab/store"),
            "outside": site.path("outside/store"), "pwned": site.path("pwned"),
            "victim": site.path("victim"), "climb": "../" * 40 + str(site.base).lstrip("/")}


def _path(id: str, path: str, expect: str = "Refused") -> Ask:
    return Ask(id, None, expect, path=path)


PATHS = [
    _path("prefix-sibling", "{base}/srv/ab/store"),
    _path("dotdot-to-sibling", "{base}/srv/a/../ab/store"),
    _path("dotdot-out-of-store", "{base}/srv/a/store/../../outside/store"),
    _path("dotdot-to-outside", "{base}/srv/a/store/../../../outside/store"),
    _path("dot-and-dotdot-mix", "{base}/srv/a/./store/.././../ab/./store"),
    _path("deep-climb", "{base}/srv/a/" + "x/" * 200 + "../" * 201 + "ab/store"),
    _path("double-slashes", "/{base}//srv//ab//store"),
    _path("etc", "/etc"),
    _path("filesystem-root", "/"),
    _path("relative-from-home", "srv/a/store"),
    _path("relative-climb-to-outside", "{climb}/outside/store"),
    _path("tilde", "~"),
    _path("tilde-climb-to-outside", "~/{climb}/outside/store"),
    _path("tilde-user", "~root"),
    _path("dollar-home", "$HOME"),
    _path("symlink-out", "{base}/srv/a/link-out"),
    _path("symlink-to-sibling", "{base}/srv/a/link-ab/store"),
    _path("symlink-up", "{base}/srv/a/link-up/ab/store"),
    _path("symlink-chain", "{base}/srv/a/hop"),
    _path("symlink-then-dotdot", "{base}/srv/a/link-out/../store"),
    _path("proc-self-root", "/proc/self/root{base}/outside/store"),
    _path("proc-self-cwd", "/proc/self/cwd"),
    _path("file-url", "file://{base}/srv/ab/store"),
    _path("empty-path", ""),
    _path("newline-in-path", "{base}/srv/a/store\n{base}/outside/store", "NotAStore"),
    _path("percent-encoded-dotdot", "{base}/srv/a/%2e%2e/ab/store", "NotAStore"),
    _path("root-itself", "{base}/srv/a", "NotAStore"),
    _path("store-dotdot", "{base}/srv/a/store/..", "NotAStore"),
]

COMMANDS = [
    Ask("no-path", "vst serve --stdio", "Refused"),
    Ask("two-paths", "vst serve --stdio {a} {outside}", "Refused"),
    Ask("two-paths-outside-first", "vst serve --stdio {outside} {a}", "Refused"),
    Ask("newline-then-second-path", "vst serve --stdio {a}\n{outside}", "Refused"),
    Ask("other-subcommand", "vst key export", "Refused"),
    Ask("restrict-to-widened", "vst serve --stdio --restrict-to / {outside}", "Refused"),
    Ask("restrict-to-equals-widened", "vst serve --stdio --restrict-to=/ {outside}", "Refused"),
    Ask("debug", "vst serve --stdio --debug {a}", "Refused"),
    Ask("no-append-only", "vst serve --stdio --no-append-only {a}", "Refused"),
    Ask("global-store-option", "vst --store {outside} serve --stdio {a}", "Refused"),
    Ask("double-dash-then-path", "vst serve --stdio -- {outside}", "Refused"),
    Ask("sh-c", "sh -c 'touch {pwned}/sh-c'", "Refused"),
    Ask("semicolon", "vst serve --stdio {a}; touch {pwned}/semicolon", "Refused"),
    Ask("and-rm", "vst serve --stdio {a} && rm -f {victim}", "Refused"),
    Ask("pipe", "vst serve --stdio {a} | tee {pwned}/pipe", "Refused"),
    Ask("redirect", "vst serve --stdio {a} > {pwned}/redirect", "Refused"),
    Ask("dollar-paren", 'vst serve --stdio "$(touch {pwned}/dollar)"', "Refused"),
    Ask("backticks", "vst serve --stdio `touch {pwned}/backtick`", "Refused"),
    Ask("newline-then-command", "vst serve --stdio {a}\ntouch {pwned}/newline", "Refused"),
    Ask("unbalanced-quote", "vst serve --stdio '{a}", "Refused"),
    Ask("no-command-a-shell", None, "UsageError"),
    Ask("client-sets-pythonpath", "vst serve --stdio {outside}", "Refused",
        ("-o", "SetEnv=PYTHONPATH={base}/lib")),
]

# Served, and served right: the store under ROOT, with the modes narrowed as asked.
ALLOWED = [
    (_path("the-store", "{a}"), []),
    (_path("symlink-inside-root", "{base}/srv/a/link-in"), []),
    (_path("dotdot-back-inside", "{base}/srv/a/../a/store"), []),
    (Ask("read-only-narrows", "vst serve --stdio --read-only {a}", ""), ["read-only"]),
]


@pytest.fixture(scope="module")
def asks(site: Site) -> dict[str, Outcome]:
    everything = PATHS + COMMANDS + [ask for ask, _modes in ALLOWED]
    return run_all({ask.id: partial(open_session, ask.argv(site)) for ask in everything})


@pytest.mark.parametrize("ask", PATHS + COMMANDS, ids=lambda ask: ask.id)
def test_a_path_or_command_outside_the_key_is_refused(site: Site, asks: dict[str, Outcome],
                                                      ask: Ask) -> None:
    outcome = asks[ask.id]
    assert not outcome.timed_out
    escaped = outcome.served is not None and outcome.served not in site.inside
    assert not escaped, f"served the store {outcome.served} outside ROOT"
    assert outcome.refused == ask.expect, outcome
    assert outcome.returncode == 0 and clean_stderr(outcome.stderr), outcome.stderr
    assert site.escapes() == []


@pytest.mark.parametrize(("ask", "modes"), ALLOWED, ids=[ask.id for ask, _ in ALLOWED])
def test_what_the_key_allows_is_served_with_its_modes(site: Site, asks: dict[str, Outcome],
                                                      ask: Ask, modes: list[str]) -> None:
    outcome = asks[ask.id]
    assert outcome.refused is None, outcome
    assert outcome.served is not None and site.inside.get(outcome.served) == "srv/a/store"
    # The key's --append-only holds whatever is asked; --read-only only narrows.
    assert sorted(outcome.modes) == sorted({"append-only", *modes})
    assert clean_stderr(outcome.stderr), outcome.stderr


# -- 2. the store swapped for a symlink during a session ------------------------------------------


SWAPS = [
    # (id, the store under srv/a, the entry replaced by a symlink, where it points)
    ("store-folder-to-outside", "swap1/store", "swap1/store", "outside/store"),
    ("parent-folder-to-outside", "swap2/dir/store", "swap2/dir", "outside"),
    ("store-folder-to-sibling", "swap3/store", "swap3/store", "srv/ab/store"),
]


@pytest.mark.parametrize(("store", "swapped", "target"), [s[1:] for s in SWAPS],
                         ids=[s[0] for s in SWAPS])
def test_a_store_swapped_for_a_symlink_mid_session_ends_it(
        site: Site, store: str, swapped: str, target: str) -> None:
    path = site.base / "srv/a" / store
    store_id = new_store(path)
    session = RawSession(site.ssh(asked(str(path))), timeout=SESSION_TIMEOUT)
    replaced = site.base / "srv/a" / swapped
    aside = replaced.with_name(replaced.name + ".real")
    try:
        assert session.hello()["ok"]["store_id"] == store_id
        answer, listing = session.request({"op": "collections"})
        assert answer is not None and "ok" in answer and listing == b"[]"
        replaced.rename(aside)
        replaced.symlink_to(site.base / target)
        answer, _ = session.request({"op": "collection.create", "name": "pwned"})
        rest = session.messages_until_end()
    finally:
        session.finish()
        if replaced.is_symlink():
            replaced.unlink()
            aside.rename(replaced)
    assert answer is not None and answer["error"]["type"] == "ProtocolError", answer
    assert "changed" in answer["error"]["message"]
    assert rest == []  # the session ended
    assert session.returncode == 0 and clean_stderr(session.stderr.decode())
    assert not (path / "collections/pwned.toml").exists()
    assert site.escapes() == []


# -- 3. protocol abuse on an accepted session -----------------------------------------------------


def _j(raw: bytes) -> bytes:
    return frame(b"J", raw)


def _m(**fields: Any) -> bytes:
    return message(fields)


@dataclass(frozen=True)
class Abuse:
    id: str
    payload: bytes
    expect: str = "ProtocolError"
    handshake: bool = True  # sent after hello (else in its place)
    close: bool = False  # our side closes right after the payload
    survives: bool = False  # an error for this request only: the session goes on
    bug: str | None = None  # a known bug makes this case fail (strict xfail)


HAVE_LIMIT = 32 * MAX_IDS
SOME_ID = "ab" * 32
ABUSES = [
    Abuse("frame-length-2^32-1", LENGTH.pack(2**32 - 1) + b"J"),
    Abuse("message-frame-over-1MiB", _j(b" " * MAX_MESSAGE + b"{}")),
    Abuse("empty-frame", LENGTH.pack(0)),
    Abuse("unknown-frame-kind", frame(b"X", b"{}")),
    Abuse("data-frame-where-a-message-is-expected", frame(b"B", b"x" * 32)),
    Abuse("not-json", _j(b"{oops")),
    Abuse("not-utf8", _j(b'{"op": "\xff\xfe"}')),
    Abuse("json-not-an-object", _j(b"[1, 2]")),
    Abuse("json-nested-100000-deep", _j(b"[" * 100_000)),
    Abuse("int-of-5000-digits", _j(b'{"op": "have", "data": ' + b"9" * 5000 + b"}")),
    Abuse("data-size-negative", _m(op="have", data=-1)),
    Abuse("data-size-a-string", _m(op="have", data="32")),
    Abuse("data-size-true", _m(op="have", data=True)),
    Abuse("data-size-nan", _j(b'{"op": "have", "data": NaN}')),
    Abuse("data-size-2^64", _m(op="have", data=2**64)),
    Abuse("have-over-its-limit", _m(op="have", data=HAVE_LIMIT + 32)),
    Abuse("objects-over-its-limit", _m(op="objects", data=HAVE_LIMIT + 32)),
    Abuse("pack-over-its-limit", _m(op="pack.put", pack=SOME_ID, data=MAX_PACK + 1)),
    Abuse("keyring-over-its-limit", _m(op="keyring.write", new=True, data=MAX_KEYRING + 1)),
    Abuse("have-not-a-multiple-of-32", message({"op": "have"}, b"x" * 33)),
    Abuse("data-longer-than-announced", _m(op="have", data=32) + frame(b"B", b"x" * 64)),
    Abuse("message-inside-data", _m(op="have", data=32) + _m(op="collections")),
    Abuse("unknown-op", _m(op="rm -rf /")),
    Abuse("unknown-op-with-data", message({"op": "nope"}, b"x" * 100)),
    Abuse("op-a-number", _m(op=5)),
    Abuse("op-a-list", _m(op=["have"])),
    Abuse("no-op", _m(x=1)),
    Abuse("hello-again", _m(op="hello", protocol=1)),
    Abuse("request-without-an-id", _j(b'{"op": "collections"}')),
    Abuse("request-id-a-string", _m(op="collections", id="1")),
    Abuse("request-id-true", _m(op="collections", id=True)),
    Abuse("field-of-the-wrong-type", _m(op="ref.read", name=5)),
    Abuse("malformed-object-id", _m(op="ref.update", name="docs", new="zz",
                                     committer=SIGNATURE, message="x")),
    Abuse("truncated-frame-then-eof", LENGTH.pack(100) + b"J{", "PeerGone", close=True),
    Abuse("eof-inside-data", _m(op="have", data=64) + frame(b"B", b"x" * 32), "PeerGone",
          close=True),
    # In place of hello:
    Abuse("request-before-hello", _m(op="collections"), handshake=False),
    Abuse("hello-for-protocol-2", _m(op="hello", protocol=2), handshake=False),
    Abuse("hello-not-an-object", _j(b'"hello"'), handshake=False),
    Abuse("hello-nested-100000-deep", _j(b"[" * 100_000), handshake=False),
    # Refused requests that leave the stream in step: the session goes on.
    Abuse("ref-name-traversal", _m(op="ref.read", name="../../../ab/store/refs/docs"),
          "NotFound", survives=True),
    Abuse("reflog-name-traversal", _m(op="reflog", name="../../outside/store/logs/x"),
          "NotFound", survives=True),
    Abuse("keyring-name-traversal", _m(op="keyring.read", name="../../../outside/store/config"),
          "UsageError", survives=True),
    Abuse("prefix-sql-injection", _m(op="prefix", prefix="%' OR 1=1 --"), "UsageError",
          survives=True),
    Abuse("policy-of-a-traversal-name", _m(op="policy", collection="../../outside/store/x"),
          "NotFound", survives=True),
]


@dataclass
class AbuseOutcome:
    messages: list[dict[str, Any]]
    returncode: int
    stderr: str
    timed_out: bool


def _abuse(site: Site, case: Abuse) -> AbuseOutcome:
    session = RawSession(site.ssh(asked(site.path("srv/a/abuse/store"))),
                         timeout=SESSION_TIMEOUT)
    if case.handshake:
        assert "ok" in session.hello()
    else:
        assert session.receive() is not None  # the greeting
    session.send(case.payload)
    if case.close:
        session.close_input()
    messages = []
    if case.survives:
        first, _ = session.answer()
        after, _ = session.request({"op": "collections"})
        session.close_input()
        messages = [m for m in (first, after) if m is not None]
    messages += session.messages_until_end()
    session.finish()
    return AbuseOutcome(messages, session.returncode or 0,
                        session.stderr.decode(errors="replace"), session.timed_out)


@pytest.fixture(scope="module")
def abuses(site: Site) -> dict[str, AbuseOutcome]:
    return run_all({case.id: partial(_abuse, site, case) for case in ABUSES})


@pytest.mark.parametrize("case", params(ABUSES), ids=[case.id for case in ABUSES])
def test_protocol_abuse_gets_an_error_never_a_crash(abuses: dict[str, AbuseOutcome],
                                                    site: Site, case: Abuse) -> None:
    outcome = abuses[case.id]
    assert not outcome.timed_out, "the server hung"
    assert clean_stderr(outcome.stderr), outcome.stderr
    assert outcome.returncode == 0, outcome.stderr
    errors = [m["error"]["type"] for m in outcome.messages if "error" in m]
    if case.survives:
        assert errors == [case.expect], outcome.messages
        assert "ok" in outcome.messages[-1], "the session should have gone on"
    else:
        assert errors == [case.expect], outcome.messages
        assert "error" in outcome.messages[-1], "the session should have ended"
    assert site.escapes() == []


# -- 4. append-only: what an attacker with the key may not undo -----------------------------------


def run_vst(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VST, *args], env=env, capture_output=True, text=True,
                          timeout=SESSION_TIMEOUT, stdin=subprocess.DEVNULL)


def client_env(site: Site, who: str, **extra: str) -> dict[str, str]:
    home = site.base / "users" / who
    env = environment(
        XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        VST_SSH=shlex.join([*site.server.ssh_command, *FAST_KEX]),
        VST_REMOTE_VST="vst", VST_AUTHOR_NAME="Ann", VST_AUTHOR_EMAIL="ann@example.com",
        VST_COMMITTER_NAME="Ann", VST_COMMITTER_EMAIL="ann@example.com", **extra)
    for name in ("VST_STORE", "VST_PASSPHRASE", "VST_KEY_FILE"):
        env.pop(name, None)
    return env


def ok(env: dict[str, str], *args: str) -> str:
    ran = run_vst(env, *args)
    assert ran.returncode == 0, (args, ran.stderr)
    return ran.stdout


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vst" not in p.relative_to(root).parts}


@dataclass
class History:
    site: Site
    env: dict[str, str]
    commits: list[str]  # of the plain collection "docs", oldest first
    contents: dict[str, dict[str, bytes]]  # commit -> its files
    keyring_files: dict[str, bytes]  # keys/ of the store, name -> bytes
    tree: str  # the root tree of the head commit
    foreign_pack: tuple[str, bytes]  # a plain pack the store does not hold: name, bytes
    outcomes: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.site.alias}:{self.site.a}"


def _make_history(site: Site) -> History:
    env = client_env(site, "ann")
    work = site.base / "work"
    ok(env, "--store", f"{site.alias}:{site.a}", "init", "--no-encrypt", "-c", "docs",
       str(work))
    commits, contents = [], {}
    for number, files in enumerate([{"a.txt": b"one\n", "sub/b.bin": os.urandom(70_000)},
                                    {"a.txt": b"two\n", "c.txt": b"three\n"}]):
        for name, data in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
        ok(env, "-C", str(work), "commit", "-m", f"commit {number}")
        store = Store.open(site.a)
        try:
            head = store.read_ref("docs")
            assert head is not None
            commits.append(head.hex)
            tree = Commit.decode(store.odb.get(head)[1]).tree.hex
        finally:
            store.close()
        contents[head.hex] = files_of(work)
    # An encrypted collection: the client makes its key and keyring (written as new).
    ok(env, "--store", f"{site.alias}:{site.a}", "collection", "create", "enc")
    keys = Path(site.a, "keys")
    keyring_files = {p.name: p.read_bytes() for p in keys.iterdir() if p.suffix == ".toml"}
    # A plain pack from another store (random content: nothing the store holds).
    scratch = site.base / "scratch"
    new_store(scratch / "store")
    local = client_env(site, "scratch")
    ok(local, "--store", str(scratch / "store"), "init", "--no-encrypt", "-c", "s",
       str(scratch / "work"))
    (scratch / "work/data.bin").write_bytes(os.urandom(5000))
    ok(local, "-C", str(scratch / "work"), "commit", "-m", "scratch")
    packs = sorted((scratch / "store/volumes").rglob("packs/*/*"), key=lambda p: p.stat().st_size)
    pack = packs[-1]
    return History(site, env, commits, contents, keyring_files, tree,
                   (pack.name, pack.read_bytes()))


@dataclass
class Struck:
    """What an attack got: the server's answer (raw requests) or the exit status (CLI), and
    the server's stderr (what ssh passed through)."""

    result: dict[str, Any] | int | None
    stderr: str

    @property
    def error(self) -> str | None:
        if isinstance(self.result, dict) and isinstance(self.result.get("error"), dict):
            return str(self.result["error"].get("type"))
        return None


def _raw(history: History, fields: dict[str, Any], data: bytes | None = None,
         command: str | None = None) -> Struck:
    site = history.site
    session = RawSession(site.ssh(command or asked(site.a)), timeout=SESSION_TIMEOUT)
    assert "ok" in session.hello()
    answer, _ = session.request(fields, data)
    session.finish()
    return Struck(answer, session.stderr.decode(errors="replace"))


def _ref_update(history: History, new: str, **extra: Any) -> Struck:
    fields = {"op": "ref.update", "name": "docs", "new": new, "committer": SIGNATURE,
              "message": "attack", **extra}
    return _raw(history, fields)


def _pack_put(history: History, name: str, data: bytes, collection: str) -> Struck:
    return _raw(history, {"op": "pack.put", "pack": name, "collection": collection}, data)


def _keyring(history: History) -> tuple[str, bytes]:
    (name, data), = history.keyring_files.items()
    return name, data


def _other_store_keyring(history: History) -> bytes:
    _name, data = _keyring(history)
    text = re.sub(r'store_id = "[^"]*"', 'store_id = "' + "e" * 32 + '"', data.decode())
    changed = re.sub(r'name = "[^"]*"', 'name = "evil"', text, count=1)
    assert changed.count('"evil"') == 1 and "e" * 32 in changed
    return changed.encode()


def _named(data: bytes) -> tuple[str, bytes]:
    """A pack's name for ``data``: whatever it holds, it is named by its bytes."""
    return blake3.blake3(data).hexdigest(), data


def _flipped(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


def _cli(history: History, *args: str) -> Struck:
    ran = run_vst(history.env, "--store", history.url, *args)
    return Struck(ran.returncode, ran.stderr)



@dataclass(frozen=True)
class Attack:
    id: str
    run: Callable[[History], Struck]
    expect: str | int | tuple[str, ...]  # error type(s), or the CLI's exit status
    bug: str | None = None


ATTACKS = [
    Attack("cli-update-ref-back-without-old",
           lambda h: _cli(h, "update-ref", "docs", h.commits[0]), 5),
    Attack("cli-update-ref-back-from-head",
           lambda h: _cli(h, "update-ref", "docs", h.commits[0], h.commits[1]), 5),
    Attack("ref-update-check-old-false",
           lambda h: _ref_update(h, h.commits[0], check_old=False), "Refused"),
    Attack("ref-update-check-old-zero",
           lambda h: _ref_update(h, h.commits[0], check_old=0), "Refused"),
    Attack("ref-update-back-from-head",
           lambda h: _ref_update(h, h.commits[0], expected=h.commits[1]), "Refused"),
    Attack("ref-update-to-a-tree",
           lambda h: _ref_update(h, h.tree, expected=h.commits[1]), "UsageError"),
    Attack("ref-update-to-a-missing-object",
           lambda h: _ref_update(h, "cd" * 32, expected=h.commits[1]), "ObjectMissing"),
    Attack("ref-update-name-traversal",
           lambda h: _ref_update(h, h.commits[0], name="../refs/docs",
                                 expected=h.commits[1]), "NotFound"),
    Attack("ref-update-encrypted-check-old-false",
           lambda h: _ref_update(h, h.commits[0], name="enc", check_old=False), "Refused"),
    Attack("keyring-rewrite",
           lambda h: _raw(h, {"op": "keyring.write", "new": False}, _keyring(h)[1]),
           "Refused"),
    Attack("keyring-rewrite-as-new",
           lambda h: _raw(h, {"op": "keyring.write", "new": True}, _keyring(h)[1]),
           "AlreadyExists"),
    Attack("keyring-of-another-store",
           lambda h: _raw(h, {"op": "keyring.write", "new": True}, _other_store_keyring(h)),
           "Refused"),
    Attack("pack-bytes-not-matching-name",
           lambda h: _pack_put(h, "ef" * 32, h.foreign_pack[1], "docs"), "CorruptPack"),
    Attack("plain-pack-into-encrypted-collection",
           lambda h: _pack_put(h, *h.foreign_pack, "enc"), "CorruptPack"),
    Attack("truncated-pack-named-by-its-bytes",
           lambda h: _pack_put(h, *_named(h.foreign_pack[1][:-100]), "docs"),
           ("CorruptPack",)),
    Attack("pack-with-a-flipped-byte-named-by-its-bytes",
           lambda h: _pack_put(h, *_named(_flipped(h.foreign_pack[1])), "docs"),
           ("CorruptPack", "CorruptObject")),
    Attack("ref-update-committer-with-a-tab",
           lambda h: _ref_update(h, h.commits[-1], expected=h.commits[-1],
                                 committer="Eve\tTab <eve@example.com> 1700000000 +0000"),
           "UsageError"),
    Attack("collection-create-dotdot",
           lambda h: _raw(h, {"op": "collection.create", "name": "../x"}), "UsageError"),
    Attack("collection-create-slash",
           lambda h: _raw(h, {"op": "collection.create", "name": "a/b"}), "UsageError"),
    Attack("collection-create-over-existing",
           lambda h: _raw(h, {"op": "collection.create", "name": "docs"}), "AlreadyExists"),
    Attack("collection-create-over-existing-encrypted",
           lambda h: _raw(h, {"op": "collection.create", "name": "docs",
                              "keyring": _keyring(h)[0].removesuffix(".toml")}),
           "AlreadyExists"),
    Attack("write-when-read-only-was-asked",
           lambda h: _raw(h, {"op": "collection.create", "name": "new"},
                          command=f"vst serve --stdio --read-only {h.site.a}"), "Refused"),
]


def _violations(history: History) -> list[str]:
    site, (first, second) = history.site, history.commits
    found = []
    store = Store.open(site.a)
    try:
        head = store.read_ref("docs")
        if head is None or head.hex != second:
            found.append(f"head is {head}, not {second}")
        try:
            moves = [(e.old.hex, e.new.hex) for e in store.reflog("docs")]
        except Exception as exc:  # the reflog itself broken is a violation too
            moves = [("unreadable", str(exc))]
        if moves != [(ZERO, first), (first, second)]:
            found.append(f"reflog holds {moves}")
        if sorted(store.collection_names()) != ["docs", "enc"]:
            found.append(f"collections are {store.collection_names()}")
        if store.odb.index.has_pack(Oid.from_hex(history.foreign_pack[0])):
            found.append("the foreign pack was taken")
        if list(Path(site.a).rglob(".tmp-*")):
            found.append("a refused pack was left behind")
    finally:
        store.close()
    keys = {p.name: p.read_bytes() for p in Path(site.a, "keys").iterdir()
            if p.suffix == ".toml"}
    if keys != history.keyring_files:
        found.append("keys/ changed")
    for stray in ("srv/a/store/x.toml", "srv/a/x.toml", "srv/a/store/collections/a"):
        if (site.base / stray).exists():
            found.append(f"{stray} appeared")
    # Every pre-attack commit still restores byte for byte (read back locally).
    local = client_env(site, "auditor")
    for number, commit in enumerate(history.commits):
        target = site.base / f"restored-{number}"
        shutil.rmtree(target, ignore_errors=True)
        ran = run_vst(local, "--store", site.a, "clone", "--rev", commit, "docs", str(target))
        if ran.returncode != 0:
            found.append(f"commit {commit} does not restore: {ran.stderr.strip()}")
        elif files_of(target) != history.contents[commit]:
            found.append(f"commit {commit} restores different bytes")
    return found


@pytest.fixture(scope="module")
def attacked(site: Site) -> Iterator[History]:
    history = _make_history(site)
    history.outcomes = run_all({attack.id: partial(attack.run, history) for attack in ATTACKS})
    history.violations = _violations(history)
    yield history


@pytest.mark.parametrize("attack", params(ATTACKS), ids=[attack.id for attack in ATTACKS])
def test_append_only_holds_against_the_key(attacked: History, attack: Attack) -> None:
    struck: Struck = attacked.outcomes[attack.id]
    assert clean_stderr(struck.stderr), struck.stderr
    if isinstance(attack.expect, int):
        assert struck.result == attack.expect, struck.stderr
    else:
        expected = attack.expect if isinstance(attack.expect, tuple) else (attack.expect,)
        assert struck.error in expected, struck.result
    assert attacked.violations == []
    assert attacked.site.escapes() == []


def test_a_forward_move_cannot_make_the_reflog_unreadable(site: Site) -> None:
    path = site.base / "srv/a/tab/store"
    site.inside[new_store(path)] = "srv/a/tab/store"
    env = client_env(site, "tab")
    work = site.base / "tab-work"
    ok(env, "--store", f"{site.alias}:{path}", "init", "--no-encrypt", "-c", "t", str(work))
    (work / "f").write_text("one\n")
    ok(env, "-C", str(work), "commit", "-m", "one")
    (work / "f").write_text("two\n")
    tabbed = run_vst({**env, "VST_COMMITTER_NAME": "Eve\tTab"}, "-C", str(work), "commit",
                     "-m", "two")
    store = Store.open(str(path))
    try:
        head = store.read_ref("t")
        moves = len(store.reflog("t"))
    finally:
        store.close()
    # Refused, or taken with a reflog that still reads back whole.
    assert tabbed.returncode != 0 or moves == 2, head


# -- 5. hosts and users that ssh would take for options (client side, no sshd needed) -------------


CLIENT_URLS = [
    ("scp-host-proxycommand", "-oProxyCommand=touch${IFS}$PWNED:store"),
    ("url-host-proxycommand", "ssh://-oProxyCommand=touch${IFS}$PWNED/store"),
    ("url-user-dash-l", "ssh://-l@host/store"),
    ("scp-user-dash-l", "-lroot@host:store"),
    ("url-bracketed-host-proxycommand", "ssh://[-oProxyCommand=touch${IFS}$PWNED]/store"),
    ("url-percent-encoded-user", "ssh://%2DoProxyCommand=touch${IFS}$PWNED@host/store"),
    ("url-dash-host-with-port", "ssh://user@-host:22/store"),
    ("scp-host-with-space", "-oProxyCommand=touch $PWNED:store"),
    ("url-host-with-tab", "ssh://ho\tst/store"),
    ("scp-path-with-nul", "host:/srv/a/store\0/x"),
    ("scp-path-with-newline", "host:/srv/a/store\n/x"),
    ("url-without-path", "ssh://host/"),
    ("url-port-zero", "ssh://host:0/store"),
    ("url-port-over-65535", "ssh://host:99999/store"),
]


@pytest.mark.parametrize("url", [u[1] for u in CLIENT_URLS], ids=[u[0] for u in CLIENT_URLS])
def test_a_host_or_user_that_ssh_would_take_for_an_option_is_refused(
        tmp_path: Path, url: str) -> None:
    pwned = tmp_path / "pwned"
    ran = vst_run("--store", url, "collection", "list", env={
        "PWNED": str(pwned), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "VST_SSH": "ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=2"})
    assert ran.code == 2, ran.err
    assert ran.err.startswith("vst: error: ")
    assert not pwned.exists()


# -- 6. the server's memory under abuse -----------------------------------------------------------


def _served_directly(root: Path) -> RawSession:
    """A session of ``vst serve`` run directly (no sshd: its memory is what is measured),
    confined and append-only as under a forced command, on a new store in ``root``."""
    new_store(root / "store")
    session = RawSession(
        [VST, "serve", "--stdio", "--restrict-to", str(root), "--append-only"],
        env=environment(SSH_ORIGINAL_COMMAND=asked(str(root / "store"))), timeout=600)
    assert "ok" in session.hello()
    return session


def test_the_server_memory_stays_bounded_under_abuse(tmp_path: Path) -> None:
    root = tmp_path / "root"
    session = _served_directly(root)
    # Max-size batches of ids, each answered.
    haves = 200 if TORTURE else 16
    batch = message({"op": "have"}, os.urandom(32 * MAX_IDS))
    for _ in range(haves):
        session.send(batch)
        answer = session.receive()
        assert answer is not None and "ok" in answer
        assert len(session.data(answer)) == MAX_IDS
    # Messages of the largest size, answered one by one.
    for _ in range(20):
        answer, listing = session.request({"op": "collections",
                                           "pad": "x" * (MAX_MESSAGE - 64)})
        assert answer is not None and "ok" in answer and listing == b"[]"
    # Large data refused after its announcement, read and dropped (stream kept in step).
    piece = frame(b"B", b"\0" * MIB)
    for _ in range(3):
        session.send(message({"op": "pack.put", "pack": SOME_ID, "collection": "nope",
                              "data": 64 * MIB}))
        for _ in range(64):
            session.send(piece)
        answer = session.receive()
        assert answer is not None and answer["error"]["type"] == "NotFound", answer
    # A 200 MiB pack whose bytes do not match its name: spooled, hashed, refused.
    session.send(message({"op": "pack.put", "pack": SOME_ID, "data": 200 * MIB}))
    for _ in range(200):
        session.send(piece)
    answer = session.receive()
    assert answer is not None and answer["error"]["type"] == "CorruptPack", answer
    peak = session.peak_memory()
    # Then an announcement far over the limit: refused unread, the session ends.
    session.send(message({"op": "have", "data": 2**40}))
    rest = session.messages_until_end()
    session.finish()
    print(f"\nS16 server peak memory (VmHWM): {peak / MIB:.1f} MiB after {haves} have "
          f"batches of {MAX_IDS} ids, 20 messages of 1 MiB, 3 x 64 MiB drained, "
          f"a 200 MiB pack refused")
    assert [m["error"]["type"] for m in rest] == ["ProtocolError"]
    assert session.returncode == 0 and clean_stderr(session.stderr.decode())
    assert peak < 200 * MIB
    assert not list(root.glob("store/**/.tmp-*")), "a refused pack was left behind"


@pytest.mark.skipif(not TORTURE, reason="about 10 s: runs with VST_TORTURE=1")
def test_many_collections_do_not_lock_the_clients_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    session = _served_directly(root)
    created, refused = 0, False
    while created < 8000 and not refused:
        names = [f"{created + i:06d}" + "x" * 94 for i in range(100)]
        session.send(b"".join(_m(op="collection.create", name=name) for name in names))
        for _ in names:
            answer, _ = session.answer()
            assert answer is not None
            refused = refused or "error" in answer  # a quota is a fix too
            created += "ok" in answer
    answer, _ = session.request({"op": "collections"})
    session.finish()
    assert answer is not None and "ok" in answer, (created, answer)


# -- the count ------------------------------------------------------------------------------------


def test_at_least_30_attempts_are_made() -> None:
    attempts = (len(PATHS) + len(COMMANDS) + len(SWAPS) + len(ABUSES) + len(ATTACKS) + 1
                + len(CLIENT_URLS))
    print(f"\nS16 attempts: {attempts} (paths {len(PATHS)}, commands {len(COMMANDS)}, "
          f"swaps {len(SWAPS)}, protocol {len(ABUSES)}, append-only {len(ATTACKS) + 1}, "
          f"client {len(CLIENT_URLS)})")
    assert attempts >= 30
