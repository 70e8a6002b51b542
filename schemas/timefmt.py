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


_ZERO: Final = 48  # ord("0")


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
    fraction digits, from 1970 on, is read by hand, a character at a time, with the checks
    fromisoformat makes (month 13, 25:00, 30 February, second 60 are refused): integer arithmetic
    in compiled code, where a cache of minutes already seen cost a lookup in a large dict, most of
    it waiting for memory (perf). Anything else takes the whole path: the published pattern checks
    the shape and fromisoformat the values, both in C.
    """
    last = _last
    if text is last.text:
        return last.ts_us
    size = len(text)
    ts_us = -1
    if 20 <= size <= 27 and ord(text[size - 1]) == 90:  # "Z"
        ts_us = _second_us(text)
        if ts_us >= 0 and size > 20:
            ts_us = _with_fraction(text, size, ts_us)
    if ts_us < 0:  # not the common form (or before 1970: the whole path reads those too)
        ts_us = _parse_whole(text)
    last.text, last.ts_us = text, ts_us
    return ts_us


def _digits(text: str, at: int) -> int:
    """The two ASCII digits at ``at`` as a number; -1 when either is not one."""
    tens, units = ord(text[at]) - _ZERO, ord(text[at + 1]) - _ZERO
    if 0 <= tens <= 9 and 0 <= units <= 9:
        return tens * 10 + units
    return -1


def _second_us(text: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` at the start of ``text`` as microseconds since the epoch; -1 when
    it is not that shape, not a day of the calendar, or before 1970."""
    if ord(text[4]) != 45 or ord(text[7]) != 45 or ord(text[10]) != 84 or ord(text[13]) != 58 \
            or ord(text[16]) != 58:  # "-", "-", "T", ":", ":"
        return -1
    century, year_in, month, day = _digits(text, 0), _digits(text, 2), _digits(text, 5), _digits(text, 8)
    hour, minute, second = _digits(text, 11), _digits(text, 14), _digits(text, 17)
    if century < 0 or year_in < 0 or day < 1 or not 1 <= month <= 12 or not 0 <= hour <= 23 \
            or not 0 <= minute <= 59 or not 0 <= second <= 59:
        return -1
    year = century * 100 + year_in
    if year < 1970 or day > _days_in_month(year, month):
        return -1
    days = _days_from_civil(year, month, day)
    return ((days * 24 + hour) * 60 + minute) * 60_000_000 + second * US_PER_SECOND


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil), for a
    year from 1970 on."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


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
