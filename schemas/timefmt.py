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


_DAY_US: dict[str, int] = {}  # "YYYY-MM-DD" -> its first microsecond, for the dates parsed whole before


def parse_ts_us(text: str) -> int:
    """``2026-11-24T10:00:00.25Z`` -> microseconds since 1970-01-01T00:00:00Z.

    Accepts exactly TS_PATTERN (tests/property proves it). The common form, ``Z`` with up to six
    fraction digits, on a date already seen, is read by hand: ASCII digits, hours below 24,
    minutes and seconds below 60, as fromisoformat checks them. Anything else takes the
    whole path: the published pattern checks the shape and fromisoformat the values (month 13,
    25:00, 30 February are refused), both in C.
    """
    size = len(text)
    if (text[size - 1:] == "Z" and text[10:11] == "T" and text[13:14] == ":" and text[16:17] == ":"
            and (size == 20 or (22 <= size <= 27 and text[19] == "."))):
        day_us = _DAY_US.get(text[:10])
        digits = text[11:13] + text[14:16] + text[17:19] + text[20:size - 1]
        if day_us is not None and digits.isascii() and digits.isdigit():
            hours, minutes, seconds = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
            if hours < 24 and minutes < 60 and seconds < 60:
                fraction = int(digits[6:].ljust(6, "0")) if size > 20 else 0
                return day_us + ((hours * 60 + minutes) * 60 + seconds) * US_PER_SECOND + fraction
    ts_us = _parse_whole(text)
    if len(_DAY_US) > 4096:  # a limit on everything
        _DAY_US.clear()
    _DAY_US[text[:10]] = ts_us - ts_us % US_PER_DAY
    return ts_us


def _parse_whole(text: str) -> int:
    if _TS_SHAPE(text) is None:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r} ({exc})") from None
    return (moment - _EPOCH) // _ONE_US


_DAYS: dict[int, str] = {}


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
