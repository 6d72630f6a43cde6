"""The command line: help for every command, exit codes, error messages, --json and
--debug, the cat-file protocols, and a few real processes for SIGPIPE, Ctrl-C, --version
and -C."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from clirun import Ran, vst_run

import vst
from vst.cli import COMMANDS
from vst.errors import (
    AlreadyExists,
    Corrupt,
    CorruptRef,
    Interrupted,
    NotAStore,
    NotFound,
    RefConflict,
    UnsupportedFormat,
    UsageError,
)
from vst.objects.commit import Signature
from vst.objects.oid import Oid
from vst.objects.tree import Tree, TreeEntry
from vst.objects.types import ObjectType
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.write_tree import write_tree
from vst.store import Store

SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)
VST = str(Path(sys.executable).with_name("vst"))


def assert_one_line_error(ran: Ran) -> None:
    """git-style: 'vst: error: ...' and at most a 'hint: ...' line; no traceback."""
    lines = ran.err_lines
    assert lines and lines[0].startswith("vst: error: "), ran.err
    assert len(lines) <= 2, ran.err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), ran.err
    assert "Traceback" not in ran.err


@dataclass
class Ready:
    """A store with collection 'c' at a commit of a small tree."""

    store: Store
    path: str
    tree: Oid
    commit: Oid
    blob: Oid  # the content of a.txt


@pytest.fixture
def ready(store: Store, tmp_path: Path, make_tree: Callable[..., Path]) -> Ready:
    src = make_tree(tmp_path / "src", {"a.txt": b"alpha\n", "sub": {"b.txt": b"bravo"}})
    # Fixed times, so fixed ids: a test that names an absent id prefix ("0000") must not
    # meet one by chance.
    for path in (src / "a.txt", src / "sub" / "b.txt", src / "sub"):
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    tree = write_tree(store, str(src))
    commit = commit_tree(store, tree, [], b"first", author=SIG, committer=SIG)
    store.create_collection("c")
    store.update_ref("c", commit, None, committer=SIG, message="first")
    blob = store.odb.read_tree(tree).get(b"a.txt")
    assert blob is not None
    store.close()
    return Ready(store, store.path, tree, commit, blob.oid)


# -- help ------------------------------------------------------------------------------------


def _every_command() -> list[list[str]]:
    found = []
    for name, (module, _, _) in COMMANDS.items():
        command = importlib.import_module(f"vst.cli.{module}").command
        assert command.name == name
        found.append([name])
        if isinstance(command, click.Group):
            assert command.commands, name
            found += [[name, sub] for sub in sorted(command.commands)]
    return found


@pytest.mark.parametrize("words", _every_command(), ids=" ".join)
def test_help_for_every_command(words: list[str]) -> None:
    for flag in ("--help", "-h"):
        ran = vst_run(*words, flag)
        assert ran.code == 0, ran.err
        assert ran.err == ""
        text = ran.out.decode()
        assert text.startswith(f"Usage: vst {' '.join(words)} ")
        assert "-h, --help" in text


def test_top_level_help_lists_every_command_in_two_sections() -> None:
    ran = vst_run("--help")
    assert ran.code == 0 and ran.err == ""
    text = ran.out.decode()
    porcelain, _, plumbing = text.partition("Plumbing commands:")
    assert "Commands:" in porcelain
    for name, (_, section, _) in COMMANDS.items():
        assert f"  {name} " in (porcelain if section == "porcelain" else plumbing), name
    assert vst_run().code == 2  # no command: a usage error, not a help page with exit 0


# -- exit codes and error messages -------------------------------------------------------------


def test_exit_code_table() -> None:
    """The published codes (docs/scripting.md) never change."""
    assert UsageError.exit_code == 2
    assert NotAStore.exit_code == 10
    assert Corrupt.exit_code == CorruptRef.exit_code == 14
    assert UnsupportedFormat.exit_code == 15
    assert RefConflict.exit_code == 16
    assert NotFound.exit_code == 17
    assert AlreadyExists.exit_code == 18
    assert Interrupted.exit_code == 130


def _corrupt_ref(ready: Ready) -> None:
    Path(ready.path, "refs", "c").write_bytes(b"not an id\n")


def _garbage_config(ready: Ready) -> None:
    Path(ready.path, "config.toml").write_bytes(b"[store\n\xff")


def _future_format(ready: Ready) -> None:
    config = Path(ready.path, "config.toml")
    config.write_text(config.read_text().replace("format = 1", "format = 7"))


def _nothing(ready: Ready) -> None:
    pass


S = ["--store", "{store}"]
ERROR_CASES: list[tuple[str, Callable[[Ready], None], list[str], int]] = [
    ("unknown-command", _nothing, [*S, "nosuchcmd"], 2),
    ("unknown-option", _nothing, [*S, "ls-tree", "--bogus", "c"], 2),
    ("missing-argument", _nothing, [*S, "rev-parse"], 2),
    ("bad-option-value", _nothing, [*S, "rev-parse", "--short=x", "c"], 2),
    ("cat-file-no-mode", _nothing, [*S, "cat-file", "c"], 2),
    ("missing-subcommand", _nothing, [*S, "collection"], 2),
    ("conflicting-options", _nothing, [*S, "hash-object", "--stdin", "--stdin-paths"], 2),
    ("not-a-tree", _nothing, [*S, "ls-tree", "c:a.txt"], 2),
    ("no-such-dir", _nothing, ["-C", "/nonexistent/dir", "show-ref"], 2),
    ("not-a-store", _nothing, ["--store", "{tmp}/nowhere", "show-ref"], 10),
    ("no-store-here", _nothing, ["-C", "{tmp}", "show-ref"], 10),
    ("unknown-scheme", _nothing, ["--store", "ftp://host/x", "show-ref"], 10),
    ("ssh-option-host", _nothing, ["--store", "ssh://-oProxyCommand=x/y", "show-ref"], 2),
    ("push-to-non-store", _nothing, [*S, "push-blob", "--to", "{tmp}", "c"], 10),
    ("corrupt-ref", _corrupt_ref, [*S, "rev-parse", "c"], 14),
    ("corrupt-config", _garbage_config, [*S, "show-ref"], 14),
    ("unsupported-format", _future_format, [*S, "show-ref"], 15),
    ("ref-conflict", _nothing, [*S, "update-ref", "c", "c", "0" * 64], 16),
    ("unknown-revision", _nothing, [*S, "rev-parse", "nope"], 17),
    ("unknown-path", _nothing, [*S, "cat-file", "-p", "c:missing"], 17),
    ("no-parent", _nothing, [*S, "rev-parse", "c~1"], 17),
    ("unknown-collection", _nothing, [*S, "update-ref", "nope", "c"], 17),
    ("collection-exists", _nothing, [*S, "collection", "create", "c"], 18),
    ("store-exists", _nothing, ["store", "init", "{store}"], 18),
    ("invalid-collection", _nothing, [*S, "collection", "create", "a/b"], 2),
]


def _expand(args: list[str], ready: Ready, tmp_path: Path) -> list[str]:
    return [a.format(tmp=tmp_path, store=ready.path) for a in args]


@pytest.mark.parametrize(("setup", "args", "code"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_errors_exit_codes_and_messages(ready: Ready, tmp_path: Path,
                                        setup: Callable[[Ready], None], args: list[str],
                                        code: int) -> None:
    setup(ready)
    before = {p: p.read_bytes() for p in Path(ready.path).rglob("*")
              if p.is_file() and not p.name.startswith("index.sqlite")}
    argv = _expand(args, ready, tmp_path)
    ran = vst_run(*argv)
    assert ran.code == code, ran.err
    assert ran.out == b""
    assert_one_line_error(ran)
    # Invariant 8: the store is as it was.
    after = {p: p.read_bytes() for p in Path(ready.path).rglob("*")
             if p.is_file() and not p.name.startswith("index.sqlite")}
    assert after == before

    as_json = vst_run("--json", *argv)
    assert as_json.code == code
    lines = as_json.err_lines
    record = json.loads(lines[-1])
    assert record["type"] == "error" and record["code"] == code
    assert lines[0] == f"vst: error: {record['message']}"
    assert "Traceback" not in as_json.err


def _boom_module() -> types.ModuleType:
    """A command with a bug in it, to see how the entry point reports internal errors."""

    def crash() -> None:
        raise RuntimeError("something impossible happened")

    module = types.ModuleType("vst.cli._test_boom")
    module.command = click.Command("boom", callback=crash)  # type: ignore[attr-defined]
    return module


def test_internal_error_traceback_only_with_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vst.cli._test_boom", _boom_module())
    monkeypatch.setitem(COMMANDS, "boom", ("_test_boom", "plumbing", "crash on purpose"))
    ran = vst_run("boom")
    assert ran.code == 70
    assert ran.err_lines == [
        "vst: error: internal error: RuntimeError: something impossible happened",
        "hint: rerun with --debug and report it"]
    debug = vst_run("--debug", "boom")
    assert debug.code == 70
    assert "Traceback (most recent call last)" in debug.err
    assert 'raise RuntimeError("something impossible happened")' in debug.err
    assert debug.err_lines[-2].startswith("vst: error: internal error: RuntimeError")
    as_json = vst_run("--json", "boom")
    assert json.loads(as_json.err_lines[-1])["code"] == 70


# -- cat-file ----------------------------------------------------------------------------------


def test_cat_file_exists(ready: Ready) -> None:
    s = ready.path
    for name in ("c", ready.commit.hex, ready.commit.hex[:12], "c:a.txt", "c:sub", "c~0"):
        ran = vst_run("--store", s, "cat-file", "-e", name)
        assert (ran.code, ran.out, ran.err) == (0, b"", ""), name
    for name in ("nope", "0" * 64, "0000", "c:missing", "c~1", "c@{5}"):
        ran = vst_run("--store", s, "cat-file", "-e", name)
        assert (ran.code, ran.out, ran.err) == (1, b"", ""), name


def test_cat_file_exists_is_1_when_the_pack_is_gone(ready: Ready) -> None:
    """-e promises 'exists and is valid': an index entry for a vanished pack is not."""
    store = Store.open(ready.path)
    pack = store.odb.index.lookup(ready.blob).pack.hex
    store.close()
    Path(ready.path, "volumes", "default", "packs", pack[:2], pack).unlink()
    assert vst_run("--store", ready.path, "cat-file", "-e", ready.blob.hex).code == 1
    assert vst_run("--store", ready.path, "cat-file", "-e", "c").code == 0  # another pack


def test_cat_file_type_size_pretty(ready: Ready) -> None:
    s = ready.path
    assert vst_run("--store", s, "cat-file", "-t", "c").out == b"commit\n"
    assert vst_run("--store", s, "cat-file", "-t", "c:").out == b"tree\n"
    assert vst_run("--store", s, "cat-file", "-t", "c:a.txt").out == b"blob\n"
    assert vst_run("--store", s, "cat-file", "-s", "c:a.txt").out == b"6\n"
    assert vst_run("--store", s, "cat-file", "-p", "c:a.txt").out == b"alpha\n"
    commit = vst_run("--store", s, "cat-file", "-p", "c").out
    assert commit.startswith(f"tree {ready.tree}\nauthor Test User".encode())
    assert commit.endswith(b"\n\nfirst\n")
    tree = vst_run("--store", s, "cat-file", "-p", "c:").out.decode()
    ls = vst_run("--store", s, "ls-tree", "c").out.decode()
    assert tree == ls
    assert [line.split("\t")[1] for line in tree.splitlines()] == ["a.txt", "sub"]
    assert tree.startswith(f"100644 blob {ready.blob} 6 ")


def test_cat_file_batch(ready: Ready) -> None:
    store = Store.open(ready.path)
    _, tree_content = store.odb.get(ready.tree)
    _, commit_content = store.odb.get(ready.commit)
    store.close()
    names = f"{ready.blob}\nc\nnope\n{ready.tree}\nc:sub/b.txt\n{'0' * 64}\n\n".encode()
    ran = vst_run("--store", ready.path, "cat-file", "--batch", input=names)
    assert ran.code == 0 and ran.err == ""
    bravo = Oid(__import__("blake3").blake3(b"blob 5\0bravo").digest())
    assert ran.out == (
        f"{ready.blob} blob 6\n".encode() + b"alpha\n\n"
        + f"{ready.commit} commit {len(commit_content)}\n".encode() + commit_content + b"\n"
        + b"nope missing\n"
        + f"{ready.tree} tree {len(tree_content)}\n".encode() + tree_content + b"\n"
        + f"{bravo} blob 5\n".encode() + b"bravo\n"
        + f"{'0' * 64} missing\n".encode()
        + b" missing\n")
    check = vst_run("--store", ready.path, "cat-file", "--batch-check", input=names)
    assert check.code == 0 and check.err == ""
    assert check.out.decode().splitlines() == [
        f"{ready.blob} blob 6", f"{ready.commit} commit {len(commit_content)}",
        "nope missing", f"{ready.tree} tree {len(tree_content)}", f"{bravo} blob 5",
        f"{'0' * 64} missing", " missing"]
    empty = vst_run("--store", ready.path, "cat-file", "--batch-check", input=b"")
    assert (empty.code, empty.out) == (0, b"")
    with_arg = vst_run("--store", ready.path, "cat-file", "--batch", "c")
    assert with_arg.code == 2


# -- other commands through the CLI -----------------------------------------------------------


def test_commit_tree_takes_author_date_from_the_environment(ready: Ready) -> None:
    env = {"VST_AUTHOR_NAME": "Ada", "VST_AUTHOR_EMAIL": "ada@example.com",
           "VST_AUTHOR_DATE": "2024-05-01T12:00:00+02:00",
           "VST_COMMITTER_NAME": "Bob", "VST_COMMITTER_EMAIL": "bob@example.com",
           "VST_COMMITTER_DATE": "@1700000000 -0500"}
    ran = vst_run("--store", ready.path, "commit-tree", "c:", "-p", "c", "-m", "one", "-m",
                  "two", env=env)
    assert ran.code == 0, ran.err
    oid = ran.out.decode().strip()
    shown = vst_run("--store", ready.path, "cat-file", "-p", oid).out.decode()
    assert shown == (f"tree {ready.tree}\nparent {ready.commit}\n"
                     "author Ada <ada@example.com> 1714557600 +0200\n"
                     "committer Bob <bob@example.com> 1700000000 -0500\n\none\n\ntwo\n")
    bad = vst_run("--store", ready.path, "commit-tree", "c:", "-m", "x",
                  env={**env, "VST_AUTHOR_DATE": "next tuesday"})
    assert bad.code == 2
    assert bad.err_lines[0] == "vst: error: invalid date 'next tuesday'"


def test_update_ref_and_show_ref(ready: Ready) -> None:
    s = ready.path
    ran = vst_run("--store", s, "commit-tree", "c:", "-p", "c", "-m", "second")
    second = ran.out.decode().strip()
    assert vst_run("--store", s, "update-ref", "c", second, ready.commit.hex).code == 0
    assert vst_run("--store", s, "rev-parse", "c", "c~1", "c@{1}").out.decode().split() == [
        second, ready.commit.hex, ready.commit.hex]
    stale = vst_run("--store", s, "update-ref", "c", ready.commit.hex, ready.commit.hex)
    assert stale.code == 16
    assert stale.err_lines[1].startswith("hint: ")
    assert vst_run("--store", s, "show-ref").out == f"{second} c\n".encode()
    records = [json.loads(line) for line in
               vst_run("--store", s, "--json", "show-ref").out.splitlines()]
    assert records == [{"type": "ref", "collection": "c", "id": second}]
    assert vst_run("--store", s, "rev-parse", "--short=8", "c").out == f"{second[:8]}\n".encode()


def test_rev_parse_short_before_a_revision(ready: Ready) -> None:
    ran = vst_run("--store", ready.path, "rev-parse", "--short", "c")
    assert ran.out == f"{ready.commit.hex[:12]}\n".encode(), ran.err


def test_stdout_carries_results_only(ready: Ready, tmp_path: Path) -> None:
    src = tmp_path / "with-fifo"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    os.mkfifo(src / "pipe")
    ran = vst_run("--store", ready.path, "write-tree", str(src))
    assert ran.code == 0
    assert len(ran.out.split()) == 1 and len(ran.out.strip()) == 64
    assert ran.err_lines == [f"vst: warning: skipping '{src / 'pipe'}': not a regular file, "
                             "directory or symlink"]
    quiet = vst_run("-q", "--store", ready.path, "write-tree", str(src))
    assert quiet.out == ran.out and quiet.err == ""
    counts = vst_run("--store", ready.path, "--json", "count-objects")
    record = json.loads(counts.out)
    assert record["type"] == "count" and record["collections"] == 1
    assert record["objects"] >= 5 and record["packs"] >= 1


def test_hash_object_cli(ready: Ready, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"alpha\n")
    assert vst_run("hash-object", str(tmp_path / "f")).out == f"{ready.blob}\n".encode()
    assert vst_run("hash-object", "--stdin", input=b"alpha\n").out == \
        f"{ready.blob}\n".encode()
    paths = f"{tmp_path / 'f'}\n{tmp_path / 'f'}\n".encode()
    assert vst_run("hash-object", "--stdin-paths", input=paths).out == \
        f"{ready.blob}\n{ready.blob}\n".encode()
    no_store = vst_run("-C", str(tmp_path), "hash-object", "-w", "f")
    assert no_store.code == 10


# -- real processes -----------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VST_")}
    return {**env, **extra}


def test_version_and_dash_c(ready: Ready, tmp_path: Path) -> None:
    ran = subprocess.run([VST, "--version"], capture_output=True, env=_env(), timeout=60,
                         check=False)
    assert ran.returncode == 0 and ran.stderr == b""
    assert ran.stdout == f"vst {vst.__version__}\n".encode()
    # -C DIR: run as if started in DIR (here: inside the store, found without --store).
    ran = subprocess.run([VST, "-C", ready.path, "show-ref"], capture_output=True,
                         env=_env(), cwd=tmp_path, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"{ready.commit} c\n".encode()
    ran = subprocess.run([VST, "-C", "src", "hash-object", "a.txt"], capture_output=True,
                         env=_env(), cwd=tmp_path, timeout=60, check=False)
    assert ran.stdout == f"{ready.blob}\n".encode()


def test_broken_pipe_exits_141_silently(ready: Ready) -> None:
    """`vst ls-tree -r BIG | head -1`: the reader goes away; vst exits 141, says nothing."""
    store = Store.open(ready.path)
    with store.odb.writer() as writer:
        big = writer.put(ObjectType.TREE, Tree.from_entries(
            TreeEntry(f"file-{i:05d}.txt".encode(), 0o100644, ObjectType.BLOB, ready.blob, 6)
            for i in range(5000)).encode())
    store.close()
    process = subprocess.Popen([VST, "--store", ready.path, "ls-tree", "-r", big.hex],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as `head -1` does after its line
    err = process.stderr.read()
    code = process.wait(timeout=60)
    assert first.startswith(f"100644 blob {ready.blob} 6 ".encode())
    assert first.endswith(b"\tfile-00000.txt\n")
    assert code == 141
    assert err == b""


def _wait_until_reading_stdin(pid: int, timeout: float = 20.0) -> None:
    """hash-object --stdin is blocked on its pipe once the chunker has loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            time.sleep(2.0)  # no /proc: give it time to start
            return
        if "pyfastcdc" in maps:
            time.sleep(0.3)
            return
        time.sleep(0.05)
    raise AssertionError("vst hash-object did not start reading")


