"""The fast field checks accept exactly what the published patterns accept."""

import re

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
