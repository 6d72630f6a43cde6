"""Hooks: real shell scripts in tmp_path. Arguments, stdin, environment, output; pre-hooks
that refuse; hooks that are not executable, killed by a signal or cannot start; and the
store's pre-receive / post-receive around update_ref."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from vst.errors import HookRejected
from vst.hooks import run_hook, run_pre_hook, working_copy_hooks_dir
from vst.objects.commit import Signature
from vst.objects.oid import ZERO_OID, Oid
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.mktree import mktree
from vst.store import Store

SIG = Signature("Test User", "test@example.com", 1_700_000_000, 60)


def hook(directory: Path, name: str, body: str, executable: bool = True,
         shebang: str = "#!/bin/sh") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"{shebang}\n{body}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def test_args_stdin_env_cwd_and_output(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hook(hooks, "post-checkout", 'echo "args: $1|$2|$3"\necho "stdin: $(cat)"\n'
                                 'echo "env: $VST_COLLECTION $VST_WORK_TREE"\n'
                                 'echo "cwd: $(pwd)"\necho "to stderr" >&2')
    (tmp_path / "wc").mkdir()
    result = run_hook(str(hooks), "post-checkout", ["old", "new", "1"], stdin=b"a line\n",
                      env={"VST_COLLECTION": "docs", "VST_WORK_TREE": "/w"},
                      cwd=str(tmp_path / "wc"))
    assert result.ran and result.code == 0 and result.problem is None
    assert result.output.splitlines() == [
        "args: old|new|1", "stdin: a line", "env: docs /w",
        f"cwd: {tmp_path / 'wc'}", "to stderr"]


def test_the_rest_of_the_environment_is_inherited(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VST_TEST_INHERITED", "yes")
    hook(tmp_path, "post-commit", 'echo "$VST_TEST_INHERITED $VST_STORE"')
    assert run_hook(str(tmp_path), "post-commit", env={"VST_STORE": "/s"}).output == "yes /s\n"


def test_stdin_is_dev_null_by_default(tmp_path: Path) -> None:
    # If stdin were the terminal or a pipe nobody closes, `cat` would hang.
    hook(tmp_path, "pre-commit", 'cat; echo "end"')
    assert run_hook(str(tmp_path), "pre-commit").output == "end\n"


def test_a_hook_that_does_not_read_its_stdin_is_fine(tmp_path: Path) -> None:
    hook(tmp_path, "post-receive", "exit 0")
    result = run_hook(str(tmp_path), "post-receive", stdin=b"x" * (4 * 1024 * 1024))
    assert result.ran and result.problem is None


def test_missing_hooks_are_not_run(tmp_path: Path) -> None:
    assert run_hook(None, "pre-commit").ran is False
    assert run_hook(str(tmp_path / "nowhere"), "pre-commit").ran is False
    (tmp_path / "pre-commit").mkdir()  # a directory is not a hook
    assert run_hook(str(tmp_path), "pre-commit").ran is False
    assert run_pre_hook(str(tmp_path), "pre-commit") == ""


def test_a_non_executable_hook_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = hook(tmp_path, "pre-commit", "exit 1", executable=False)
    warnings: list[str] = []
    assert run_pre_hook(str(tmp_path), "pre-commit", warn=warnings.append) == ""
    assert warnings == [f"the '{path}' hook was ignored because it is not set as executable "
                        "(chmod +x it to run it)"]


def test_pre_hook_exiting_non_zero_is_rejected_with_its_output(tmp_path: Path) -> None:
    hook(tmp_path, "pre-commit", 'echo "secrets.txt holds a password"\necho "fix it" >&2\n'
                                 "exit 3")
    with pytest.raises(HookRejected) as info:
        run_pre_hook(str(tmp_path), "pre-commit")
    assert info.value.exit_code == 19
    assert info.value.message == "rejected by the 'pre-commit' hook: it exited with status 3"
    assert info.value.hint == "secrets.txt holds a password\nfix it"


def test_pre_hook_that_passes_returns_its_output(tmp_path: Path) -> None:
    hook(tmp_path, "pre-commit", 'echo "all good"')
    assert run_pre_hook(str(tmp_path), "pre-commit") == "all good\n"


def test_a_hook_killed_by_a_signal(tmp_path: Path) -> None:
    hook(tmp_path, "pre-drop", 'echo "about to die"\nkill -9 $$')
    result = run_hook(str(tmp_path), "pre-drop")
    assert result.ran and result.code == 128 + 9
    assert result.problem == "was killed by signal 9 (SIGKILL)"
    with pytest.raises(HookRejected, match=r"killed by signal 9 \(SIGKILL\)"):
        run_pre_hook(str(tmp_path), "pre-drop")


def test_a_hook_whose_interpreter_is_missing(tmp_path: Path) -> None:
    hook(tmp_path, "pre-commit", "exit 0", shebang="#!/no/such/interpreter -x")
    result = run_hook(str(tmp_path), "pre-commit")
    assert result.ran and result.code == 126
    assert result.problem == ("could not be run: its interpreter '/no/such/interpreter' was "
                              "not found (see its '#!' line)")
    with pytest.raises(HookRejected) as info:
        run_pre_hook(str(tmp_path), "pre-commit")
    assert "interpreter '/no/such/interpreter'" in info.value.message
    assert info.value.hint == f"check '{tmp_path / 'pre-commit'}'"


def test_a_hook_that_is_not_a_program(tmp_path: Path) -> None:
    path = tmp_path / "post-commit"
    path.write_bytes(b"\x7fELF\x00garbage")
    path.chmod(0o755)
    result = run_hook(str(tmp_path), "post-commit")
    assert result.ran and result.code == 126
    assert result.problem is not None and "'#!'" in result.problem


def test_commit_msg_may_edit_the_message_file(tmp_path: Path) -> None:
    message = tmp_path / "COMMIT_EDITMSG"
    message.write_text("wip\n")
    hook(tmp_path / "hooks", "commit-msg", 'printf "[docs] %s" "$(cat "$1")" > "$1"')
    run_pre_hook(str(tmp_path / "hooks"), "commit-msg", [str(message)])
    assert message.read_text() == "[docs] wip"


def test_working_copy_hooks_dir() -> None:
    assert working_copy_hooks_dir("/w") == "/w/.vst/hooks"
    assert working_copy_hooks_dir("/w", "") == "/w/.vst/hooks"
    assert working_copy_hooks_dir("/w", "tools/hooks") == "/w/tools/hooks"
    assert working_copy_hooks_dir("/w", "/etc/vst-hooks") == "/etc/vst-hooks"
    assert working_copy_hooks_dir("/w", "~/hooks", home="/home/ada") == "/home/ada/hooks"
    assert working_copy_hooks_dir("/w", "~/hooks") == "/w/~/hooks"


# -- store hooks around update_ref ------------------------------------------------------------


def _commit(store: Store, parents: list[Oid] | None = None, message: str = "m") -> Oid:
    return commit_tree(store, mktree(store, []), parents or [], message.encode(), author=SIG,
                       committer=SIG)


def _store_hook(store: Store, name: str, body: str) -> Path:
    return hook(Path(store.path, "hooks"), name, body)


def _reflog_bytes(store: Store, name: str) -> bytes:
    return Path(store.path, "logs", name).read_bytes()


def test_pre_receive_rejecting_leaves_ref_and_reflog_alone(store: Store, tmp_path: Path) -> None:
    store.create_collection("c")
    first, second = _commit(store), _commit(store, message="second")
    store.update_ref("c", first, None, committer=SIG, message="first")
    log_before = _reflog_bytes(store, "c")
    meta = Path(store.path, "volumes", "default", "meta", "refs", "c").read_bytes()
    _store_hook(store, "pre-receive", f'cat > "{tmp_path}/seen"\necho "no pushes on Friday"\n'
                                      "exit 1")
    with pytest.raises(HookRejected) as info:
        store.update_ref("c", second, first, committer=SIG, message="second")
    assert info.value.message == "rejected by the 'pre-receive' hook: it exited with status 1"
    assert info.value.hint == "no pushes on Friday"
    assert (tmp_path / "seen").read_text() == f"{first} {second} c\n"
    assert store.read_ref("c") == first
    assert _reflog_bytes(store, "c") == log_before
    assert [e.new for e in store.reflog("c")] == [first]
    assert Path(store.path, "volumes", "default", "meta", "refs", "c").read_bytes() == meta


def test_pre_receive_accepting_sees_the_line_and_env_under_the_lock(store: Store,
                                                                    tmp_path: Path) -> None:
    store.create_collection("docs")
    new = _commit(store)
    # The hook checks with a non-blocking flock that the collection's lock is held.
    hook(Path(store.path, "hooks"), "pre-receive", f"""
