"""The connection to ``vst serve --stdio``: one ssh process, the framed stream over its
stdin and stdout (vst/ssh/protocol.py), requests with ids from any thread, and the
answers read by a thread of its own."""

from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, BinaryIO, cast

from vst.errors import ProtocolError, VolumeUnreachable, VstError
from vst.ssh.protocol import PROTOCOL, Channel, PeerGone, error_from, widen_pipe

Warn = Callable[[str], None]
Progress = Callable[[str, int], None]

STDERR_KEPT = 20  # lines of ssh's stderr kept to explain a failure


class Connection:
    """One ``ssh ... vst serve --stdio PATH`` process and the framed stream to it, shared
    by the command's threads. Requests are pipelined: a thread sends its request (with an
    id) and waits for the answer with that id without holding the stream, so the server
    works on the next request while this process opens the records of the last, and
    answers a question about ids while a pack is still being made durable."""

    def __init__(self, argv: list[str], url: str, warn: Warn) -> None:
        self.url = url
        self.warn = warn
        self.requests = 0  # round trips so far (reported by --json and the benchmarks)
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_KEPT)
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            start_new_session=True)
        except OSError as exc:
            raise VolumeUnreachable(f"cannot run '{argv[0]}' to reach '{url}': "
                                    f"{exc.strerror}",
                                    hint="set VST_SSH or core.sshCommand to your ssh") from None
        assert self.process.stdin and self.process.stdout and self.process.stderr
        widen_pipe(self.process.stdin)
        widen_pipe(self.process.stdout)
        self._stderr_thread = threading.Thread(target=self._keep_stderr, daemon=True,
                                               name="vst-ssh-stderr")
        self._stderr_thread.start()
        self.channel = Channel(cast(BinaryIO, self.process.stdout),
                               cast(BinaryIO, self.process.stdin), f"'{url}'")
        self._send_lock = threading.Lock()
        # Answers still to come, by request id: (future, data limit, progress).
        self._waiting: dict[int, tuple[Future[tuple[Any, bytearray]], int, Progress | None]] = {}
        self._broken: VstError | None = None
        self.info = self._handshake()
        self._reader = threading.Thread(target=self._read_answers, daemon=True,
                                        name="vst-ssh-reader")
        self._reader.start()

    def _keep_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._stderr.append(text)

    def _handshake(self) -> dict[str, Any]:
        try:
            greeting = self.channel.receive()
            if greeting is None:
                raise PeerGone("the connection closed")
            if "error" in greeting:
                raise error_from(greeting, self.url)
            protocols = greeting.get("protocols")
            if greeting.get("vst") != "serve" or not isinstance(protocols, list):
                raise ProtocolError(f"'{self.url}' did not answer as 'vst serve' does")
            if PROTOCOL not in protocols:
                raise ProtocolError(f"'{self.url}' speaks protocol {protocols}, this vst "
                                    f"speaks {PROTOCOL}",
                                    hint="install the same version of vst on both machines")
            self.channel.send({"op": "hello", "protocol": PROTOCOL})
            info, _ = self._answer(0)
        except PeerGone:
            raise self._unreachable() from None
        if not isinstance(info, dict) or not isinstance(info.get("store_id"), str):
            raise ProtocolError(f"'{self.url}' sent a malformed greeting")
        return info

    def _unreachable(self) -> VstError:
        """The stream ended early: one clear error naming the store, with what ssh (or the
        vst at the other end) said last; the usual reasons are no route, no key, a host
        key that changed, no vst there."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._stderr_thread.join(timeout=1)
        said = next((line for line in reversed(self._stderr)
                     if line.startswith("vst: error: ")), None) \
            or (self._stderr[-1] if self._stderr else None)
        return VolumeUnreachable(f"cannot reach '{self.url}'" + (f": {said}" if said else ""),
                                 hint="check that 'vst' is installed there and that ssh to "
                                      "the host works")

    def call(self, op: str, body: bytes | None = None, limit: int = 0,
             progress: Progress | None = None, **args: Any) -> tuple[Any, bytearray]:
        """One request and its answer: (result, data). ``progress`` gets what the server
        says of a long operation: ("total", bytes) and ("add", bytes)."""
        return self._request(lambda request: self.channel.send(
            {"op": op, "id": request, **args}, body), limit, progress)

    def call_streaming(self, op: str, size: int, pieces: Iterator[bytes | memoryview],
                       **args: Any) -> Any:
        """A request whose ``size`` bytes of data come from ``pieces``."""
        return self._request(lambda request: self.channel.send_stream(
            {"op": op, "id": request, **args}, size, pieces), 0)[0]

    def _request(self, send: Callable[[int], None], limit: int,
                 progress: Progress | None = None) -> tuple[Any, bytearray]:
        answer: Future[tuple[Any, bytearray]] = Future()
        with self._send_lock:
            if self._broken is not None:
                raise self._broken
            self.requests += 1
            request = self.requests
            self._waiting[request] = (answer, limit, progress)
            try:
                send(request)
            except PeerGone:
                pass  # the reader sees the end of the stream and says why
        return answer.result()

    def _read_answers(self) -> None:
        try:
            while True:
                message = self._next_message()
                request = message.get("id")
                if request is None and "error" in message:
                    raise error_from(message, self.url)  # the session ends with it
                with self._send_lock:
                    waiting = self._waiting.get(request) if isinstance(request, int) \
                        else None
                if waiting is None or not isinstance(request, int):
                    raise ProtocolError(f"'{self.url}' answered a request never sent")
                if "progress" in message:
                    _report_progress(waiting[2], message["progress"])
                    continue
                answer, limit, _ = waiting
                if "error" in message:
                    error: VstError = error_from(message, self.url)
                elif "ok" not in message:
                    raise ProtocolError(f"'{self.url}' sent an answer without a result")
                else:
                    # Still waiting while its data is read: a failure fails it too.
                    result = (message["ok"], self.channel.buffer(message, limit))
                with self._send_lock:
                    del self._waiting[request]
                if "error" in message:
                    answer.set_exception(error)
                else:
                    answer.set_result(result)
        except BaseException as exc:
            broken = self._unreachable() if isinstance(exc, PeerGone) else \
                exc if isinstance(exc, VstError) else \
                ProtocolError(f"'{self.url}': {type(exc).__name__}: {exc}")
            with self._send_lock:
                self._broken = broken
                for answer, _, _ in self._waiting.values():
                    answer.set_exception(broken)
                self._waiting.clear()

    def _next_message(self) -> dict[str, Any]:
        """The next message that is not a warning (warnings are shown as they come)."""
        while True:
            message = self.channel.receive()
            if message is None:
                raise PeerGone("the connection closed")
            if "warn" not in message:
                return message
            self.warn(f"{self.url}: {message['warn']}")

    def _answer(self, limit: int) -> tuple[Any, bytearray]:
        """The answer to the handshake's hello (no id: nothing else is in flight)."""
        message = self._next_message()
        if "error" in message:
            raise error_from(message, self.url)
        if "ok" not in message:
            raise ProtocolError(f"'{self.url}' sent an answer without a result")
        return message["ok"], self.channel.buffer(message, limit)

    def close(self) -> None:
        with self._send_lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)


def _report_progress(progress: Progress | None, said: object) -> None:
    if progress is None or not isinstance(said, dict):
        return
    for what in ("total", "add"):
        value = said.get(what)
        if isinstance(value, int) and not isinstance(value, bool):
            progress(what, value)
