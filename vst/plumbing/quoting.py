"""C-style path quoting, as git does it (``core.quotePath`` on).

A path that holds a control character, a double quote, a backslash or a byte >= 0x80 is
printed inside double quotes with C escapes and octal for the rest; any other path is
printed as is. ``-z`` output never quotes.
"""

from __future__ import annotations

_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f",
            0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}
_UNESCAPES = {"a": 0x07, "b": 0x08, "t": 0x09, "n": 0x0A, "v": 0x0B, "f": 0x0C, "r": 0x0D,
              '"': 0x22, "\\": 0x5C}


def needs_quoting(path: bytes) -> bool:
    return any(b < 0x20 or b >= 0x7F or b in (0x22, 0x5C) for b in path)


def quote(path: bytes) -> str:
    if not needs_quoting(path):
        return path.decode("ascii")
    out = ['"']
    for b in path:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif b < 0x20 or b >= 0x7F:
            out.append(f"\\{b:03o}")
        else:
            out.append(chr(b))
    out.append('"')
    return "".join(out)


def unquote(text: str) -> bytes:
    """The inverse of ``quote``; text not starting with '"' is taken literally."""
    if not text.startswith('"'):
        return text.encode("utf-8", "surrogateescape")
    if len(text) < 2 or not text.endswith('"'):
        raise ValueError("unterminated quoted path")
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            if c == '"':
                raise ValueError("unescaped '\"' in quoted path")
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("dangling backslash in quoted path")
        nxt = body[i + 1]
        if nxt in _UNESCAPES:
            out.append(_UNESCAPES[nxt])
            i += 2
        elif body[i + 1:i + 4].isdigit() and len(body[i + 1:i + 4]) == 3:
            value = int(body[i + 1:i + 4], 8)
            if value > 0xFF:
                raise ValueError("octal escape out of range")
            out.append(value)
            i += 4
        else:
            raise ValueError(f"unknown escape '\\{nxt}'")
    return bytes(out)
