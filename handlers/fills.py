"""Trade fills and trade busts: every program a fill touches, and the exact undoing of it."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from handlers import bonus, cashback, welcome
from handlers.money import ZERO, fmt, to_standard_lots, to_usd
from handlers.rebates import PlanBook, accrue, accrue_fill, ledger_of
from handlers.dedupe import live_fill
from handlers.history import ClientHistory
from handlers.clientstate import ClientState
from handlers.step import CommissionAccrual, Step
from handlers.verdict import Refusal, unknown_account
from schemas.inputs import TradeBust, TradeFill
from schemas.outputs import FillReversed, RebateAccrued
from schemas.timefmt import parse_ts_us

NOTIONAL_UNIT: Final = Decimal(100_000)  # partner rates per notional are quoted per 100,000 USD


def on_fill(
    client: ClientState, history: ClientHistory, event: TradeFill, plans: PlanBook, step: Step
) -> Refusal | None:
    account = client.accounts.get(event.account_id)
    if account is None:
        return unknown_account(client.client_id, event.account_id)
    earlier = live_fill(history, event.fill_id, step.ts_us, step.rules)
    if earlier is not None:
        return Refusal("conflicting_duplicate",
                       f"fill {event.fill_id!r} was already applied by event {earlier.cause_id!r}")
    currency = account.currency
    cost_usd = to_usd(Decimal(event.spread_cost) + Decimal(event.commission), currency)
    covered = cash = pnl_usd = ZERO
    if account.account_type == "welcome":
        if event.action == "close" and event.realized_pnl is not None:
            pnl_usd = to_usd(Decimal(event.realized_pnl), currency)
            welcome.count_profit(client, account.account_id, pnl_usd)
    else:
        covered, cash = cashback.cover_and_credit(client, account, event.fill_id, cost_usd, step)
    turnover: list[tuple[str, Decimal]] = []
    rebate = commission = ZERO
    counts = event.action == "close" and _held_long_enough(event, step)
    volume = ZERO  # what the plan's rates are per: standard lots, or 100,000 USD of notional
    if counts:
        lots_std = to_standard_lots(Decimal(event.lots), currency)
        turnover = bonus.credit_turnover(client, account.account_id, lots_std, step)
        volume = lots_std
    if step.rules.rebate_basis == "notional":  # per side: an opening fill too; a quick close not
        counts = (counts or event.action == "open") and event.notional_usd is not None
        volume = Decimal(event.notional_usd) / NOTIONAL_UNIT if event.notional_usd is not None else ZERO
    if counts:
        if client.partner_id is not None:
            rates = plans.rates(client.partner_id, account.account_type, step.ts_us)
            rebate, commission = accrue_fill(client.rebates, client.partner_id, rates, volume, step)
            if rebate or commission:
                step.outputs.append(RebateAccrued(
                    id=step.output_id("rebate.accrued"), cause_id=event.id, ts=event.ts,
                    client_id=client.client_id, partner_id=client.partner_id,
                    account_id=account.account_id, fill_id=event.fill_id, rebate=fmt(rebate),
                    commission=fmt(commission), late=step.date <= step.closed_through))
    history.record_fill(event.fill_id, event.id, step.ts_us, account.account_id, cash, covered, turnover,
                        rebate, commission, client.partner_id if (rebate or commission) else None, pnl_usd)
    return None


def _held_long_enough(event: TradeFill, step: Step) -> bool:
    """Anti-abuse: a position closed sooner than the minimum holding time earns no rebate or
    commission and counts no turnover. A close without ``opened_at`` cannot be judged and counts."""
    minimum = step.rules.min_hold_us
    if not minimum or event.opened_at is None:
        return True
    return step.ts_us - parse_ts_us(event.opened_at) >= minimum


def on_bust(client: ClientState, history: ClientHistory, event: TradeBust, step: Step) -> Refusal | None:
    record = live_fill(history, event.fill_id, step.ts_us, step.rules)
    if record is None:
        return Refusal("unknown_fill", f"no fill {event.fill_id!r} of client {client.client_id} "
                                       "is known (never seen, or past twice the bust window)")
    if record.busted_by is not None:
        return Refusal("unknown_fill", f"fill {event.fill_id!r} was already busted by event "
                                       f"{record.busted_by!r}")
    if step.ts_us - record.ts_us > step.rules.bust_window_us:
        return Refusal("bust_window_expired", f"fill {event.fill_id!r} is older than the bust window")
    account = client.accounts[record.account_id]
    cashback.reverse(client, account, record.cashback, record.covered)
    lots = bonus.reverse_turnover(client, record.turnover, step)
    if record.partner_id is not None:
        # Reversals are new entries dated by the bust, never edits of the paid history.
        if record.rebate:
            accrue(ledger_of(client.rebates, record.partner_id), step.date, -record.rebate)
        if record.commission:
            step.commissions.append(CommissionAccrual(record.partner_id, step.date, -record.commission, record.ts_us))
    if record.pnl:
        welcome.count_profit(client, record.account_id, -record.pnl)
    record.busted_by = event.id
    history.put_fill(event.fill_id, record)
    step.outputs.append(FillReversed(
        id=step.output_id("fill.reversed"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=record.account_id, fill_id=event.fill_id,
        cashback=fmt(record.cashback), covered=fmt(record.covered), lots=fmt(lots),
        rebate=fmt(record.rebate), commission=fmt(record.commission)))
    return None
