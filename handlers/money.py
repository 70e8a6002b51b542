"""Exact money arithmetic. Everything is Decimal; the quantisation rules of programs.md
live here and nowhere else."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Final

ZERO: Final = Decimal(0)
MICRO: Final = Decimal("0.000001")
CENT: Final = Decimal("0.01")


def q6(value: Decimal) -> Decimal:
    """A product with a rate, quantised to micro-USD, half-even."""
    return value.quantize(MICRO, ROUND_HALF_EVEN)


def q6_down(value: Decimal) -> Decimal:
    """A share that is a cap (coverage): rounded down to micro-USD, so that rounding can never
    take it past the cap (half-even would make 50 % of 0.000035 into 0.000018)."""
    return value.quantize(MICRO, ROUND_FLOOR)


def floor_cents(value: Decimal) -> Decimal:
    """A cash payout: rounded down to whole cents."""
    return value.quantize(CENT, ROUND_FLOOR)


def to_usd(amount: Decimal, currency: str) -> Decimal:
    """Account currency to USD: 100 USC = 1 USD (exact: a shift of the exponent)."""
    return amount.scaleb(-2) if currency == "USC" else amount


def to_standard_lots(lots: Decimal, currency: str) -> Decimal:
    """On a USC (cent) account one lot is 0.01 standard lots."""
    return lots.scaleb(-2) if currency == "USC" else lots


def fmt(value: Decimal) -> str:
    """The one canonical text of an amount: plain notation, no trailing zeros, no "-0"."""
    if not value:
        return "0"
    text = str(value)
    if "E" in text:  # str() goes scientific below 1E-6: rare here, so only then the slow way
        return format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
