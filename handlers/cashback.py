"""Loyalty cashback: JM USD coverage of a fill's cost, cashback on what the client paid,
and allocation of JM USD from the Reward Wallet to a live account."""

from __future__ import annotations

from decimal import Decimal

from handlers.money import ZERO, fmt, q6, q6_down, to_usd
from handlers.clientstate import Account, ClientState, Wallet
from handlers.step import Step
from schemas.inputs import WalletAllocate
from schemas.outputs import AllocationRefusal, CashbackAccrued, CoverageApplied, WalletAllocated, WalletAllocationRejected


def assert_conserved(client: ClientState) -> None:
    """JM USD is never made or lost: accrued - reversed = wallet + allocated + covered.
    (That ``wallet.allocated`` is the sum over the accounts is checked by tests/property.)"""
    wallet = client.wallet
    assert wallet.accrued - wallet.reversed == wallet.balance + wallet.allocated + wallet.covered, (
        f"JM USD not conserved for {client.client_id}: {wallet}")


def cover_and_credit(
    client: ClientState, account: Account, fill_id: str, cost_usd: Decimal, step: Step
) -> tuple[Decimal, Decimal]:
    """Apply coverage then cashback to one fill on a live account. Returns (covered, cashback)."""
    rules, wallet = step.rules, client.wallet
    covered = ZERO
    if account.allocated > ZERO:
        covered = min(q6_down(cost_usd * rules.coverage_share), account.allocated)
    charged = cost_usd - covered
    cashback = q6(charged * rules.cashback_rate)
    if covered:
        account.allocated -= covered
        wallet.allocated -= covered
        wallet.covered += covered
        step.outputs.append(CoverageApplied(
            id=step.output_id("coverage.applied"), cause_id=step.event.id, ts=step.event.ts,
            client_id=client.client_id, account_id=account.account_id, fill_id=fill_id,
            cost=fmt(cost_usd), covered=fmt(covered), charged=fmt(charged),
            allocated_left=fmt(account.allocated)))
    if cashback:
        credit(wallet, cashback)
        step.outputs.append(CashbackAccrued(
            id=step.output_id("cashback.accrued"), cause_id=step.event.id, ts=step.event.ts,
            client_id=client.client_id, account_id=account.account_id, fill_id=fill_id,
            amount=fmt(cashback), wallet_balance=fmt(wallet.balance)))
    assert ZERO <= covered <= cost_usd * rules.coverage_share
    return covered, cashback


def credit(wallet: Wallet, cashback: Decimal) -> None:
    wallet.balance += cashback
    wallet.accrued += cashback


def reverse(client: ClientState, account: Account, cashback: Decimal, covered: Decimal) -> None:
    """Undo a fill's cashback and coverage. The wallet may go negative: later accruals repay it."""
    client.wallet.balance -= cashback
    client.wallet.reversed += cashback
    account.allocated += covered
    client.wallet.allocated += covered
    client.wallet.covered -= covered


def allocate(client: ClientState, event: WalletAllocate, step: Step) -> None:
    account = client.accounts.get(event.account_id)
    amount = Decimal(event.amount)
    amount_usd = to_usd(amount, account.currency) if account else amount
    reason = _allocation_refusal(client, account, amount_usd)
    if reason is not None:
        step.outputs.append(WalletAllocationRejected(
            id=step.output_id("wallet.allocation_rejected"), cause_id=event.id, ts=event.ts,
            client_id=client.client_id, account_id=event.account_id, amount=fmt(amount_usd),
            reason=reason))
        return
    assert account is not None
    client.wallet.balance -= amount_usd
    client.wallet.allocated += amount_usd
    account.allocated += amount_usd
    assert client.wallet.balance >= ZERO
    step.outputs.append(WalletAllocated(
        id=step.output_id("wallet.allocated"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=account.account_id, amount=fmt(amount_usd),
        wallet_balance=fmt(client.wallet.balance), allocated=fmt(account.allocated)))


def _allocation_refusal(
    client: ClientState, account: Account | None, amount_usd: Decimal
) -> AllocationRefusal | None:
    if account is None:
        return "unknown_account"
    if account.account_type == "welcome":
        return "ineligible_account"
    if amount_usd <= ZERO:
        return "invalid_amount"
    if not client.verified:
        return "not_verified"
    if not account.validated:
        return "account_not_validated"
    if amount_usd > client.wallet.balance:
        return "insufficient_balance"
    return None
