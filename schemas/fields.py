"""Field types shared by every event model, and the strict checks behind them.

Money and lots travel as decimal strings. msgspec's own ``Decimal`` type accepts JSON
floats and scientific notation, so the wire models keep these fields as ``str`` and check
them here; the regular expressions are published in the JSON Schema documents, and
``tests/property`` proves the fast checks accept exactly what the expressions accept.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

# Sizes are bounded so that every product the engine forms (lots x per-lot rate, amount x
# share) stays exact within Decimal's default 28 significant digits.
MONEY_INT_DIGITS_MAX: Final = 10
MONEY_FRAC_DIGITS_MAX: Final = 6
ID_LENGTH_MAX: Final = 128

MONEY_PATTERN: Final = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?$"
SIGNED_MONEY_PATTERN: Final = r"^-?(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?$"
TS_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)$"
DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

_DATE_RE: Final = re.compile(DATE_PATTERN)

# Bounded by length only: a pattern check per id field costs more than the rest of decoding.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_LENGTH_MAX)]
# Checked in __post_init__ (see module doc); the pattern here only documents the schema.
Money = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": MONEY_PATTERN})]
SignedMoney = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": SIGNED_MONEY_PATTERN})]
Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": TS_PATTERN, "format": "date-time"})]
Date = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": DATE_PATTERN, "format": "date"})]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
CountryCode = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]
IdentityHash = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


def is_money(text: str) -> bool:
    """True when ``text`` matches MONEY_PATTERN (a non-negative plain decimal).

    A character at a time, compiled: no cache of texts seen before. One (a dict of up to 65,536
    texts) took fewer instructions but more time: most amounts are new texts, and a lookup in a
    dict that size mostly waits for memory (perf, 1M-event replay)."""
    size = len(text)
    if not 0 < size <= MONEY_INT_DIGITS_MAX + 1 + MONEY_FRAC_DIGITS_MAX:
        return False
    point = 0
    while point < size:
        code = ord(text[point])
        if code == 46:  # "."
            break
        if not 48 <= code <= 57:  # an ASCII digit
            return False
        point += 1
    if point == 0 or point > MONEY_INT_DIGITS_MAX or (point > 1 and ord(text[0]) == 48):
        return False
    if point == size:
        return True
    if not 1 <= size - point - 1 <= MONEY_FRAC_DIGITS_MAX:
        return False
    for at in range(point + 1, size):
        if not 48 <= ord(text[at]) <= 57:
            return False
    return True


def is_signed_money(text: str) -> bool:
    """True when ``text`` matches SIGNED_MONEY_PATTERN."""
    return is_money(text[1:] if text[:1] == "-" else text)


def is_date(text: str) -> bool:
    return _DATE_RE.match(text) is not None


def check_money(name: str, text: str) -> None:
    if not is_money(text):
        raise money_error(name, text)


def money_error(name: str, text: str) -> ValueError:
    return ValueError(f"`{name}` must be a non-negative decimal string like \"12.5\" "
                         f"(at most {MONEY_INT_DIGITS_MAX} integer and {MONEY_FRAC_DIGITS_MAX} "
                      f"fraction digits), got {text!r}")


def check_signed_money(name: str, text: str) -> None:
    if not is_signed_money(text):
        raise ValueError(f"`{name}` must be a decimal string like \"-12.5\", got {text!r}")
