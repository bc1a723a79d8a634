"""FHIR date, dateTime and instant values as periods of µs since the epoch (UTC).

A value stands for the whole period of its precision: ``2024`` is the year, ``2024-03-01`` the
day, a full instant is the microsecond. Without a time zone, the server's zone (UTC) is assumed,
as search.html#date allows.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def period(text: str) -> tuple[int, int] | None:
    """``(start, end)`` inclusive, in µs, or ``None`` if ``text`` is not a FHIR date/dateTime."""
    m = _DATE.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, sec, frac, tz = m.groups()
    try:
        y = int(year)
        if month is None:
            start = datetime(y, 1, 1, tzinfo=UTC)
            return _us(start), _us(datetime(y + 1, 1, 1, tzinfo=UTC)) - 1
        mo = int(month)
        if day is None:
            start = datetime(y, mo, 1, tzinfo=UTC)
            days = calendar.monthrange(y, mo)[1]
            return _us(start), _us(start + timedelta(days=days)) - 1
        d = int(day)
        if hour is None:
            start = datetime(y, mo, d, tzinfo=UTC)
            return _us(start), _us(start + timedelta(days=1)) - 1
        zone = UTC
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            zone = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        start = datetime(y, mo, d, int(hour), int(minute), int(sec or 0), tzinfo=zone)
        if sec is None:
            return _us(start), _us(start + timedelta(minutes=1)) - 1
        if frac is None:
            return _us(start), _us(start + timedelta(seconds=1)) - 1
        micros = int((frac + "000000")[:6])
        digits = min(len(frac), 6)
        width = 10 ** (6 - digits)
        begin = _us(start) + micros
        return begin, begin + width - 1
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def instant(ts: int) -> str:
    """FHIR ``instant`` text for a µs timestamp, in UTC with microseconds."""
    secs, micros = divmod(ts, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{micros:06d}Z"


def approximate(low: int, high: int, now: int | None = None) -> tuple[int, int]:
    """The range ``ap`` compares with: the value's range widened on both sides by 10% of its
    distance from now (search.html#prefix leaves the width to the server; HAPI uses 10% too)."""
    if now is None:
        now = time.time_ns() // 1000
    slack = max(abs(now - low), abs(now - high)) // 10
    return low - slack, high + slack
