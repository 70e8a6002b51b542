"""The whole engine in one process: every client, the identity registry, the partner plans
and the partners' commission ledgers. ``rewards replay`` is this behind a file reader; the
stream worker runs the same pieces spread over partitions.
"""

from __future__ import annotations

import hashlib
from typing import Any

from handlers import client as client_rules
from handlers import history as dedupe
from handlers.money import fmt
from handlers.rebates import PlanBook, accrue, settle
from handlers.rules import Rules
from handlers.state import ClientHistory, ClientState, PayoutLedger
from handlers.step import Step
from handlers.verdict import Refusal
from handlers.welcome import IdentityRegistry
from schemas.codec import BadInput, decode, rejection
from schemas.inputs import ClientEvent, ClientRegistered, DayClosed, InputEvent, PartnerPlan
from schemas.outputs import CommissionPayout, OutputEvent, RebatePayout
from schemas.timefmt import day_of


class Engine:
    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules.default()
        self.clients: dict[str, ClientState] = {}
        self.histories: dict[str, ClientHistory] = {}
        self.identities = IdentityRegistry()
        self.plans = PlanBook()
        self.commissions: dict[str, PayoutLedger] = {}  # by partner id
        self.global_history = ClientHistory()          # partner plans and day closes

    def process(self, raw: bytes, source: dict[str, Any]) -> list[OutputEvent]:
        """One input, exactly as received, to its outputs. Never raises on bad input."""
        decoded = decode(raw)
        if isinstance(decoded, BadInput):
            return [rejection(decoded, raw, source, rejection_id(decoded.cause_id, raw))]
        return self.apply(decoded.event, decoded.ts_us, raw, source)

    def apply(self, event: InputEvent, ts_us: int, raw: bytes, source: dict[str, Any]) -> list[OutputEvent]:
        step = Step(event=event, ts_us=ts_us, date=day_of(ts_us), rules=self.rules)
        if isinstance(event, ClientEvent):
            refusal = self._client_event(event, step)
        else:
            refusal = self._global_event(event, step)
        if refusal is not None:
            assert not step.outputs and not step.commissions, "a refused event has no effect"
            bad = BadInput(refusal.reason, refusal.error, event.id,
                           getattr(event, "client_id", None), event.ts)
            return [rejection(bad, raw, source, rejection_id(event.id, raw))]
        for accrual in step.commissions:
            accrue(self.commissions.setdefault(accrual.partner_id, PayoutLedger()),
                   accrual.date, accrual.amount)
        return step.outputs

    def _client_event(self, event: ClientEvent, step: Step) -> Refusal | None:
        client = self.clients.get(event.client_id)
        if client is None:
            if not isinstance(event, ClientRegistered):
                return Refusal("unknown_client", f"client {event.client_id!r} is not registered")
            client = client_rules.register(event)
            self.clients[event.client_id] = client
            self.histories[event.client_id] = ClientHistory()
        history = self.histories[event.client_id]
        event_digest = dedupe.digest(event)
        refusal = dedupe.admit(history, event, event_digest, step.ts_us, self.rules)
        if refusal is None:
            refusal = client_rules.apply(client, history, event, step, self.plans, self.identities)
        if refusal is None or refusal.reason not in ("duplicate", "conflicting_duplicate", "stale_event"):
            dedupe.remember(history, event, event_digest, step.ts_us, self.rules)
        return refusal

    def _global_event(self, event: InputEvent, step: Step) -> Refusal | None:
        event_digest = dedupe.digest(event)
        refusal = dedupe.admit(self.global_history, event, event_digest, step.ts_us, self.rules)
        if refusal is not None:
            return refusal
        if isinstance(event, PartnerPlan):
            self.plans.add(event, step.ts_us)
        elif isinstance(event, DayClosed):
            self._close_day(event, step)
        dedupe.remember(self.global_history, event, event_digest, step.ts_us, self.rules)
        return None

    def _close_day(self, event: DayClosed, step: Step) -> None:
        for client_id in sorted(self.clients):
            step.outputs.extend(close_client_day(self.clients[client_id], event, step))
        for partner_id in sorted(self.commissions):
            paid = settle(self.commissions[partner_id], event.date)
            if paid is not None:
                step.outputs.append(CommissionPayout(
                    id=step.output_id("commission.payout", partner_id), cause_id=event.id,
                    ts=event.ts, partner_id=partner_id, date=event.date,
                    amount=fmt(paid[0]), carried=fmt(paid[1])))


def close_client_day(client: ClientState, event: DayClosed, step: Step) -> list[OutputEvent]:
    """Pay a client's rebates, per partner, for day ``event.date`` and before."""
    payouts: list[OutputEvent] = []
    for partner_id in sorted(client.rebates):
        paid = settle(client.rebates[partner_id], event.date)
        if paid is not None:
            payouts.append(RebatePayout(
                id=step.output_id("rebate.payout", client.client_id, partner_id),
                cause_id=event.id, ts=event.ts, client_id=client.client_id,
                partner_id=partner_id, date=event.date, amount=fmt(paid[0]),
                carried=fmt(paid[1])))
    return payouts


def rejection_id(cause_id: str | None, raw: bytes) -> str:
    """The same rejected bytes give the same id wherever they are rejected."""
    return f"event.rejected:{cause_id or '-'}:{hashlib.blake2b(raw, digest_size=8).hexdigest()}"

