"""The wire protocol between ``vst`` and ``vst serve --stdio`` (docs/ssh.md, "Protocol").

Everything travels in frames: a big-endian u32 length, then that many bytes, the first of
which says what the frame is:

    J   a message: one JSON object (UTF-8), at most MAX_MESSAGE bytes
    B   a piece of a message's body: raw bytes, at most MAX_PIECE bytes

A message whose JSON has ``"data": N`` is followed by B frames carrying exactly N bytes
(a pack, a batch of ids, records). Each side refuses a frame over its limit before
reading it, and each operation sets its own limit on N, so what either side holds in
memory is bounded whatever the other sends.

The server speaks first: ``{"vst": "serve", "protocols": [1], ...}``. The client answers
``{"op": "hello", "protocol": 1}``, and from then on sends requests ``{"op": NAME, "id": N,
...}``, each answered by ``{"id": N, "ok": RESULT}`` or ``{"id": N, "error": {"type",
"message", "hint"}}``, not necessarily in order; ``{"warn": TEXT}`` messages for the user
may come at any time (docs/ssh.md, "Protocol").
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from vst import errors
from vst.errors import ProtocolError, VstError

PROTOCOL = 1
MAX_MESSAGE = 1024 * 1024
MAX_PIECE = 1024 * 1024
_LENGTH = struct.Struct(">I")
MESSAGE, PIECE = b"J", b"B"


PIPE_SIZE = 1024 * 1024  # Linux's default pipe-max-size


def widen_pipe(stream: Any) -> None:
    """Give a pipe a 1 MiB buffer instead of 64 KiB: a 16 MiB pack then crosses in 16
    writes and reads instead of 256, each a wake-up of the other side. Anything that is
    not a pipe (or has no descriptor), or a system that says no, keeps what it has."""
    import fcntl

    try:
        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ValueError, AttributeError):
        pass


class PeerGone(ProtocolError):
    """The other side closed the stream (or died) where a frame was expected."""


class Channel:
    """Frames over a pair of byte streams. Not thread-safe: callers hold a lock around a
    whole request and its answer."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO, peer: str) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer  # named in errors: "the server", "the client"

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: dict[str, Any], body: bytes | memoryview | None = None) -> None:
        """One message, with ``body`` as its data when given."""
        if body is not None:
            message = {**message, "data": len(body)}
        self._message(message)
        if body is not None:
            view = memoryview(body)
            for start in range(0, len(view), MAX_PIECE):
                self._frame(PIECE, view[start:start + MAX_PIECE])
        self._flush()

    def send_stream(self, message: dict[str, Any], size: int,
                    pieces: Iterator[bytes | memoryview]) -> None:
        """One message whose ``size`` bytes of data come from ``pieces`` (a file read in
        slices: a pack is never held whole)."""
        self._message({**message, "data": size})
        sent = 0
        for piece in pieces:
            view = memoryview(piece)
            for start in range(0, len(view), MAX_PIECE):
                part = view[start:start + MAX_PIECE]
                self._frame(PIECE, part)
                sent += len(part)
        if sent != size:
            raise ProtocolError(f"sent {sent} bytes of data where {size} were announced")
        self._flush()

    def _message(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        if len(data) > MAX_MESSAGE:
            raise ProtocolError(f"message of {len(data)} bytes is over the "
                                f"{MAX_MESSAGE}-byte limit")
        self._frame(MESSAGE, data)

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
            raise PeerGone(f"{self.peer} closed the connection") from exc

    def _frame(self, kind: bytes, payload: bytes | memoryview) -> None:
        try:
            self.writer.write(_LENGTH.pack(len(payload) + 1) + kind)
            self.writer.write(payload)
        except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
            raise PeerGone(f"{self.peer} closed the connection") from exc

    # -- receiving ----------------------------------------------------------------------------

    def receive(self) -> dict[str, Any] | None:
        """The next message (None at a clean end of stream, between messages). Its data,
        if any, must be read next with ``body`` or ``drain``."""
        head = self.reader.read(_LENGTH.size)
        if not head:
            return None
        kind, payload = self._rest_of_frame(head, MAX_MESSAGE)
        if kind != MESSAGE:
            raise ProtocolError(f"{self.peer} sent data where a message was expected")
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):  # [[[[... is too deep
            raise ProtocolError(f"{self.peer} sent a message that is not JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError(f"{self.peer} sent a message that is not a JSON object")
        data = message.get("data", 0)
        if not isinstance(data, int) or isinstance(data, bool) or data < 0:
            raise ProtocolError(f"{self.peer} announced a bad data size")
        return message

    def body(self, message: dict[str, Any], limit: int) -> bytes:
        """The data following ``message``, refused (before it is read) above ``limit``."""
        return bytes(self.buffer(message, limit))

    def buffer(self, message: dict[str, Any], limit: int) -> bytearray:
        """``body``, read straight into one buffer: no copy of each piece to join."""
        size = message.get("data", 0)
        if size > limit:
            raise ProtocolError(f"{self.peer} sent {size} bytes of data where at most "
                                f"{limit} are allowed")
        data = bytearray(size)
        view = memoryview(data)
        done = 0
        while done < size:
            head = self.reader.read(_LENGTH.size + 1)
            if len(head) != _LENGTH.size + 1:
                raise PeerGone(f"{self.peer} closed the connection in the middle of a frame")
            (length,) = _LENGTH.unpack_from(head)
            if head[-1:] != PIECE or not 1 < length <= min(MAX_PIECE, size - done) + 1:
                raise ProtocolError(f"{self.peer} sent data that does not match its size")
            end = done + length - 1
            while done < end:  # a read may stop short (a signal): go on until the end
                got = cast(Any, self.reader).readinto(view[done:end])
                if not got:
                    raise PeerGone(f"{self.peer} closed the connection in the middle of a "
                                   "frame")
                done += got
        return data

    def read_data(self, message: dict[str, Any], limit: int,
                  sink: Callable[[bytes], object]) -> int:
        """Pass the data following ``message`` to ``sink`` piece by piece; returns its
        size. Over ``limit``: ProtocolError before anything is read (the stream is then out
        of step, and the connection must end)."""
        size = message.get("data", 0)
        if size > limit:
            raise ProtocolError(f"{self.peer} sent {size} bytes of data where at most "
                                f"{limit} are allowed")
        left = size
        while left:
            head = self.reader.read(_LENGTH.size)
            kind, payload = self._rest_of_frame(head, MAX_PIECE)
            if kind != PIECE or len(payload) > left:
                raise ProtocolError(f"{self.peer} sent data that does not match its size")
            sink(payload)
            left -= len(payload)
        return size

    def drain(self, message: dict[str, Any], limit: int) -> None:
        """Skip the data of a message that is refused, keeping the stream in step."""
        self.read_data(message, limit, lambda _piece: None)

    def _rest_of_frame(self, head: bytes, limit: int) -> tuple[bytes, bytes]:
        if len(head) != _LENGTH.size:
            raise PeerGone(f"{self.peer} closed the connection in the middle of a frame")
        (length,) = _LENGTH.unpack(head)
        if length < 1:
            raise ProtocolError(f"{self.peer} sent an empty frame")
        if length - 1 > limit:
            raise ProtocolError(f"{self.peer} sent a frame of {length - 1} bytes, over the "
                                f"{limit}-byte limit")
        payload = self.reader.read(length)
        if len(payload) != length:
            raise PeerGone(f"{self.peer} closed the connection in the middle of a frame")
        return payload[:1], payload[1:]


# -- errors across the wire -------------------------------------------------------------------

def error_message(exc: VstError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": exc.message,
                      "hint": exc.hint}}


def error_from(message: dict[str, Any], where: str) -> VstError:
    """The exception a server's error message stands for: the same class of vst.errors
    when it names one (so the exit code is the server's), VstError otherwise."""
    error = message.get("error")
    if not isinstance(error, dict):
        return ProtocolError(f"{where}: malformed error message")
    kind = getattr(errors, str(error.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, VstError)):
        kind = VstError
    text = error.get("message")
    hint = error.get("hint")
    return kind(f"{where}: {text if isinstance(text, str) else 'unknown error'}",
                hint=hint if isinstance(hint, str) else None)


def field(message: dict[str, Any], name: str, kind: type | tuple[type, ...],
          optional: bool = False) -> Any:
    """``message[name]``, checked to be of ``kind`` (ProtocolError otherwise)."""
    value = message.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"field '{name}' is missing or of the wrong type")
    return value
