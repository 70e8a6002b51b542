"""Welcome Bonus: eligibility, one per person, and the transfer of its profit.

One-per-person spans clients, so a claim is decided in two steps: the client's own checks
(``claim_refusal``), then the identity registry, through an ``IdentityPort``: offline the
registry answers at once (``InstantIdentities``); the stream worker asks the registry's own
partition and applies the verdict when it comes back. ``finalize`` applies a verdict the same
way for both, so they give the same outputs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from handlers.money import ZERO, fmt, to_usd
from handlers.clientstate import ClientState
from handlers.step import Step
from schemas.inputs import WelcomeClaim, WelcomeTransfer
from schemas.outputs import (
    TransferRefusal,
    WelcomeGranted,
    WelcomeRefusal,
    WelcomeRejected,
    WelcomeTransferApproved,
    WelcomeTransferRejected,
)


class IdentityPort(Protocol):
    def claim(self, client: ClientState, event: WelcomeClaim, step: Step) -> None:
        """Ask whether the client's identity may take the bonus; ``finalize`` the answer."""


class IdentityRegistry:
    """Which client got the Welcome Bonus for each verified identity."""

    def __init__(self, owners: dict[str, str] | None = None) -> None:
        self.owners: dict[str, str] = owners if owners is not None else {}

    def claim(self, identity_hash: str, client_id: str) -> bool:
        """True when the identity is free (it is now this client's) or already this client's."""
        owner = self.owners.setdefault(identity_hash, client_id)
        return owner == client_id


class InstantIdentities:
    """The offline port: the registry is right here."""

    def __init__(self, registry: IdentityRegistry) -> None:
        self.registry = registry

    def claim(self, client: ClientState, event: WelcomeClaim, step: Step) -> None:
        assert client.identity_hash is not None, "claim_refusal lets only verified clients through"
        finalize(client, event, self.registry.claim(client.identity_hash, client.client_id), step)


def finalize(client: ClientState, event: WelcomeClaim, identity_free: bool, step: Step) -> None:
    """Apply the registry's verdict. A second claim that passed the client's checks before the
    first was granted is refused here, as it would have been had the first been decided at once."""
    if client.welcome_granted:
        refuse(client, event, "already_claimed", step)
    elif not identity_free:
        refuse(client, event, "duplicate_identity", step)
    else:
        grant(client, event, step)


def claim_refusal(client: ClientState, event: WelcomeClaim, step: Step) -> WelcomeRefusal | None:
    """The checks a client's own state can answer, in a fixed order."""
    account = client.accounts.get(event.account_id)
    rules = step.rules
    if account is None:
        return "unknown_account"
    if client.welcome_granted:
        return "already_claimed"
    if not client.verified or client.identity_hash is None:
        return "not_verified"
    if client.country in rules.welcome_excluded_countries:
        return "country_excluded"
    if account.account_type != "welcome" or account.conditions not in rules.welcome_eligible_conditions:
        return "ineligible_account"
    return None


def grant(client: ClientState, event: WelcomeClaim, step: Step) -> None:
    assert not client.welcome_granted
    client.welcome_granted = True
    step.outputs.append(WelcomeGranted(
        id=step.output_id("welcome.granted"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=event.account_id,
        amount=fmt(step.rules.welcome_amount_usd)))


def refuse(client: ClientState, event: WelcomeClaim, reason: WelcomeRefusal, step: Step) -> None:
    step.outputs.append(WelcomeRejected(
        id=step.output_id("welcome.rejected"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=event.account_id, reason=reason))


def transfer(client: ClientState, event: WelcomeTransfer, step: Step) -> None:
    """Move welcome-account profit (never the bonus itself) to a live account."""
    source = client.accounts.get(event.account_id)
    amount_usd = to_usd(Decimal(event.amount), source.currency) if source else Decimal(event.amount)
    reason = _transfer_refusal(client, event, amount_usd, step)
    if reason is not None:
        step.outputs.append(WelcomeTransferRejected(
            id=step.output_id("welcome.transfer_rejected"), cause_id=event.id, ts=event.ts,
            client_id=client.client_id, account_id=event.account_id,
            to_account_id=event.to_account_id, amount=fmt(amount_usd), reason=reason))
        return
    assert source is not None
    source.transferred += amount_usd
    assert source.transferred <= source.profit
    step.outputs.append(WelcomeTransferApproved(
        id=step.output_id("welcome.transfer_approved"), cause_id=event.id, ts=event.ts,
        client_id=client.client_id, account_id=event.account_id,
        to_account_id=event.to_account_id, amount=fmt(amount_usd)))


def _transfer_refusal(
    client: ClientState, event: WelcomeTransfer, amount_usd: Decimal, step: Step
) -> TransferRefusal | None:
    source = client.accounts.get(event.account_id)
    target = client.accounts.get(event.to_account_id)
    if source is None or source.account_type != "welcome":
        return "unknown_account"
    if target is None or target.account_type == "welcome":
        return "unknown_account"
    if amount_usd <= ZERO:
        return "invalid_amount"
    # A fresh (external) deposit of the minimum, into a live account validated by now.
    if not any(a.qualifying_deposit and a.validated for a in client.accounts.values()):
        return "no_qualifying_deposit"
    if amount_usd > source.profit - source.transferred:
        return "insufficient_profit"
    return None


def count_profit(client: ClientState, account_id: str, pnl_usd: Decimal) -> None:
    client.accounts[account_id].profit += pnl_usd


def deposit_qualifies(amount_usd: Decimal, source: str, account_type: str, step: Step) -> bool:
    return (source == "external" and account_type != "welcome"
            and amount_usd >= step.rules.welcome_transfer_min_deposit_usd)
