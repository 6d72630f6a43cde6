"""The pieces of the SSH transport on their own: store addresses and the command spawned
for them (vst/ssh/url.py), and the framing of the protocol (vst/ssh/protocol.py)."""

from __future__ import annotations

import io
import struct

import pytest

from vst.errors import NotFound, ProtocolError, RefConflict, UsageError, VstError
from vst.ssh.protocol import (
    MAX_MESSAGE,
    MAX_PIECE,
    Channel,
    PeerGone,
    error_from,
    error_message,
)
from vst.ssh.url import SshAddress, is_ssh, parse

# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "address"), [
    ("nas:/srv/vst", SshAddress(None, "nas", None, "/srv/vst")),
    ("ada@nas:/srv/vst", SshAddress("ada", "nas", None, "/srv/vst")),
    ("nas:stores/mine", SshAddress(None, "nas", None, "stores/mine")),
    ("ssh://nas/srv/vst", SshAddress(None, "nas", None, "/srv/vst")),
    ("ssh://ada@nas:2222/srv/vst", SshAddress("ada", "nas", 2222, "/srv/vst")),
    ("ssh://nas/~/stores/mine", SshAddress(None, "nas", None, "stores/mine")),
    ("ssh://[::1]:22/srv", SshAddress(None, "::1", 22, "/srv")),
    ("ssh://nas/srv/with%20space", SshAddress(None, "nas", None, "/srv/with space")),
    ("nas:~/stores/mine", SshAddress(None, "nas", None, "stores/mine")),
])
def test_addresses_parse_as_git_reads_them(url: str, address: SshAddress) -> None:
    assert is_ssh(url)
    assert parse(url) == address
    assert parse(address.url) == address  # the canonical spelling reads back the same


@pytest.mark.parametrize("path", ["/srv/vst", "./a:b", "relative/dir", "~/store",
                                  "file:///srv", "s3://bucket/x", "a/b:c"])
def test_local_paths_are_not_ssh(path: str) -> None:
    assert not is_ssh(path)


@pytest.mark.parametrize("url", [
    "-oProxyCommand=touch x:/srv", "ssh://-oProxyCommand=touch%20x/srv",
    "-l:/srv", "ssh://-l@nas/srv", "-ada@nas:/srv", "ssh://nas", "ssh://nas/", "nas:",
    "ssh://nas:99999/srv", "ssh://nas:port/srv", "ssh://[::1/srv", "ho st:/srv",
    "ssh://nas/a%0Ab",
])
def test_bad_addresses_are_refused_before_anything_runs(url: str) -> None:
    with pytest.raises(UsageError):
        parse(url)


def test_an_address_with_control_characters_is_shown_escaped() -> None:
    with pytest.raises(UsageError) as refused:
        parse("ho\nst:/srv")
    assert "\n" not in refused.value.message and "ho\\nst" in refused.value.message


def test_the_command_puts_options_before_the_destination_and_quotes_the_path() -> None:
    address = parse("ssh://ada@nas:2222/srv/my store")
    argv = address.argv("ssh -o BatchMode=yes", "/opt/vst/bin/vst")
    assert argv == ["ssh", "-o", "BatchMode=yes", "-p", "2222", "--", "ada@nas",
                    "/opt/vst/bin/vst serve --stdio '/srv/my store'"]
    with pytest.raises(UsageError):
        address.argv("   ", "vst")
    with pytest.raises(UsageError):
        address.argv("ssh 'unclosed", "vst")


# -- framing -----------------------------------------------------------------------------------


def pair() -> tuple[Channel, io.BytesIO]:
    wire = io.BytesIO()
    return Channel(io.BytesIO(), wire, "the peer"), wire


def reader(data: bytes) -> Channel:
    return Channel(io.BytesIO(data), io.BytesIO(), "the peer")


