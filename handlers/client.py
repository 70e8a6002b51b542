"""One client-keyed input event applied to that client's state."""

from __future__ import annotations

from decimal import Decimal

from handlers import bonus, cashback, fills, welcome
from handlers.money import to_usd
from handlers.rebates import PlanBook
from handlers.dedupe import live_deposit
from handlers.history import ClientHistory
from handlers.clientstate import Account, ClientState
from handlers.step import Step
from handlers.verdict import Refusal, unknown_account
from handlers.welcome import IdentityPort
from schemas.inputs import (
    AccountOpened,
    AccountValidated,
    ClientEvent,
    ClientRegistered,
    ClientVerified,
    Deposit,
    PartnerLinked,
    TradeBust,
    TradeFill,
    WalletAllocate,
    WelcomeClaim,
    WelcomeTransfer,
)


def register(event: ClientRegistered) -> ClientState:
    return ClientState(client_id=event.client_id, country=event.country)


def apply(
    client: ClientState, history: ClientHistory, event: ClientEvent, step: Step,
    plans: PlanBook, identities: IdentityPort,
) -> Refusal | None:
    """Apply ``event``; a Refusal means it had no effect at all."""
    # By exact type (the events are leaf classes), not isinstance nor `match`, which is
    # isinstance: one that misses a msgspec class runs its metaclass's __instancecheck__, about
    # 600 instructions (callgrind); `type(event) is` is a pointer compare once compiled.
    if type(event) is TradeFill:
        refusal = fills.on_fill(client, history, event, plans, step)
    elif type(event) is TradeBust:
        refusal = fills.on_bust(client, history, event, step)
    elif type(event) is WalletAllocate:
        cashback.allocate(client, event, step)
        refusal = None
    elif type(event) is Deposit:
        refusal = _deposit(client, history, event, step)
    elif type(event) is WelcomeClaim:
        reason = welcome.claim_refusal(client, event, step)
        if reason is None:
            identities.claim(client, event, step)  # one per person: decided across clients
        else:
            welcome.refuse(client, event, reason, step)
        refusal = None
    elif type(event) is WelcomeTransfer:
        welcome.transfer(client, event, step)
        refusal = None
    else:
        refusal = _profile(client, event)
    cashback.assert_conserved(client)
    return refusal


def _profile(client: ClientState, event: ClientEvent) -> Refusal | None:
    """Events that change what the programs know about the client and emit nothing."""
    if type(event) is ClientRegistered:
        client.country = event.country
    elif type(event) is ClientVerified:
        client.id_document, client.phone = event.id_document, event.phone
        client.identity_hash = event.identity_hash
    elif type(event) is AccountOpened:
        if event.account_id in client.accounts:
            return Refusal("invalid_field", f"account {event.account_id!r} is already open")
        client.accounts[event.account_id] = Account(
            account_id=event.account_id, account_type=event.account_type,
            currency=event.currency, conditions=event.conditions)
    elif type(event) is AccountValidated:
        account = client.accounts.get(event.account_id)
        if account is None:
            return unknown_account(client.client_id, event.account_id)
        account.validated = True
    elif type(event) is PartnerLinked:
        client.partner_id = event.partner_id
    else:
        raise AssertionError(f"no handler for {type(event).__name__}")
    return None


def _deposit(client: ClientState, history: ClientHistory, event: Deposit, step: Step) -> Refusal | None:
    account = client.accounts.get(event.account_id)
    if account is None:
        if event.bonus_percent is not None:  # the client chose a bonus: answer that choice
            bonus.reject(client, event, "unknown_account", step)
            return None
        return unknown_account(client.client_id, event.account_id)
    if live_deposit(history, event.deposit_id, client.latest_ts_us, step.rules):
        return Refusal("conflicting_duplicate", f"deposit {event.deposit_id!r} was already applied")
    history.put_deposit(event.deposit_id, step.ts_us)
    amount_usd = to_usd(Decimal(event.amount), account.currency)
    if welcome.deposit_qualifies(amount_usd, event.source, account.account_type, step):
        account.qualifying_deposit = True
    bonus.on_deposit(client, account, event, step)
    if event.source == "external":
        client.external_deposits += 1
    return None

