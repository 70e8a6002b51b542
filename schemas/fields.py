"""Field types shared by every event model, and the strict checks behind them.

Money and lots travel as decimal strings. msgspec's own ``Decimal`` type accepts JSON
floats and scientific notation, so the wire models keep these fields as ``str`` and check
them here; the regular expressions are published in the JSON Schema documents, and
``tests/property`` proves the fast checks accept exactly what the expressions accept.
"""

from __future__ import annotations

import re
from decimal import Decimal
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

    A fill carries three or four amounts, and the same few texts ("0.10" lots, "0.01"
    commission) come again and again: an amount once accepted is remembered (a dict lookup,
    ~0.08 us, against ~0.5 us for the check), with its Decimal once ``decimal_of`` asks for it,
    up to a bound."""
    if text in _ACCEPTED:
        return True
    if not _is_money(text):
        return False
    if len(_ACCEPTED) >= ACCEPTED_KEPT_MAX:
        _ACCEPTED.clear()
    _ACCEPTED[text] = None
    return True


def decimal_of(text: str) -> Decimal:
    """``Decimal(text)``; for an amount ``is_money`` accepted, the one it remembers (a Decimal is
    immutable), so that the engine does not parse again the lots and commission decoding checked
    (the benchmark's fills: one commission text, 60 % of the lots among 100 texts). A text it
    did not accept is parsed, never remembered."""
    found = _ACCEPTED.get(text)
    if found is None:
        found = Decimal(text)
        if text in _ACCEPTED:  # accepted, not asked for before
            _ACCEPTED[text] = found
    return found


ACCEPTED_KEPT_MAX: Final = 65_536
_ACCEPTED: Final[dict[str, Decimal | None]] = {}  # accepted amounts: their Decimal once asked for


def amounts_remembered() -> int:
    """How many accepted amounts ``is_money`` remembers now (at most ACCEPTED_KEPT_MAX)."""
    return len(_ACCEPTED)


def _is_money(text: str) -> bool:
    if not text.isascii():
        return False
    head, dot, tail = text.partition(".")
    if not head.isdigit() or len(head) > MONEY_INT_DIGITS_MAX:
        return False
    if len(head) > 1 and head[0] == "0":
        return False
    if dot:
        return tail.isdigit() and len(tail) <= MONEY_FRAC_DIGITS_MAX
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
