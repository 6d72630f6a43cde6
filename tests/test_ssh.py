"""Stores over SSH (issue 6): every porcelain command and the object and ref plumbing against
a store reached through ``vst serve --stdio``, over a real sshd on 127.0.0.1 and over the
local pipe (tests/bin/localssh.py) that stands in for ssh; errors; and S15 over the SSH
stream (what the server receives and sends holds no plaintext of an encrypted collection).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import Ran, vst_run
from test_encryption import CHUNKS, canary_tree, needles, scan

from vst.objects.oid import Oid
from vst.store import Store

LOCALSSH = Path(__file__).parent / "bin" / "localssh.py"
VST = str(Path(sys.executable).parent / "vst")


@dataclass
class Remote:
    """How this test reaches a store over SSH: ``url(path)`` is its address."""

    kind: str
    host: str
    env: dict[str, str]

    def url(self, path: Path) -> str:
        return f"{self.host}:{path}"

    def run(self, *args: str, ok: bool = True) -> Ran:
        ran = vst_run(*args, env=self.env)
        if ok:
            assert ran.code == 0, (args, ran.err)
        return ran


@pytest.fixture(params=["pipe", pytest.param("sshd", marks=pytest.mark.service)])
def remote(request: pytest.FixtureRequest, env: dict[str, str], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Remote:
    """Each test twice: over the local pipe, and over the real sshd."""
    return _remote(request, request.param, env, tmp_path, monkeypatch)


@pytest.fixture
def pipe(request: pytest.FixtureRequest, env: dict[str, str], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Remote:
    """Over the local pipe only: for what does not depend on the transport."""
    return _remote(request, "pipe", env, tmp_path, monkeypatch)


def _remote(request: pytest.FixtureRequest, kind: str, env: dict[str, str], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Remote:
    values = dict(env, VST_REMOTE_VST=VST, VST_KEY_FILE="", VST_PASSPHRASE="")
    if kind == "sshd":
        server = request.getfixturevalue("ssh_server")
        values["VST_SSH"] = server.vst_ssh
        host = server.host
    else:
        values["VST_SSH"] = shlex.join([sys.executable, str(LOCALSSH)])
        values["HOME"] = str(tmp_path)
        host = "nas"
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return Remote(kind, host, values)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vst" not in p.relative_to(root).parts}


def sample_tree(root: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("hello\n")
    (root / "docs" / "b.txt").write_text("world\n" * 1000)
    (root / "big.bin").write_bytes(rng.randbytes(3 * 1024 * 1024 + 17))
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("docs/a.txt")


@pytest.fixture
def server_store(tmp_path: Path) -> Path:
    path = tmp_path / "srv" / "store"
    path.parent.mkdir()
    Store.init(str(path)).close()
    return path


def test_the_whole_workflow_over_ssh(remote: Remote, server_store: Path, tmp_path: Path
                                     ) -> None:
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    sample_tree(work)
    url = remote.url(server_store)
    remote.run("--store", url, "init", str(work), "-c", "photos")
    first = remote.run("--json", "-C", str(work), "commit", "-m", "first")
    record = json.loads(first.out.splitlines()[-1])
    assert record["type"] == "commit" and record["round_trips"] > 0
    assert remote.run("-C", str(work), "status", "--short").out == b""
    # The store really holds it: opened locally, the commit is there.
    local = Store.open(str(server_store))
    try:
        assert local.read_ref("photos") == Oid.from_hex(record["id"])
    finally:
        local.close()
    (work / "docs" / "a.txt").write_text("changed\n")
    (work / "new.txt").write_text("new\n")
    remote.run("-C", str(work), "commit", "-m", "second")
    log = remote.run("-C", str(work), "log", "--oneline").out.decode()
    assert [line.split(" ", 1)[1] for line in log.splitlines()] == ["second", "first"]
    diff = remote.run("-C", str(work), "diff", "HEAD~1", "HEAD").out.decode()
    assert "-hello" in diff and "+changed" in diff
    assert "first" in remote.run("-C", str(work), "show", "HEAD~1").out.decode()

    cloned = remote.run("--json", "--store", url, "clone", "photos", str(other))
    assert json.loads(cloned.out.splitlines()[-1])["round_trips"] > 0
    assert files(other) == files(work)
    assert os.readlink(other / "link") == "docs/a.txt"
    # An old version of one file, and the whole tree of the first commit.
    remote.run("-C", str(other), "restore", "--source", "HEAD~1", "docs/a.txt")
    assert (other / "docs" / "a.txt").read_text() == "hello\n"
    (work / "third.txt").write_text("third\n")
    remote.run("-C", str(work), "commit", "-m", "third")
    remote.run("-C", str(other), "restore", "docs/a.txt")
    remote.run("-C", str(other), "pull")
    assert files(other) == files(work)
    listing = remote.run("--store", url, "collection", "list").out.decode()
    assert listing.startswith("photos\t")
    assert "no problems" in remote.run("--store", url, "fsck").err
    remote.run("-C", str(work), "drop")
    assert not work.exists()


def test_a_stale_working_copy_is_refused_and_pulls(remote: Remote, server_store: Path,
                                                  tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "f").write_text("one\n")
    url = remote.url(server_store)
    remote.run("--store", url, "init", str(a), "-c", "docs")
    remote.run("-C", str(a), "commit", "-m", "one")
    remote.run("--store", url, "clone", "docs", str(b))
    (a / "f").write_text("two\n")
    remote.run("-C", str(a), "commit", "-m", "two")
    (b / "g").write_text("mine\n")
    stale = remote.run("-C", str(b), "commit", "-m", "stale", ok=False)
    assert stale.code == 16, stale.err
    remote.run("-C", str(b), "pull")
    assert (b / "f").read_text() == "two\n" and (b / "g").read_text() == "mine\n"


def test_plumbing_over_ssh(remote: Remote, server_store: Path, tmp_path: Path) -> None:
    url = remote.url(server_store)
    remote.run("--store", url, "collection", "create", "raw", "--no-encrypt")
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(b"plumbing content\n")
    blob = remote.run("--store", url, "hash-object", "-w", str(blob_file)).out.decode().strip()
    assert remote.run("--store", url, "cat-file", "-p", blob).out == b"plumbing content\n"
    assert remote.run("--store", url, "cat-file", "-t", blob).out == b"blob\n"
    work = tmp_path / "tree"
    work.mkdir()
    (work / "file.txt").write_bytes(b"plumbing content\n")
    tree = remote.run("--store", url, "write-tree", str(work)).out.decode().strip()
    assert "file.txt" in remote.run("--store", url, "ls-tree", tree).out.decode()
    commit = remote.run("--store", url, "commit-tree", tree, "-m", "made by hand"
                        ).out.decode().strip()
    remote.run("--store", url, "update-ref", "raw", commit)
    assert remote.run("--store", url, "rev-parse", "raw").out.decode().strip() == commit
    assert remote.run("--store", url, "rev-parse", commit[:10]).out.decode().strip() == commit
    assert commit in remote.run("--store", url, "show-ref").out.decode()
    # A compare-and-swap that lost is refused with the store's own exit code.
    lost = remote.run("--store", url, "update-ref", "raw", commit, "0" * 64, ok=False)
    assert lost.code == 16, lost.err


def test_push_blob_to_a_store_over_ssh(remote: Remote, server_store: Path, tmp_path: Path
                                       ) -> None:
    source = tmp_path / "source"
    Store.init(str(source)).close()
    work = tmp_path / "w"
    work.mkdir()
    (work / "f.txt").write_text("pushed\n")
    remote.run("--store", str(source), "collection", "create", "c", "--no-encrypt")
    tree = remote.run("--store", str(source), "write-tree", str(work)).out.decode().strip()
    sent = remote.run("--store", str(source), "push-blob", "-r", "--to",
                      remote.url(server_store), tree).out.decode().split()
    assert tree in sent and len(sent) == 2
    target = Store.open(str(server_store))
    try:
        assert [e.name for e in target.odb.read_tree(Oid.from_hex(tree)).entries] == [b"f.txt"]
    finally:
        target.close()


def test_local_only_commands_say_so(remote: Remote, server_store: Path) -> None:
    for args in (["volume", "list"], ["policy", "list"], ["fsck", "--full"],
                 ["count-objects"], ["index", "rebuild"],
                 ["store", "config", "append-only", "false"]):
        ran = remote.run("--store", remote.url(server_store), *args, ok=False)
        assert ran.code == 2, (args, ran.err)
        assert "works on a local store only" in ran.err and "Traceback" not in ran.err


@pytest.mark.parametrize(("case", "code", "says"), [
    ("not-a-store", 10, "is not a vst store"),
    ("no-remote-vst", 20, "cannot reach"),
    ("ssh-fails", 20, "cannot reach"),
    ("ssh-missing", 20, "cannot run"),
])
def test_connection_errors_are_one_line(remote: Remote, tmp_path: Path, case: str, code: int,
                                        says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nothing"
    if case == "no-remote-vst":
        monkeypatch.setenv("VST_REMOTE_VST", str(tmp_path / "no-such-vst"))
        remote.env["VST_REMOTE_VST"] = str(tmp_path / "no-such-vst")
        Store.init(str(path)).close()
    elif case == "ssh-fails":
        remote.env["VST_SSH"] = "false"
    elif case == "ssh-missing":
        remote.env["VST_SSH"] = str(tmp_path / "no-such-ssh")
    ran = remote.run("--store", remote.url(path), "collection", "list", ok=False)
    assert ran.code == code, ran.err
    assert says in ran.err_lines[0] and "Traceback" not in ran.err


def test_an_ssh_command_from_the_config(pipe: Remote, server_store: Path, tmp_path: Path
                                        ) -> None:
    log = tmp_path / "ssh.log"
    pipe.env.pop("VST_SSH")
    os.environ.pop("VST_SSH")
    pipe.env["LOCALSSH_LOG"] = str(log)
    pipe.run("config", "--global", "core.sshCommand",
             shlex.join([sys.executable, str(LOCALSSH), "-o", "BatchMode=yes"]))
    pipe.run("--store", f"ssh://someone@nas:2222{server_store}", "collection", "list")
    assert log.read_text() == "someone@nas\n"


def test_s15_the_ssh_stream_holds_no_plaintext(remote: Remote, tmp_path: Path) -> None:
    """What the server reads and writes in the session (the SSH stream once decrypted on
    the server's side), captured by tee around ``vst serve``, holds neither the marker
    nor the plain hash of any file or chunk; nor does the store."""
    marker = f"canary{os.urandom(12).hex()}"
    path = tmp_path / "srv" / "store"
    path.parent.mkdir()
    Store.init(str(path), pack_size=256 * 1024, chunk_params=CHUNKS).close()
    captured = tmp_path / "captured"
    captured.mkdir()
    wrapper = tmp_path / "vst-tee"
    wrapper.write_text("#!/bin/sh\n"
                       f"n=$$\n"
                       f"tee {captured}/in.$n | {VST} \"$@\" | tee {captured}/out.$n\n")
    wrapper.chmod(0o755)
    remote.env["VST_REMOTE_VST"] = str(wrapper)
    remote.env["VST_AUTHOR_NAME"] = f"Ann {marker}"
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    canary_tree(work, marker, random.Random(15))
    url = remote.url(path)
    remote.run("--store", url, "init", str(work), "-c", "vault")
    remote.run("-C", str(work), "commit", "-m", f"first {marker}")
    remote.run("-C", str(work), "log")
    remote.run("--store", url, "clone", "vault", str(other))
    assert files(other) == files(work)
    wanted = needles(work, marker, CHUNKS)
    stream_files, stream_bytes, hits = scan(captured, wanted)
    store_files, store_bytes, store_hits = scan(path, wanted)
    print(f"\nS15 over SSH ({remote.kind}): {len(wanted)} needles; session streams: "
          f"{stream_files} files, {stream_bytes} bytes, {len(hits)} hits; store: "
          f"{store_files} files, {store_bytes} bytes, {len(store_hits)} hits")
    assert stream_bytes > 2 * 1024 * 1024  # the packs went through what was captured
    assert hits == [] and store_hits == []
    assert len(scan(work, wanted)[2]) >= 5  # the scan finds what is there in the clear


def test_many_small_files_go_through_worker_processes_both_ways(
        pipe: Remote, server_store: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough files for commit and clone to start worker processes: over SSH the parent
    asks the store which ids it lacks (commit) and fetches each job's records (clone)."""
    from vst.checkout import Checkout

    fetched = []
    fetch_and_write = Checkout._fetch_and_write

    def counted(self: Checkout, *args: object) -> object:
        fetched.append(1)
        return fetch_and_write(self, *args)  # type: ignore[arg-type]
    monkeypatch.setattr(Checkout, "_fetch_and_write", counted)
    work, other = tmp_path / "work", tmp_path / "other"
    rng = random.Random(7)
    for number in range(3000):
        folder = work / f"d{number % 17}"
        folder.mkdir(parents=True, exist_ok=True)
        # A tenth are duplicates: deduplicated within the commit, as locally.
        (folder / f"f{number}.txt").write_bytes(
            b"same\n" if number % 10 == 0 else rng.randbytes(rng.randrange(0, 3000)))
    url = pipe.url(server_store)
    pipe.run("--store", url, "init", str(work), "-c", "many")
    record = json.loads(pipe.run("--json", "-C", str(work), "commit", "-m", "many"
                                   ).out.splitlines()[-1])
    assert record["added"] == 3000
    # Round trips grow with packs and batches, not with files.
    assert record["round_trips"] < 40, record["round_trips"]
    pipe.run("--store", url, "clone", "many", str(other))
    assert files(other) == files(work)
    assert fetched  # the worker processes wrote what this process fetched
    # A change to one file asks the store about the folders' trees once, not once per
    # folder (17 here): what is left are a dozen requests whatever the tree.
    (work / "d3" / "f3.txt").write_bytes(b"changed\n")
    record = json.loads(pipe.run("--json", "-C", str(work), "commit", "-m", "one"
                                 ).out.splitlines()[-1])
    assert record["modified"] == 1 and record["round_trips"] < 17, record["round_trips"]
    # Copies of every file: the workers seal them all, the store says it holds them, and
    # only the new trees and commit are sent.
    for number in range(17):
        shutil.copytree(work / f"d{number}", work / "copy" / f"d{number}")
    record = json.loads(pipe.run("--json", "-C", str(work), "commit", "-m", "copies"
                                 ).out.splitlines()[-1])
    assert record["added"] == 3000 and record["bytes_read"] > 3000 * 1000
    assert record["bytes_new"] < 20_000, record["bytes_new"]  # trees and the commit


def test_scrub_and_replicate_run_on_the_server(remote: Remote, server_store: Path,
                                               tmp_path: Path) -> None:
    """The server scrubs and replicates its own volumes, with no key: an encrypted
    collection's packs are those the index recorded, and a bad copy is found."""
    work = tmp_path / "work"
    work.mkdir()
    sample_tree(work)
    url = remote.url(server_store)
    remote.run("--store", url, "init", str(work), "-c", "docs")
    remote.run("-C", str(work), "commit", "-m", "one")
    clean = remote.run("--json", "--store", url, "scrub")
    summary = json.loads(clean.out.splitlines()[-1])
    assert summary["packs_checked"] >= 1 and summary["bad"] == 0
    # A second disk on the server, which then loses a pack: the default policy wants a
    # copy on each volume.
    second = tmp_path / "second"
    assert vst_run("--store", str(server_store), "volume", "add", "second",
                   str(second)).code == 0
    lost = next(p for p in (second / "packs").rglob("*") if p.is_file())
    lost.unlink()
    planned = remote.run("--json", "--store", url, "replicate", "--dry-run")
    assert json.loads(planned.out.splitlines()[-1])["copied"] >= 1
    assert json.loads(planned.out.splitlines()[-1])["unwalked"] == ["docs"]
    done = json.loads(remote.run("--json", "--store", url, "replicate").out.splitlines()[-1])
    assert done["copied"] == json.loads(planned.out.splitlines()[-1])["copied"]
    assert done["short"] == 0
    pack = next(p for p in (second / "packs").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 1
    pack.write_bytes(bytes(data))
    damaged = remote.run("--json", "--store", url, "scrub", ok=False)
    assert damaged.code == 1
    assert json.loads(damaged.out.splitlines()[-1])["bad"] == 1


def test_both_spellings_name_the_same_store(pipe: Remote, server_store: Path,
                                           tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    pipe.run("--store", f"ssh://nas{server_store}", "init", str(work), "-c", "c")
    (work / "f").write_text("x\n")
    pipe.run("--store", f"nas:{server_store}", "-C", str(work), "commit", "-m", "x")
    other = pipe.run("--store", f"nas:{tmp_path}/elsewhere", "-C", str(work), "status",
                     ok=False)
    assert other.code == 2 and "belongs to the store" in other.err


def test_an_interrupted_commit_leaves_the_store_as_it_was(pipe: Remote, server_store: Path,
                                                        tmp_path: Path) -> None:
    """The client is killed while a pack is on its way: the server drops the partial pack,
    the head does not move, and the next commit goes through."""
    work, head = _history_and_a_big_change(pipe, server_store, tmp_path, seed=3)
    process = subprocess.Popen([VST, "-C", str(work), "commit", "-m", "interrupted"],
                               env={**os.environ, **pipe.env}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spool = server_store / "tmp"
    deadline = time.monotonic() + 60
    while not any(p.name.endswith("-spool") for p in spool.glob(".tmp-*")):
        assert process.poll() is None and time.monotonic() < deadline, "no pack was sent"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(p.name.endswith("-spool") for p in spool.glob(".tmp-*")):
        assert time.monotonic() < deadline, "the server left its partial pack behind"
        time.sleep(0.05)
    _unharmed_and_committing_again(pipe, server_store, work, head)


def _history_and_a_big_change(pipe: Remote, server_store: Path, tmp_path: Path,
                              seed: int) -> tuple[Path, bytes]:
    """A working copy of an unencrypted collection 'c' with one commit, and a 96 MiB file
    added since (several packs to send); returns it and the collection's head."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "small.txt").write_text("before\n")
    url = pipe.url(server_store)
    pipe.run("--store", url, "init", str(work), "-c", "c", "--no-encrypt")
    pipe.run("-C", str(work), "commit", "-m", "before")
    head = pipe.run("--store", url, "rev-parse", "c").out
    (work / "big.bin").write_bytes(random.Random(seed).randbytes(96 * 1024 * 1024))
    return work, head


def _unharmed_and_committing_again(pipe: Remote, server_store: Path, work: Path,
                                   head: bytes) -> None:
    url = pipe.url(server_store)
    assert pipe.run("--store", url, "rev-parse", "c").out == head
    assert vst_run("--store", str(server_store), "fsck").code == 0
    pipe.run("-C", str(work), "commit", "-m", "after")
    assert pipe.run("--store", url, "log", "--oneline", "c").out.count(b"\n") == 2


def test_what_is_refused_before_any_harm(pipe: Remote, server_store: Path,
                                         tmp_path: Path) -> None:
    """A store is not created under a folder named like an address; a committer with a
    TAB (it would end the signature early in the reflog) is refused; a keyring is not
    rotated over SSH (it rewrites every pack on the server's volumes)."""
    os.chdir(tmp_path)
    made = pipe.run("store", "init", "nas:elsewhere", ok=False)
    assert made.code == 2 and not (tmp_path / "nas:elsewhere").exists()
    work = tmp_path / "work"
    work.mkdir()
    (work / "f").write_text("x\n")
    url = pipe.url(server_store)
    pipe.run("--store", url, "init", str(work), "-c", "c", "--no-encrypt")
    tabbed = vst_run("-C", str(work), "commit", "-m", "x",
                     env={**pipe.env, "VST_COMMITTER_NAME": "Eve\tTab"})
    assert tabbed.code == 2, tabbed.err
    pipe.run("-C", str(work), "commit", "-m", "x")
    pipe.run("--store", url, "rev-parse", "c@{0}")  # the reflog reads
    pipe.run("--store", url, "collection", "create", "secret")
    keyring = next(iter(json.loads(line) for line in pipe.run(
        "--json", "--store", url, "key", "list").out.splitlines()
        if json.loads(line).get("type") == "keyring"))["name"]
    rotated = pipe.run("--store", url, "key", "rotate", "secret", ok=False)
    assert rotated.code == 2 and "rotated on the machine" in rotated.err
    assert sorted(p.name for p in (server_store / "keys").glob("*.toml")) == [f"{keyring}.toml"]


def test_the_stores_hooks_run_on_the_server(remote: Remote, server_store: Path,
                                            tmp_path: Path) -> None:
    """pre-receive and post-receive run where the store is, for moves made over SSH; what
    they print comes back as warnings, and a pre-receive that says no stops the move."""
    hooks = server_store / "hooks"
    hooks.mkdir(exist_ok=True)
    log = tmp_path / "received"
    (hooks / "post-receive").write_text(f"#!/bin/sh\ncat >> {log}\necho stored it\n")
    (hooks / "pre-receive").write_text(
        "#!/bin/sh\nif [ -e \"$VST_STORE/closed\" ]; then echo closed for now; exit 1; fi\n")
    for hook in hooks.iterdir():
        hook.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "f").write_text("one\n")
    url = remote.url(server_store)
    remote.run("--store", url, "init", str(work), "-c", "c")
    made = remote.run("-C", str(work), "commit", "-m", "one")
    assert "post-receive: stored it" in made.err
    commit = made.out.decode().strip()
    assert log.read_text() == f"{'0' * 64} {commit} c\n"
    (server_store / "closed").touch()
    (work / "f").write_text("two\n")
    refused = remote.run("-C", str(work), "commit", "-m", "two", ok=False)
    assert refused.code == 19 and "closed for now" in refused.err, refused.err
    assert remote.run("--store", url, "rev-parse", "c").out.decode().strip() == commit


def test_a_server_killed_mid_commit_is_one_error_and_no_damage(pipe: Remote,
                                                               server_store: Path,
                                                               tmp_path: Path) -> None:
    """The server dies while packs come in: the client says so in one line (exit 20),
    the head does not move, the store checks clean, and the commit goes through again."""
    work, head = _history_and_a_big_change(pipe, server_store, tmp_path, seed=4)
    packs = server_store / "volumes" / "default" / "packs"
    before = sum(1 for p in packs.rglob("*") if p.is_file())
    process = subprocess.Popen([VST, "-C", str(work), "commit", "-m", "interrupted"],
                               env={**os.environ, **pipe.env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sum(1 for p in packs.rglob("*") if p.is_file()) == before:
        assert process.poll() is None and time.monotonic() < deadline, "no pack arrived"
        time.sleep(0.01)
    served = subprocess.run(["pgrep", "-f", f"serve --stdio {server_store}"],
                            capture_output=True, text=True).stdout.split()
    assert served
    for pid in served:
        os.kill(int(pid), signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert process.returncode == 20, lines
    assert lines[0].startswith("vst: error: cannot reach") and "Traceback" not in err.decode()
    _unharmed_and_committing_again(pipe, server_store, work, head)
