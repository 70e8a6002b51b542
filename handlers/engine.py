"""Applying one input event: the same function for the offline engine and for each partition
of the stream worker. What differs is only where state lives (a ``ClientStore``), how a welcome
claim reaches the identity registry (an ``IdentityPort``) and where a day's commissions are
summed across clients (a ``CommissionBook``: in process offline, a partner-keyed agent in the
worker). ``Engine`` is the offline composition: ``rewards replay`` is it behind a file reader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from handlers import client as client_rules
from handlers import history as dedupe
from handlers.history import ClientHistory, History
from handlers.money import ZERO, fmt
from handlers.rebates import PlanBook, accrue, settle, take_due
from handlers.rules import Rules
from handlers.state import ClientState, PayoutLedger, Plan
from handlers.step import Step
from handlers.verdict import Refusal
from handlers.welcome import IdentityPort, IdentityRegistry, InstantIdentities
from schemas.codec import BadInput, decode, rejection
from schemas.inputs import ClientEvent, ClientRegistered, DayClosed, InputEvent, PartnerPlan
from schemas.outputs import CommissionPayout, OutputEvent, RebatePayout
from schemas.timefmt import day_of


class Shared(msgspec.Struct, kw_only=True):
    """What every partition keeps of the events that are not a client's: partner plans, the
    dedupe of plans and day closes, the commissions its clients accrued and not yet reported
    at a day close, and which of its clients have rebates pending."""

    plans: dict[str, list[Plan]] = msgspec.field(default_factory=dict)
    history: ClientHistory = msgspec.field(default_factory=ClientHistory)
    latest_ts_us: int = 0
    commissions: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)
    rebate_clients: set[str] = msgspec.field(default_factory=set)


class ClientStore(Protocol):
    def get(self, client_id: str) -> ClientState | None: ...
    def put(self, client: ClientState) -> None:
        """``client`` is new or has changed: the worker writes it out at the end of its batch."""
    def history(self, client_id: str) -> History: ...


class CommissionBook(Protocol):
    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal]) -> None:
        """Take this partition's commissions due at ``event.date`` (by partner)."""


def apply(store: ClientStore, shared: Shared, event: InputEvent, ts_us: int, rules: Rules,
          identities: IdentityPort, commissions: CommissionBook, source: str = "") -> tuple[Step, Refusal | None]:
    """Apply one decoded event. On a refusal nothing changed and ``step`` is empty.
    ``source`` is where the worker read the input (empty offline)."""
    step = Step(event=event, ts_us=ts_us, date=day_of(ts_us), rules=rules)
    if isinstance(event, ClientEvent):
        refusal = _client_event(store, shared, event, step, identities, source)
    else:
        refusal = _shared_event(store, shared, event, step, commissions, source)
    if refusal is not None:
        assert not step.outputs and not step.commissions, "a refused event has no effect"
        return step, refusal
    for accrual in step.commissions:
        accrue(shared.commissions.setdefault(accrual.partner_id, PayoutLedger()), accrual.date, accrual.amount)
    return step, None


def _client_event(store: ClientStore, shared: Shared, event: ClientEvent, step: Step,
                  identities: IdentityPort, source: str) -> Refusal | None:
    client = store.get(event.client_id)
    if client is None:
        if not isinstance(event, ClientRegistered):
            return Refusal("unknown_client", f"client {event.client_id!r} is not registered")
        client = client_rules.register(event)
    history = store.history(event.client_id)
    event_digest = dedupe.digest(event)
    refusal = dedupe.admit(history, client.latest_ts_us, event, event_digest, step.ts_us, step.rules, source)
    if refusal is not None:
        return refusal
    refusal = client_rules.apply(client, history, event, step, PlanBook(shared.plans), identities)
    # A refused event is still remembered: its redelivery is a `duplicate`, not a second refusal.
    dedupe.remember(history, client, event, event_digest, step.ts_us, source)
    if client.rebates and any(ledger.pending for ledger in client.rebates.values()):
        shared.rebate_clients.add(client.client_id)
    store.put(client)
    return refusal


def _shared_event(store: ClientStore, shared: Shared, event: InputEvent, step: Step,
                  commissions: CommissionBook, source: str) -> Refusal | None:
    event_digest = dedupe.digest(event)
    refusal = dedupe.admit(shared.history, shared.latest_ts_us, event, event_digest, step.ts_us, step.rules, source)
    if refusal is not None:
        return refusal
    if isinstance(event, PartnerPlan):
        PlanBook(shared.plans).add(event, step.ts_us)
    elif isinstance(event, DayClosed):
        close_day(store, shared, event, step, commissions)
    dedupe.remember(shared.history, None, event, event_digest, step.ts_us, source)
    shared.latest_ts_us = max(shared.latest_ts_us, step.ts_us)
    shared.history.maybe_prune(shared.latest_ts_us, step.rules)
    return None


