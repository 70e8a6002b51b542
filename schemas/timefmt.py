"""RFC 3339 UTC timestamps to integer microseconds since the epoch, and back to a date.

Event time is the only time the engine knows; it is parsed here without floats.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Final

from schemas.fields import is_date, is_timestamp

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_ONE_US: Final = timedelta(microseconds=1)
US_PER_SECOND: Final = 1_000_000
US_PER_DAY: Final = 86_400 * US_PER_SECOND


def parse_ts_us(text: str) -> int:
    """``2026-11-24T10:00:00.25Z`` -> microseconds since 1970-01-01T00:00:00Z.

    The pattern pins the format (UTC only, no date-only forms); fromisoformat then rejects
    impossible values (month 13, 25:00, 30 February) and does the arithmetic in C.
    """
    if not is_timestamp(text):
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    return (datetime.fromisoformat(text) - _EPOCH) // _ONE_US


def day_of(ts_us: int) -> str:
    """The UTC calendar date (YYYY-MM-DD) of an instant."""
    return date.fromordinal(ts_us // US_PER_DAY + _EPOCH_ORDINAL).isoformat()


def parse_date(text: str) -> date:
    if not is_date(text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)
