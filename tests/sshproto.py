"""Speaking the raw ``vst serve --stdio`` protocol (vst/ssh/protocol.py) to a server process,
for tests that must send what the real client never would: bad frames, odd messages,
oversized announcements.

``RawSession(argv)`` runs ``argv`` (``ssh -F CONFIG ALIAS CMD``, or ``vst serve --stdio``
itself) with pipes; ``frame``/``message`` build bytes to ``send``; ``receive`` reads one
message and ``data`` its body. A watchdog kills the process after ``timeout`` seconds, so
a server that hangs fails the test instead of blocking it. The server's stderr (which ssh
passes through) is collected whole in ``stderr`` once ``finish`` returns.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

LENGTH = struct.Struct(">I")
MAX_PIECE = 1024 * 1024


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame: big-endian u32 length (kind included), kind, payload."""
    return LENGTH.pack(len(payload) + 1) + kind + payload


_ids = itertools.count(1)


def message(fields: Mapping[str, Any], data: bytes | None = None) -> bytes:
    """A J frame holding ``fields`` (with ``"data": len(data)`` when given), then the data
    in B frames. A request (an ``op`` other than ``hello``) gets an ``id`` unless it has
    one, as vst's client gives each."""
    if "op" in fields and fields["op"] != "hello" and "id" not in fields:
        fields = {**fields, "id": next(_ids)}
    if data is not None:
        fields = {**fields, "data": len(data)}
    out = frame(b"J", json.dumps(fields, separators=(",", ":")).encode())
    if data:
        out += b"".join(frame(b"B", data[i:i + MAX_PIECE])
                        for i in range(0, len(data), MAX_PIECE))
    return out


class RawSession:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(list(argv), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=dict(env) if env is not None else None)
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        self.timed_out = False
        self._watchdog = threading.Timer(timeout, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.stderr = b""
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def _collect(self) -> None:
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self._stderr.append(chunk)

    def _kill(self) -> None:
        self.timed_out = True
        self.process.kill()

    # -- writing --------------------------------------------------------------------------

    def send(self, data: bytes | memoryview) -> bool:
        """Write ``data``; False when the server no longer reads (it ended the session)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            return False
        return True

    def request(self, fields: Mapping[str, Any],
                data: bytes | None = None) -> tuple[dict[str, Any] | None, bytes]:
        """Send one request; return the answer (skipping ``warn`` messages; None at the end
        of the stream) and its data."""
        self.send(message(fields, data))
        return self.answer()

    def answer(self) -> tuple[dict[str, Any] | None, bytes]:
        """The next message that is not a ``warn`` (None at the end of the stream), and its
        data."""
        while True:
            answer = self.receive()
            if answer is None or "warn" not in answer:
                break
        return answer, self.data(answer) if answer else b""

    def close_input(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    # -- reading --------------------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        assert self.process.stdout is not None
        return self.process.stdout.read(size)

    def receive(self) -> dict[str, Any] | None:
        """The next message, None at the end of the stream (a clean one or not)."""
        head = self._read(LENGTH.size)
        if len(head) != LENGTH.size:
            return None
        (length,) = LENGTH.unpack(head)
        payload = self._read(length)
        if len(payload) != length or payload[:1] != b"J":
            raise AssertionError(f"the server sent a bad frame: {payload[:80]!r}")
        decoded = json.loads(payload[1:])
        assert isinstance(decoded, dict)
        return decoded

    def data(self, answer: Mapping[str, Any]) -> bytes:
        size = answer.get("data", 0)
        parts = []
        while size:
            head = self._read(LENGTH.size)
            (length,) = LENGTH.unpack(head)
            payload = self._read(length)
            assert payload[:1] == b"B", payload[:80]
            parts.append(payload[1:])
            size -= length - 1
        return b"".join(parts)

    def messages_until_end(self) -> list[dict[str, Any]]:
        """Every message left until the server closes its side (data skipped)."""
        found = []
        while (answer := self.receive()) is not None:
            self.data(answer)
            found.append(answer)
        return found

    def hello(self) -> dict[str, Any]:
        """The greeting, and the answer to ``hello`` when the greeting is not an error:
        ``{"greeting": ..., "ok": ...}``."""
        greeting = self.receive()
        if greeting is None or "error" in greeting:
            return {"greeting": greeting}
        answer, _ = self.request({"op": "hello", "protocol": 1})
        return {"greeting": greeting, **(answer or {})}

    # -- ending ---------------------------------------------------------------------------

    def finish(self, timeout: float = 30.0) -> int:
        """Close our side, wait for the process, collect its stderr; its exit status."""
        self.close_input()
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            self.returncode = self.process.wait()
        self._watchdog.cancel()
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.stderr = b"".join(self._stderr)
        return self.returncode

    def peak_memory(self) -> int:
        """VmHWM of the process (Linux), in bytes: the most resident memory it ever had."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/PID/status")


def environment(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``."""
    return {**os.environ, **extra}
