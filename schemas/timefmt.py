"""RFC 3339 UTC timestamps to integer microseconds since the epoch, and back to a date.

Event time is the only time the engine knows; it is parsed here without floats.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Final

from schemas.fields import TS_PATTERN, is_date

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_ONE_US: Final = timedelta(microseconds=1)
US_PER_SECOND: Final = 1_000_000
US_PER_DAY: Final = 86_400 * US_PER_SECOND


_TS_SHAPE: Final = re.compile(TS_PATTERN[1:-1]).fullmatch  # a C call: the shape, not the values


_MINUTE_US: Final[dict[str, int]] = {}  # "YYYY-MM-DDTHH:MM:" -> its first microsecond, for the minutes parsed whole before
_MINUTES_KEPT: Final = 1 << 16   # a limit on everything: 45 days of minutes
_ZERO: Final = 48                # ord("0")


class _Last:
    """The text parsed last (the same object) and what it gave: a fill's ``opened_at`` is checked
    on decoding and read again by its rules."""

    def __init__(self) -> None:
        self.text: str | None = None  # not "": that one object is every empty text
        self.ts_us = 0


_last: Final = _Last()


def parse_ts_us(text: str) -> int:
    """``2026-11-24T10:00:00.25Z`` -> microseconds since 1970-01-01T00:00:00Z.

    Accepts exactly TS_PATTERN (tests/property proves it). The common form, ``Z`` with up to six
    fraction digits, in a minute already seen (an event stream's timestamps share their minute
    with hundreds of others), is read by hand, a character at a time: the seconds, ASCII digits
    below 60 as fromisoformat checks them, and the fraction. Anything else takes the whole path:
    the published pattern checks the shape and fromisoformat the values (month 13, 25:00,
    30 February are refused), both in C.
    """
    last = _last
    if text is last.text:
        return last.ts_us
    size = len(text)
    ts_us = -1
    if 20 <= size <= 27 and ord(text[size - 1]) == 90:  # "Z"
        minute_us = _MINUTE_US.get(text[:17])
        if minute_us is not None:
            tens, units = ord(text[17]) - _ZERO, ord(text[18]) - _ZERO
            if 0 <= tens <= 5 and 0 <= units <= 9:
                ts_us = minute_us + (tens * 10 + units) * US_PER_SECOND
                if size > 20:
                    ts_us = _with_fraction(text, size, ts_us)
    if ts_us < 0:  # not the common form (or before 1970: the whole path reads those too)
        ts_us = _parse_whole(text)
        if len(_MINUTE_US) >= _MINUTES_KEPT:
            _MINUTE_US.clear()
        _MINUTE_US[text[:17]] = ts_us - ts_us % 60_000_000
    last.text, last.ts_us = text, ts_us
    return ts_us


def _with_fraction(text: str, size: int, ts_us: int) -> int:
    """``ts_us`` with the fraction of ``text`` (``.`` then one to six ASCII digits, then ``Z``)
    added; -1 when it is not that."""
    if size < 22 or ord(text[19]) != 46:  # "."
        return -1
    fraction = 0
    for i in range(20, size - 1):
        digit = ord(text[i]) - _ZERO
        if not 0 <= digit <= 9:
            return -1
        fraction = fraction * 10 + digit
    for _ in range(size, 27):  # 0.25 is 250,000 microseconds
        fraction *= 10
    return ts_us + fraction


def _parse_whole(text: str) -> int:
    if _TS_SHAPE(text) is None:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r} ({exc})") from None
    return (moment - _EPOCH) // _ONE_US


_DAYS: Final[dict[int, str]] = {}


def day_of(ts_us: int) -> str:
    """The UTC calendar date (YYYY-MM-DD) of an instant."""
    day = ts_us // US_PER_DAY
    text = _DAYS.get(day)
    if text is None:
        if len(_DAYS) > 4096:  # a limit on everything
            _DAYS.clear()
        text = _DAYS[day] = date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
    return text


def parse_date(text: str) -> date:
    if not is_date(text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)