def test_a_message_and_its_data_come_back_as_sent() -> None:
    sender, wire = pair()
    body = bytes(range(256)) * (MAX_PIECE // 256 * 2 + 3)  # more than two pieces
    sender.send({"op": "have", "n": 1}, body)
    sender.send_stream({"op": "pack.put"}, 5, iter([b"ab", b"cde"]))
    receiver = reader(wire.getvalue())
    first = receiver.receive()
    assert first == {"op": "have", "n": 1, "data": len(body)}
    assert receiver.body(first, len(body)) == body
    second = receiver.receive()
    assert second is not None and receiver.body(second, 5) == b"abcde"
    assert receiver.receive() is None  # a clean end between messages


def frame(kind: bytes, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack(">I", len(payload) + 1 if length is None else length) + kind + payload


@pytest.mark.parametrize(("wire", "says"), [
    (frame(b"J", b"", length=2**32 - 1), "over the"),
    (frame(b"J", b"x" * (MAX_MESSAGE + 1)), "over the"),
    (frame(b"B", b"{}"), "data where a message was expected"),
    (frame(b"J", b"not json"), "not JSON"),
    (frame(b"J", b"[1, 2]"), "not a JSON object"),
    (frame(b"J", b'{"data": -1}'), "bad data size"),
    (frame(b"J", b'{"data": "7"}'), "bad data size"),
    (frame(b"J", b"", length=0), "empty frame"),
    (frame(b"J", b'{"op": "x"}')[:7], "middle of a frame"),
    (b"\x00\x00", "middle of a frame"),
])
def test_malformed_frames_are_protocol_errors(wire: bytes, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        reader(wire).receive()


def test_data_over_the_limit_is_refused_before_it_is_read() -> None:
    sender, wire = pair()
    sender.send({"op": "have"}, b"x" * 100)
    receiver = reader(wire.getvalue())
    message = receiver.receive()
    assert message is not None
    with pytest.raises(ProtocolError, match="at most 99"):
        receiver.body(message, 99)


def test_data_that_does_not_match_its_size_is_refused() -> None:
    wire = frame(b"J", b'{"data": 3}') + frame(b"B", b"abcd")
    receiver = reader(wire)
    message = receiver.receive()
    assert message is not None
    with pytest.raises(ProtocolError, match="does not match its size"):
        receiver.body(message, 10)
    truncated = reader(frame(b"J", b'{"data": 3}') + frame(b"B", b"ab"))
    message = truncated.receive()
    assert message is not None
    with pytest.raises(PeerGone):
        truncated.body(message, 10)


def test_errors_cross_the_wire_with_their_class_and_exit_code() -> None:
    sent = error_message(RefConflict("cannot update 'c'", hint="pull first"))
    back = error_from(sent, "ssh://nas/srv")
    assert isinstance(back, RefConflict) and back.exit_code == 16
    assert back.message == "ssh://nas/srv: cannot update 'c'" and back.hint == "pull first"
    # A class vst.errors does not have, or something that is not an error class: generic.
    for name in ("SystemExit", "Path", "NoSuchError"):
        odd = error_from({"error": {"type": name, "message": "m"}}, "x")
        assert type(odd) is VstError
    assert isinstance(error_from({"error": {"type": "NotFound", "message": 3}}, "x"),
                      NotFound)
    assert isinstance(error_from({"error": "flat"}, "x"), ProtocolError)


class _Gone(io.BytesIO):
    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_peer_gone_while_sending_is_a_protocol_error_not_an_os_error() -> None:
    """A broken pipe met while flushing must not pass for an I/O error of whatever file
    the command was reading at the time."""
    channel = Channel(io.BytesIO(), _Gone(), "the peer")
    with pytest.raises(PeerGone):
        channel.send({"op": "have"}, b"x" * 64)
    with pytest.raises(PeerGone):
        channel.send_stream({"op": "pack.put"}, 3, iter([b"abc"]))


class _Answers:
    """Stands in for a connection whose server sends ``answer`` to everything."""

    url = "ssh://liar/store"

    def __init__(self, answer: tuple[object, bytes]) -> None:
        self.answer = answer

    def call(self, *_args: object, **_kwargs: object) -> tuple[object, bytearray]:
        return self.answer[0], bytearray(self.answer[1])


@pytest.mark.parametrize("answer", [
    ({"records": [[5]], "keyrings": [None]}, b"12345"),
    ({"records": [[5, 3]], "keyrings": [None]}, b"12345"),
    ({"records": [["five", 0]], "keyrings": [None]}, b"12345"),
    ({"records": [[5, 0]], "keyrings": ["zz"]}, b"12345"),
    ({"records": [[5, 0]], "keyrings": [7]}, b"12345"),
    ({"records": [[9, 0]], "keyrings": [None]}, b"12345"),
    ({"records": [], "keyrings": []}, b""),
    ({"records": "x", "keyrings": []}, b""),
    ([1, 2], b""),
])
def test_a_malformed_objects_answer_is_a_protocol_error(answer: tuple[object, bytes],
                                                        tmp_path: object) -> None:
    from vst.objects.oid import Oid
    from vst.ssh.client import RemoteObjectDatabase

    odb = RemoteObjectDatabase(_Answers(answer), str(tmp_path), 1024 * 1024, 3,  # type: ignore[arg-type]
                               lambda _k: None, lambda _m: None)
    with pytest.raises(ProtocolError):
        list(odb._records([Oid(b"\1" * 32)]))


@pytest.mark.parametrize("answer", [None, "x", [1, 2], {"a": 1}, 7])
def test_other_malformed_answers_are_protocol_errors(answer: object, tmp_path: object) -> None:
    from vst.objects.oid import Oid
    from vst.ssh.client import RemoteObjectDatabase, RemoteStore
    from vst.ssh.url import parse

    stub = _Answers((answer, b""))
    stub.info = {"store_id": "0" * 32,  # type: ignore[attr-defined]
                 "chunking": {"min": 256 * 1024, "avg": 768 * 1024, "max": 4 * 1024 * 1024}}
    store = RemoteStore(parse("nas:/srv"), stub, lambda _m: None)  # type: ignore[arg-type]
    odb = RemoteObjectDatabase(stub, str(tmp_path), 1024 * 1024, 3,  # type: ignore[arg-type]
                               lambda _k: None, lambda _m: None)
    for asked in (lambda: store.policy_of("c"), lambda: store.short_packs("c"),
                  lambda: store.keyrings.names(),
                  lambda: odb.packs_holding([Oid(b"\1" * 32)]),
                  lambda: odb.settle({Oid(b"\1" * 32)}, odb.placement, "c")):
        with pytest.raises(ProtocolError):
            asked()
