"""Deposit Bonus: tiers, the per-client cap, FIFO turnover towards unlocking, and convertible
bonuses released as cash per lot at day closes."""

from __future__ import annotations

from decimal import Decimal

from handlers.money import ZERO, fmt, q6, to_usd
from handlers.rebates import accrue, ledger_of, settle
from handlers.clientstate import Account, Bonus, ClientState
from handlers.step import Step
from schemas.inputs import DayClosed, Deposit
from schemas.outputs import (BonusGranted, BonusProgress, BonusRefusal, BonusRejected, BonusReleased, BonusUnlocked,
                             OutputEvent)


def on_deposit(client: ClientState, account: Account, event: Deposit, step: Step) -> None:
    """Grant the bonus the client chose with this deposit, if the deposit qualifies."""
    if event.bonus_percent is None:
        return
    percent = int(event.bonus_percent)
    amount_usd = to_usd(Decimal(event.amount), account.currency)
    rules = step.rules
    remaining_usd = rules.bonus_cap_usd - client.bonus_granted_usd
    reason = _refusal(account, event, percent, amount_usd, remaining_usd, step, client.external_deposits)
    if reason is not None:
        reject(client, event, reason, step)
        return
    bonus_usd = min(q6(amount_usd * percent / 100), remaining_usd)
    tier = rules.bonus_tiers[percent]
    # the lots to trade: all of them to unlock it; a convertible one is released per lot on the
    # way (all of it once they are traded); a credit bonus has none, and is never unlocked
    per_lot = tier.release_per_lot_usd or rules.bonus_usd_per_lot
    bonus = Bonus(
        bonus_id=f"bonus-{event.deposit_id}", account_id=account.account_id,
        deposit_id=event.deposit_id, percent=percent, amount=bonus_usd,
        required_lots=q6(bonus_usd / per_lot) if tier.turnover else ZERO,
        release_per_lot=tier.release_per_lot_usd)
    client.bonuses.append(bonus)
    client.bonus_granted_usd += bonus_usd
    assert client.bonus_granted_usd <= rules.bonus_cap_usd
    step.outputs.append(BonusGranted(
        id=step.output_id("bonus.granted"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=account.account_id, deposit_id=event.deposit_id,
        bonus_id=bonus.bonus_id, percent=percent, amount=fmt(bonus_usd),
        required_lots=fmt(bonus.required_lots)))


def reject(client: ClientState, event: Deposit, reason: BonusRefusal, step: Step) -> None:
    step.outputs.append(BonusRejected(
        id=step.output_id("bonus.rejected"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=event.account_id, deposit_id=event.deposit_id,
        reason=reason))


def _refusal(
    account: Account, event: Deposit, percent: int, amount_usd: Decimal, remaining_usd: Decimal,
    step: Step, client_deposits_before: int,
) -> BonusRefusal | None:
    tier = step.rules.bonus_tiers.get(percent)
    if event.source == "internal":
        return "internal_transfer"
    if tier is None or account.account_type not in tier.account_types:
        return "ineligible_account"
    if tier.first_deposit_only and client_deposits_before > 0:
        return "not_first_deposit"
    if amount_usd < tier.min_deposit_usd:
        return "below_minimum"
    if remaining_usd <= ZERO:
        return "cap_reached"
    return None


def credit_turnover(
    client: ClientState, account_id: str, lots_std: Decimal, step: Step
) -> list[tuple[str, Decimal]]:
    """Count a closing fill's standard lots towards the account's locked bonuses, oldest first.
    Returns what each bonus was credited, for a bust to take back."""
    credited: list[tuple[str, Decimal]] = []
    left = lots_std
    for bonus in client.bonuses:
        if left <= ZERO:
            break
        if bonus.account_id != account_id or bonus.unlocked:
            continue
        take = min(left, bonus.required_lots - bonus.lots_traded)
        if take <= ZERO:
            continue
        bonus.lots_traded += take
        left -= take
        credited.append((bonus.bonus_id, take))
        _progress(client, bonus, step)
        if bonus.release_per_lot:  # convertible: cash for these lots at the next day close
            accrue(ledger_of(client.releases, bonus.bonus_id), step.date,
                   q6(take * bonus.release_per_lot))
            continue
        if bonus.lots_traded >= bonus.required_lots:
            bonus.unlocked = True
            step.outputs.append(BonusUnlocked(
                id=step.output_id("bonus.unlocked", bonus.bonus_id), cause_id=step.event.id,
                ts=step.event.ts, client_id=client.client_id, account_id=bonus.account_id,
                bonus_id=bonus.bonus_id, amount=fmt(bonus.amount)))
    assert left >= ZERO
    return credited


def reverse_turnover(client: ClientState, credited: list[tuple[str, Decimal]], step: Step) -> Decimal:
    """Take back what a busted fill credited. An unlocked bonus stays unlocked (it may already
    be withdrawn); its traded lots still drop, so the record shows the bust."""
    by_id = {bonus.bonus_id: bonus for bonus in client.bonuses}
    total = ZERO
    for bonus_id, lots in credited:
        bonus = by_id[bonus_id]
        bonus.lots_traded -= lots
        total += lots
        assert bonus.lots_traded >= ZERO
        if bonus.release_per_lot:  # a release already paid is made up by a smaller next one
            accrue(client.releases[bonus_id], step.date, -q6(lots * bonus.release_per_lot))
        _progress(client, bonus, step)
    return total


def _progress(client: ClientState, bonus: Bonus, step: Step) -> None:
    step.outputs.append(BonusProgress(
        id=step.output_id("bonus.progress", bonus.bonus_id), cause_id=step.event.id,
        ts=step.event.ts, client_id=client.client_id, account_id=bonus.account_id,
        bonus_id=bonus.bonus_id, lots_traded=fmt(bonus.lots_traded),
        required_lots=fmt(bonus.required_lots)))


def release(client: ClientState, event: DayClosed, step: Step) -> list[OutputEvent]:
    """Close day ``event.date`` for a client's convertible bonuses: what their lots released on
    that day and before, paid as cash rounded down to the cent, the rest carried."""
    released: list[OutputEvent] = []
    accounts = {bonus.bonus_id: bonus.account_id for bonus in client.bonuses}
    for bonus_id in sorted(client.releases):
        paid = settle(client.releases[bonus_id], event.date)
        if paid is not None:
            released.append(BonusReleased(
                id=step.output_id("bonus.released", bonus_id), cause_id=event.id, ts=event.ts,
                client_id=client.client_id, account_id=accounts[bonus_id], bonus_id=bonus_id, date=event.date,
                amount=fmt(paid[0]), carried=fmt(paid[1])))
    return released
