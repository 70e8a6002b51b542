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


_MINUTE_US: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:" -> its first microsecond, for the minutes parsed whole before
_MINUTES_KEPT: Final = 1 << 16   # a limit on everything: 45 days of minutes
_FRACTION_SCALE: Final = (0, 100_000, 10_000, 1_000, 100, 10, 1)  # by the number of fraction digits
_last_text = ""  # the text parsed last (the same object), and what it gave
_last_us = 0


def parse_ts_us(text: str) -> int:
    """``2026-11-24T10:00:00.25Z`` -> microseconds since 1970-01-01T00:00:00Z.

    Accepts exactly TS_PATTERN (tests/property proves it). The common form, ``Z`` with up to six
    fraction digits, in a minute already seen (an event stream's timestamps share their minute
    with hundreds of others), is read by hand: the seconds, ASCII digits below 60 as fromisoformat
    checks them, and the fraction. Anything else takes the whole path: the published pattern
    checks the shape and fromisoformat the values (month 13, 25:00, 30 February are refused),
    both in C.
    """
    global _last_text, _last_us
    if text is _last_text:  # a fill's `opened_at`: checked on decoding, read again by its rules
        return _last_us
    size = len(text)
    if 20 <= size <= 27 and text[size - 1] == "Z":
        minute_us = _MINUTE_US.get(text[:17])
        if minute_us is not None:
            seconds = text[17:19]
            if seconds.isascii() and seconds.isdigit() and seconds < "60":
                if size == 20:
                    ts_us = minute_us + int(seconds) * US_PER_SECOND
                    _last_text, _last_us = text, ts_us
                    return ts_us
                fraction = text[20:size - 1]
                if size >= 22 and text[19] == "." and fraction.isascii() and fraction.isdigit():
                    ts_us = minute_us + int(seconds) * US_PER_SECOND + int(fraction) * _FRACTION_SCALE[size - 21]
                    _last_text, _last_us = text, ts_us
                    return ts_us
    ts_us = _parse_whole(text)
    if len(_MINUTE_US) >= _MINUTES_KEPT:
        _MINUTE_US.clear()
    _MINUTE_US[text[:17]] = ts_us - ts_us % 60_000_000
    _last_text, _last_us = text, ts_us
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
