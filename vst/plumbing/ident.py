"""Who and when: building commit signatures from names, emails and git-style dates."""

from __future__ import annotations

import datetime as dt
import re
import time

from vst.errors import UsageError
from vst.objects.commit import Signature

_RAW_RE = re.compile(r"@?(-?\d+)(?:\s+([+-])(\d\d):?(\d\d))?\Z")


def parse_date(text: str) -> tuple[int, int]:
    """(seconds, tz offset minutes) from git's date forms: '@1700000000 +0100',
    '1700000000 +0100', ISO 8601 ('2024-05-01T12:00:00+02:00', '2024-05-01 12:00:00 +0200')
    and RFC 2822 ('Wed, 01 May 2024 12:00:00 +0200')."""
    text = text.strip()
    match = _RAW_RE.match(text)
    if match:
        seconds, sign, hours, minutes = match.groups()
        east = int(hours) * 60 + int(minutes) if hours else 0
        return int(seconds), -east if sign == "-" else east
    try:
        parsed = dt.datetime.fromisoformat(re.sub(r"\s+([+-]\d\d:?\d\d|Z)$", r"\1", text))
    except ValueError:
        import email.utils  # only for RFC 2822 dates: it costs every commit 6 ms cold

        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise UsageError(f"invalid date '{text}'") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    delta = parsed.utcoffset()
    assert delta is not None
    return int(parsed.timestamp()), int(delta.total_seconds() // 60)


def local_offset_minutes(at: float) -> int:
    offset = dt.datetime.fromtimestamp(at).astimezone().utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


def signature(name: str, email_address: str, date: str | None = None) -> Signature:
    if date:
        seconds, offset = parse_date(date)
    else:
        now = time.time()
        seconds, offset = int(now), local_offset_minutes(now)
    sig = Signature(name, email_address, seconds, offset)
    problem = sig.problem()
    if problem:
        raise UsageError(f"invalid identity: {problem}")
    return sig