def test_ctrl_c_exits_130_with_one_line(ready: Ready) -> None:
    process = subprocess.Popen([VST, "hash-object", "--stdin"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert process.stdin is not None
    try:
        process.stdin.write(b"some bytes, and then nothing")
        process.stdin.flush()
        _wait_until_reading_stdin(process.pid)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert out == b""
    assert err == b"vst: error: interrupted\n"


def test_json_records_for_id_printing_commands(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    assert vst_run("store", "init", store).code == 0
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"hello\n")
    hashed = vst_run("--store", store, "--json", "hash-object", str(tmp_path / "d" / "f"), "-",
                     input=b"from stdin\n")
    records = [json.loads(line) for line in hashed.out.splitlines()]
    assert [r["path"] for r in records] == [str(tmp_path / "d" / "f"), None]
    assert all(r["type"] == "object" and r["kind"] == "blob" for r in records)
    assert records[0]["size"] == 6 and len(records[0]["id"]) == 64
    tree = json.loads(vst_run("--store", store, "--json", "write-tree",
                              str(tmp_path / "d")).out)
    assert tree["type"] == "object" and tree["kind"] == "tree"
    commit = json.loads(vst_run("--store", store, "--json", "commit-tree", tree["id"],
                                "-m", "m").out)
    assert commit["kind"] == "commit"
    rev = json.loads(vst_run("--store", store, "--json", "rev-parse", f"{commit['id']}:").out)
    assert rev == {"type": "rev", "rev": f"{commit['id']}:", "id": tree["id"]}
