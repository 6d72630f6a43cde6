"""README's tour is executed, so it cannot rot: every command in it must succeed, and every
output line that does not depend on ids, times or paths must be what the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"
VARIABLE = re.compile(r"[0-9a-f]{8,}|/|\d{10}")


def tour() -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(set-up lines of the ```sh block, [(command, expected output lines)] of the
    ```console blocks), from the tour section."""
    text = README.read_text().split("## A short tour", 1)[1].split("\n## ", 1)[0]
    setup: list[str] = []
    steps: list[tuple[str, list[str]]] = []
    for kind, body in re.findall(r"```(sh|console)\n(.*?)```", text, re.S):
        if kind == "sh":
            setup += [line.split("  #")[0] for line in body.splitlines() if line.strip()]
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return setup, steps


def test_the_tour_runs_as_shown(tmp_path: Path) -> None:
    setup, steps = tour()
    assert setup and len(steps) >= 8
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VST_STORE", None)
    script = [*setup, "set -e"]
    for number, (command, _) in enumerate(steps):
        script += [f"echo '=== {number}'", command]
    ran = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    outputs = re.split(r"^=== \d+\n", ran.stdout, flags=re.M)[1:]
    assert len(outputs) == len(steps)
    for (command, expected), output in zip(steps, outputs, strict=True):
        actual = output.splitlines() + ran.stderr.splitlines()
        for line in expected:
            if not VARIABLE.search(line):
                assert line in actual, f"'{command}' did not print {line!r}"
        assert len(output.splitlines()) <= len(expected), f"'{command}' printed more"
