"""The fast field checks accept exactly what the published patterns accept."""

import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from schemas.fields import MONEY_PATTERN, SIGNED_MONEY_PATTERN, is_money, is_signed_money

MONEY = re.compile(MONEY_PATTERN)
SIGNED = re.compile(SIGNED_MONEY_PATTERN)
near_money = st.text(alphabet="0123456789.-+e_ ٣", max_size=20)


@given(st.one_of(near_money, st.from_regex(MONEY, fullmatch=True), st.text(max_size=8)))
def test_is_money_matches_the_pattern(text: str) -> None:
    assert is_money(text) == bool(MONEY.fullmatch(text))


@given(st.one_of(near_money, st.from_regex(SIGNED, fullmatch=True)))
def test_is_signed_money_matches_the_pattern(text: str) -> None:
    assert is_signed_money(text) == bool(SIGNED.fullmatch(text))


TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)")
near_ts = st.builds(lambda a, b: a + b, st.from_regex(TS, fullmatch=True),
                    st.sampled_from(["", "Z", "0", " ", "+01:00", "\n"]))


@given(st.one_of(st.from_regex(TS, fullmatch=True), near_ts, st.text(max_size=30),
                 st.datetimes().map(lambda d: d.isoformat() + "Z")))
def test_timestamps_are_accepted_exactly_when_they_match_the_pattern(text: str) -> None:
    from datetime import datetime, timedelta, timezone

    from schemas.timefmt import parse_ts_us

    try:
        parsed = parse_ts_us(text)
    except ValueError:
        parsed = None
    if not TS.fullmatch(text):
        assert parsed is None
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            assert parsed is None  # the pattern allows 2026-02-30: the calendar does not
        else:
            epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
            assert parsed == (moment - epoch) // timedelta(microseconds=1)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-10**10, max_value=10**10))
def test_fmt_is_plain_and_exact(value: Decimal) -> None:
    from handlers.money import fmt

    text = fmt(value)
    assert Decimal(text) == value
    assert "E" not in text and text != "-0"
    assert not ("." in text and text.endswith("0"))


tails = st.one_of(st.from_regex(r"T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|\+00:00)?", fullmatch=True),
                  st.text(alphabet="0123456789:.ZT+٣ ", min_size=8, max_size=18))


# Leap days and the days around them, the first day read by hand, the last the calendar has, a day
# before 1970 (the whole path's), and days the calendar does not have.
DAYS = ["2026-11-24", "2024-02-29", "2000-02-29", "2100-02-28", "2100-02-29", "2023-02-29", "1970-01-01",
        "1969-12-31", "9999-12-31", "2026-04-31", "2026-13-01", "2026-00-10", "0000-01-01"]


@given(st.sampled_from(DAYS), tails)
def test_the_hand_read_form_is_read_as_the_pattern_and_the_calendar_read_it(day: str, tail: str) -> None:
    """The hand-read form (``Z``, up to six fraction digits, from 1970) accepts and gives exactly
    what the whole path does: fromisoformat's calendar, clock and fraction."""
    from datetime import datetime, timedelta, timezone

    from schemas.timefmt import parse_ts_us

    text = day + tail
    try:
        parsed = parse_ts_us(text)
    except ValueError:
        parsed = None
    try:
        moment = datetime.fromisoformat(text) if TS.fullmatch(text) else None
    except ValueError:
        moment = None
    expected = None if moment is None else (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    assert parsed == expected
