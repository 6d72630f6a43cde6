"""The commit object: git's text layout.

    tree <hex id>
    parent <hex id>             zero or more
    author <name> <<email>> <unix seconds> <+hhmm>
    committer <name> <<email>> <unix seconds> <+hhmm>
    <blank line>
    <message bytes>

Canonical: exactly these headers in this order, lower-case hex ids, no other headers. The
decoder re-encodes and compares, so any byte string it accepts is the one encoding of its
commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vst.errors import CorruptObject
from vst.objects.oid import Oid, is_full_hex

_SIGNATURE_RE = re.compile(rb"([^<>\n]*?) <([^<>\n]*)> (-?\d{1,19}) ([+-])(\d\d)(\d\d)\Z")


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    email: str
    time: int  # seconds since the epoch
    tz_minutes: int = 0  # offset east of UTC

    def encode(self) -> bytes:
        sign = "-" if self.tz_minutes < 0 else "+"
        hours, minutes = divmod(abs(self.tz_minutes), 60)
        return f"{self.name} <{self.email}> {self.time} {sign}{hours:02d}{minutes:02d}".encode()

    def problem(self) -> str | None:
        for label, text in (("name", self.name), ("email", self.email)):
            # A TAB would also end the signature early in a reflog line (old new who\tmsg).
            if any(c in "<>" or ord(c) < 0x20 or c == "\x7f" for c in text):
                return f"{label} may not contain '<', '>' or a control character"
        if self.name != self.name.strip():
            return "name may not start or end with whitespace"
        if not -(2**63) <= self.time < 2**63:
            return "time out of range"
        if abs(self.tz_minutes) >= 100 * 60:
            return "time zone out of range"
        return None

    @classmethod
    def decode(cls, raw: bytes) -> Signature:
        match = _SIGNATURE_RE.match(raw)
        if not match:
            raise ValueError("malformed signature")
        name, email, seconds, sign, hours, minutes = match.groups()
        offset = int(hours) * 60 + int(minutes)
        return cls(name.decode(), email.decode(), int(seconds), -offset if sign == b"-" else offset)


@dataclass(frozen=True, slots=True)
class Commit:
    tree: Oid
    parents: tuple[Oid, ...]
    author: Signature
    committer: Signature
    message: bytes

    def encode(self) -> bytes:
        lines = [b"tree " + self.tree.hex.encode()]
        lines += [b"parent " + parent.hex.encode() for parent in self.parents]
        lines.append(b"author " + self.author.encode())
        lines.append(b"committer " + self.committer.encode())
        return b"\n".join(lines) + b"\n\n" + self.message

    @classmethod
    def decode(cls, data: bytes, oid: Oid | None = None) -> Commit:
        name = f"commit {oid}" if oid else "commit"
        try:
            commit = _decode(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptObject(f"{name}: {exc}") from None
        if commit.encode() != data:
            raise CorruptObject(f"{name}: not in canonical form")
        return commit


def _decode(data: bytes) -> Commit:
    head, sep, message = data.partition(b"\n\n")
    if not sep:
        raise ValueError("no blank line after the headers")
    lines = head.split(b"\n")
    tree = _id_header(lines.pop(0) if lines else b"", b"tree")
    parents = []
    while lines and lines[0].startswith(b"parent "):
        parents.append(_id_header(lines.pop(0), b"parent"))
    if len(lines) != 2 or not lines[0].startswith(b"author ") \
            or not lines[1].startswith(b"committer "):
        raise ValueError("expected exactly 'author' and 'committer' after the parents")
    author = Signature.decode(lines[0][len(b"author "):])
    committer = Signature.decode(lines[1][len(b"committer "):])
    for signature in (author, committer):
        problem = signature.problem()
        if problem:
            raise ValueError(problem)
    return Commit(tree, tuple(parents), author, committer, message)


def _id_header(line: bytes, key: bytes) -> Oid:
    prefix = key + b" "
    if not line.startswith(prefix):
        raise ValueError(f"expected a '{key.decode()}' header")
    text = line[len(prefix):].decode("ascii")
    if not is_full_hex(text):
        raise ValueError(f"malformed {key.decode()} id")
    return Oid(bytes.fromhex(text))