import fcntl, os, sys
line = sys.stdin.read()
fd = os.open(os.path.join(os.environ["VST_STORE"], "locks", "docs.lock"), os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held = "free"
except BlockingIOError:
    held = "held"
with open({str(tmp_path / "seen")!r}, "w") as f:
    f.write(line + os.environ["VST_COLLECTION"] + " " + os.environ["VST_STORE"] + " " + held
            + " " + os.getcwd())
""", shebang=f"#!{sys.executable}")
    warnings: list[str] = []
    store.warn = warnings.append
    store.update_ref("docs", new, None, committer=SIG, message="first")
    assert store.read_ref("docs") == new
    assert (tmp_path / "seen").read_text() == \
        f"{ZERO_OID} {new} docs\ndocs {store.path} held {store.path}"
    assert warnings == []  # the hook printed nothing


def test_post_receive_gets_the_line_and_its_failure_is_a_warning(store: Store,
                                                                 tmp_path: Path) -> None:
    store.create_collection("c")
    first, second = _commit(store), _commit(store, message="2")
    store.update_ref("c", first, None, committer=SIG, message="first")
    _store_hook(store, "post-receive", f'cat > "{tmp_path}/seen"\necho "mailing the team"\n'
                                       "exit 2")
    warnings: list[str] = []
    store.warn = warnings.append
    assert store.update_ref("c", second, first, committer=SIG, message="second") == first
    assert store.read_ref("c") == second
    assert (tmp_path / "seen").read_text() == f"{first} {second} c\n"
    assert warnings == ["post-receive: mailing the team",
                        "the 'post-receive' hook exited with status 2"]


def test_no_hook_runs_when_the_ref_does_not_move(store: Store, tmp_path: Path) -> None:
    store.create_collection("c")
    first = _commit(store)
    store.update_ref("c", first, None, committer=SIG, message="first")
    _store_hook(store, "pre-receive", "exit 1")
    _store_hook(store, "post-receive", f'touch "{tmp_path}/ran"')
    assert store.update_ref("c", first, first, committer=SIG, message="again") == first
    assert not (tmp_path / "ran").exists()


def test_a_non_executable_store_hook_is_skipped_with_a_warning(store: Store) -> None:
    store.create_collection("c")
    path = _store_hook(store, "pre-receive", "exit 1")
    path.chmod(path.stat().st_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    warnings: list[str] = []
    store.warn = warnings.append
    new = _commit(store)
    store.update_ref("c", new, None, committer=SIG, message="first")
    assert store.read_ref("c") == new
    assert len(warnings) == 1 and "not set as executable" in warnings[0]
    assert os.access(path, os.R_OK)
