"""A stand-in for ssh that runs the command here: ``VST_SSH="python tests/bin/localssh.py"``.

It takes what vst passes to ssh (options, ``--``, the destination, the remote command),
checks the shape, and runs the command with ``sh -c`` in the home folder, as sshd does:
the SSH transport's tests run over it without the cost of a real sshd. The destination is
written to $LOCALSSH_LOG when set, for tests that check what vst asked for.
"""

import os
import sys

OPTIONS_WITH_VALUE = {"-p", "-o", "-F", "-i", "-l", "-J"}


def main(args: list[str]) -> int:
    position = 0
    while position < len(args) and args[position] != "--":
        if args[position] in OPTIONS_WITH_VALUE:
            position += 1
        elif not args[position].startswith("-"):
            sys.stderr.write(f"localssh: expected '--' before the destination, got {args}\n")
            return 255
        position += 1
    rest = args[position + 1:]
    if len(rest) != 2:
        sys.stderr.write(f"localssh: expected a destination and one command, got {rest}\n")
        return 255
    destination, command = rest
    log = os.environ.get("LOCALSSH_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{destination}\n")
    os.chdir(os.path.expanduser("~"))
    os.execvp("sh", ["sh", "-c", command])
    return 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
