"""Partner (IB) rebates and commissions: accrual per closing fill, daily payout with the
cent remainder carried.

A client's rebate ledger lives with the client; a partner's commission ledger gathers the
commissions of all its clients (in the worker, from every partition), so accruals to it are
returned to the caller as ``CommissionAccrual`` values rather than applied here.
"""

from __future__ import annotations

from bisect import insort
from decimal import Decimal
from typing import Final

from handlers.money import CENT, ZERO, floor_cents, q6
from handlers.state import PayoutLedger, Plan
from handlers.step import CommissionAccrual, Step
from schemas.inputs import PartnerPlan

PLANS_KEPT_MAX: Final = 32


class PlanBook:
    """Every partner's plans by effective time. The plan for a fill is the newest plan whose
    ``ts`` is not after the fill's: so a plan published late still applies to the fills after it
    in event time, whichever partition sees it first."""

    def __init__(self, plans: dict[str, list[Plan]] | None = None) -> None:
        self.plans: dict[str, list[Plan]] = plans if plans is not None else {}

    def add(self, event: PartnerPlan, ts_us: int) -> None:
        plan = Plan(
            cause_id=event.id, ts_us=ts_us,
            rebate_per_lot={k: Decimal(v) for k, v in event.rebate_per_lot.items()},
            commission_per_lot={k: Decimal(v) for k, v in event.commission_per_lot.items()})
        history = self.plans.setdefault(event.partner_id, [])
        insort(history, plan, key=lambda p: (p.ts_us, p.cause_id))
        del history[:-PLANS_KEPT_MAX]  # a limit on everything: old plans no fill can still use

    def rates(self, partner_id: str, account_type: str, ts_us: int) -> tuple[Decimal, Decimal]:
        """(rebate, commission) per standard lot for a fill at ``ts_us``; zero when no plan
        applies or the plan does not name the account type."""
        for plan in reversed(self.plans.get(partner_id, ())):
            if plan.ts_us <= ts_us:
                return (plan.rebate_per_lot.get(account_type, ZERO),
                        plan.commission_per_lot.get(account_type, ZERO))
        return ZERO, ZERO


def ledger_of(ledgers: dict[str, PayoutLedger], payee: str) -> PayoutLedger:
    """The payee's ledger, made when it has none (not one made and dropped on every call, as
    ``setdefault`` would: a fill with a partner asks for one)."""
    ledger = ledgers.get(payee)
    if ledger is None:
        ledger = ledgers[payee] = PayoutLedger()
    return ledger


def accrue(ledger: PayoutLedger, date: str, amount: Decimal) -> None:
    """Add (or, for a bust, subtract) an accrual dated ``date``."""
    ledger.pending[date] = ledger.pending.get(date, ZERO) + amount
    ledger.accrued += amount


def accrue_fill(
    rebates: dict[str, PayoutLedger], partner_id: str, rates: tuple[Decimal, Decimal],
    lots_std: Decimal, step: Step,
) -> tuple[Decimal, Decimal]:
    rebate, commission = q6(lots_std * rates[0]), q6(lots_std * rates[1])
    assert rebate <= commission, "a plan's rebate never exceeds its commission"
    if rebate:
        accrue(ledger_of(rebates, partner_id), step.date, rebate)
    if commission:
        step.commissions.append(CommissionAccrual(partner_id, step.date, commission, step.ts_us))
    return rebate, commission


def settle(ledger: PayoutLedger, date: str) -> tuple[Decimal, Decimal] | None:
    """Close day ``date`` for one payee: pay what accrued on that day and before, rounded down
    to cents, carrying the rest. Returns (amount, carried), or None when nothing was due."""
    due = _pop_due(ledger, date)
    if due is None:
        return None
    total = ledger.carried + due
    amount = floor_cents(total) if total >= CENT else ZERO
    ledger.carried = total - amount
    ledger.paid += amount
    assert ledger.paid + ledger.carried + sum(ledger.pending.values(), ZERO) == ledger.accrued
    if not amount:
        return None
    return amount, ledger.carried



def take_due(ledger: PayoutLedger, date: str) -> Decimal | None:
    """Remove and return what accrued on day ``date`` and before (None when nothing did): a
    partition's share of a partner's commission, handed on to be summed with the others'."""
    total = _pop_due(ledger, date)
    if total is not None:
        ledger.paid += total  # handed on: this partial ledger stays balanced
    return total


def _pop_due(ledger: PayoutLedger, date: str) -> Decimal | None:
    """Remove the accruals dated ``date`` and before; their sum, or None when there were none."""
    due_dates = [d for d in ledger.pending if d <= date]
    if not due_dates:
        return None
    return sum((ledger.pending.pop(d) for d in due_dates), ZERO)
