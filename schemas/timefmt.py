"""RFC 3339 UTC timestamps to integer microseconds since the epoch, and back to a date.

Event time is the only time the engine knows; it is parsed here without floats.
"""

from __future__ import annotations

from datetime import date
from typing import Final

from schemas.fields import is_date, is_timestamp

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
US_PER_SECOND: Final = 1_000_000
US_PER_DAY: Final = 86_400 * US_PER_SECOND


def parse_ts_us(text: str) -> int:
    """``2026-11-24T10:00:00.25Z`` -> microseconds since 1970-01-01T00:00:00Z.

    Raises ValueError on anything that is not a valid UTC timestamp (month 13, 25:00 ...).
    """
    if not is_timestamp(text):
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    day = date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal() - _EPOCH_ORDINAL
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time of day out of range: {text!r}")
    micros = 0
    if text[19] == ".":
        frac = text[20:].rstrip("Z").removesuffix("+00:00")
        micros = int(frac.ljust(6, "0"))
    return ((day * 86_400 + hour * 3_600 + minute * 60 + second) * US_PER_SECOND) + micros


def day_of(ts_us: int) -> str:
    """The UTC calendar date (YYYY-MM-DD) of an instant."""
    return date.fromordinal(ts_us // US_PER_DAY + _EPOCH_ORDINAL).isoformat()


def parse_date(text: str) -> date:
    if not is_date(text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)
