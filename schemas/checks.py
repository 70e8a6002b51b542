"""The field checks the input models make on decoding (their ``__post_init__``, schemas.inputs)
that run for most inputs: a trade fill's. Compiled (streams.devtools.compile): nine inputs in
ten are fills, and the same checks as source cost a Python call for each of their fields."""

from __future__ import annotations

from schemas.fields import check_money, check_signed_money, is_money
from schemas.timefmt import parse_ts_us


def check_fill(lots: str, spread_cost: str, commission: str, realized_pnl: str | None, opened_at: str | None,
               notional_usd: str | None) -> None:
    """A trade fill's amounts and its ``opened_at``; a ValueError names the field."""
    if not (is_money(lots) and is_money(spread_cost) and is_money(commission)):
        check_money("lots", lots)
        check_money("spread_cost", spread_cost)
        check_money("commission", commission)
    if notional_usd is not None:
        check_money("notional_usd", notional_usd)
    if realized_pnl is not None:
        check_signed_money("realized_pnl", realized_pnl)
    if opened_at is not None:
        check_ts("opened_at", opened_at)


def check_ts(name: str, text: str) -> None:
    try:
        parse_ts_us(text)
    except ValueError as exc:
        raise ValueError(f"`{name}`: {exc}") from None