def close_day(store: ClientStore, shared: Shared, event: DayClosed, step: Step,
              commissions: CommissionBook) -> None:
    """Pay every client's rebates for day ``event.date`` and before, and hand the partners'
    commissions due to the commission book, which pays them summed over all clients."""
    for client_id in sorted(shared.rebate_clients):
        client = store.get(client_id)
        assert client is not None
        step.outputs.extend(_pay_rebates(client, event, step))
        if not any(ledger.pending for ledger in client.rebates.values()):
            shared.rebate_clients.discard(client_id)
        store.put(client)
    due = {}
    for partner_id in sorted(shared.commissions):
        amount = take_due(shared.commissions[partner_id], event.date)
        if amount is not None:
            due[partner_id] = amount
    commissions.close(event, step, due)


def _pay_rebates(client: ClientState, event: DayClosed, step: Step) -> list[OutputEvent]:
    payouts: list[OutputEvent] = []
    for partner_id in sorted(client.rebates):
        paid = settle(client.rebates[partner_id], event.date)
        if paid is not None:
            payouts.append(RebatePayout(
                id=step.output_id("rebate.payout", client.client_id, partner_id),
                cause_id=event.id, ts=event.ts, client_id=client.client_id,
                partner_id=partner_id, date=event.date, amount=fmt(paid[0]), carried=fmt(paid[1])))
    return payouts


class PartnerLedgers:
    """The partners' commission ledgers: each close adds what every partition reported due and
    pays the total, rounded down to cents, carrying the rest. Offline there is one partition."""

    def __init__(self, ledgers: dict[str, PayoutLedger] | None = None) -> None:
        self.ledgers: dict[str, PayoutLedger] = ledgers if ledgers is not None else {}

    def settle(self, event: DayClosed, step: Step, due: Iterable[tuple[str, Decimal]]) -> list[OutputEvent]:
        totals: dict[str, Decimal] = {}
        for partner_id, amount in due:
            totals[partner_id] = totals.get(partner_id, ZERO) + amount
        payouts: list[OutputEvent] = []
        for partner_id in sorted(totals):
            ledger = self.ledgers.setdefault(partner_id, PayoutLedger())
            accrue(ledger, event.date, totals[partner_id])
            paid = settle(ledger, event.date)
            if paid is not None:
                payouts.append(CommissionPayout(
                    id=step.output_id("commission.payout", partner_id), cause_id=event.id,
                    ts=event.ts, partner_id=partner_id, date=event.date, amount=fmt(paid[0]),
                    carried=fmt(paid[1])))
        return payouts

    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal]) -> None:
        step.outputs.extend(self.settle(event, step, due.items()))


class MemoryStore:
    """Every client in dicts: the offline engine's store."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.clients: dict[str, ClientState] = {}
        self.histories: dict[str, ClientHistory] = {}

    def get(self, client_id: str) -> ClientState | None:
        return self.clients.get(client_id)

    def put(self, client: ClientState) -> None:
        self.clients[client.client_id] = client
        self.histories[client.client_id].maybe_prune(client.latest_ts_us, self.rules)

    def history(self, client_id: str) -> ClientHistory:
        found = self.histories.get(client_id)
        if found is None:
            found = self.histories[client_id] = ClientHistory()
        return found


class Engine:
    """The whole engine in one process."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules.default()
        self.store = MemoryStore(self.rules)
        self.shared = Shared()
        self.registry = IdentityRegistry()
        self.identities = InstantIdentities(self.registry)
        self.partners = PartnerLedgers()

    @property
    def clients(self) -> dict[str, ClientState]:
        return self.store.clients

    @property
    def histories(self) -> dict[str, ClientHistory]:
        return self.store.histories

    @property
    def commissions(self) -> dict[str, PayoutLedger]:
        return self.partners.ledgers

    def process(self, raw: bytes, source: dict[str, Any]) -> list[OutputEvent]:
        """One input, exactly as received, to its outputs. Never raises on bad input."""
        decoded = decode(raw)
        if isinstance(decoded, BadInput):
            return [rejection(decoded, raw, source, rejection_id(decoded.cause_id, raw))]
        step, refusal = apply(self.store, self.shared, decoded.event, decoded.ts_us, self.rules,
                              self.identities, self.partners)
        if refusal is not None:
            return [refused(decoded.event, refusal, raw, source)]
        return step.outputs


def refused(event: InputEvent, refusal: Refusal, raw: bytes, source: dict[str, Any]) -> OutputEvent:
    assert refusal.reason != "recopy", "a second copy of an input is skipped, not rejected"
    bad = BadInput(refusal.reason, refusal.error, event.id, getattr(event, "client_id", None), event.ts)
    return rejection(bad, raw, source, rejection_id(event.id, raw))


def rejection_id(cause_id: str | None, raw: bytes) -> str:
    """The same rejected bytes give the same id wherever they are rejected."""
    return f"event.rejected:{cause_id or '-'}:{hashlib.blake2b(raw, digest_size=8).hexdigest()}"
