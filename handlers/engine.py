"""Applying one input event: ``decide(partition, received)``, the same function for the offline engine
and for each partition of the stream worker; touch it to change how an input's rules are composed.

What differs is only the ``Partition`` it decides for: where client state lives (a ``ClientStore``),
how a welcome claim reaches the identity registry (an ``IdentityPort``) and where a day's commissions
are summed across clients (a ``CommissionBook``). ``Engine`` is the offline composition: ``rewards
replay`` is it behind a file reader.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from decimal import Decimal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Union, cast

from handlers import bonus as bonus_rules
from handlers import client as client_rules
from handlers import parking
from handlers import cashback, welcome
from handlers import terms as timeline
from handlers.dedupe import admit, digest, remember
from handlers.history import ClientHistory
from handlers.money import ZERO, fmt
from handlers.rebates import PlanBook, accrue, ledger_of, settle, take_due
from handlers.overrides import ParentBook, override_accruals
from handlers.rules import Rules
from handlers.clientstate import ClientState
from handlers.sharedstate import Shared
from handlers.state import Parked, PayoutLedger, PendingTerms
from handlers.step import Step
from handlers.verdict import Refusal
from handlers.welcome import IdentityPort, IdentityRegistry, InstantIdentities
from schemas.codec import BadInput, Decoded, decode, rejection, rejection_digest
from schemas.inputs import (CLIENT_EVENTS, ClientEvent, ClientRegistered, DayClosed, InputEvent, PartnerParent,
                            PartnerPlan, ProgramTerms, WelcomeClaim)
from schemas.outputs import CommissionPayout, OutputEvent, OverridePayout, RebatePayout, TermsAccepted
from schemas.timefmt import day_of


class ClientStore(Protocol):
    def get(self, client_id: str) -> ClientState | None: ...
    def put(self, client: ClientState) -> None:
        """``client`` is new or has changed: the worker writes it out at the end of its batch."""
    def history(self, client_id: str) -> ClientHistory: ...


# Where a partition's clients are: the offline engine's MemoryStore, or another ClientStore (the
# worker's). Named apart although a MemoryStore is a ClientStore: compiled, a call on a
# MemoryStore is then a direct call, where one through the protocol goes through Python's method
# lookup (three an input).
Clients = Union["MemoryStore", ClientStore]


class CommissionBook(Protocol):
    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal], overrides: dict[str, Decimal]) -> None:
        """Take this partition's commissions and overrides due at ``event.date`` (by partner)."""


class Applied:
    """What one input did. ``outputs`` are in the order produced: parked inputs that this
    input's time released or expired come before its own outputs. (Made for every input: a
    class with its own ``__init__``, see ``handlers.step``.)"""

    def __init__(self, outputs: list[OutputEvent] | None = None, refusal: Refusal | None = None) -> None:
        self.outputs: list[OutputEvent] = [] if outputs is None else outputs
        self.refusal = refusal              # the input's own; its rejection is in outputs when reported
        self.parked = False                 # the input waits for a prerequisite
        self.expired = 0                    # parked inputs applied as they stood after the window
        self.event: InputEvent | None = None  # the input, when it was applied (readable, placed here)
        self.ts_us = 0                      # its ts


Placement = Callable[[InputEvent], "Refusal | bool"]
"""Whether a decoded input belongs where it was read: True (apply it), False (another partition
applies it: no effect here), or a Refusal (rejected)."""


@dataclass
class Partition:
    """What one partition decides with: its clients' store, its shared state, the deployment's rules
    (an input is applied under the terms in force at its ts) and its two ports."""

    store: Clients
    shared: Shared
    rules: Rules
    identities: IdentityPort
    commissions: CommissionBook


class Received:
    """One input as received: ``raw``, exactly its bytes; ``origin``, where it was read (a rejection's
    ``source``); ``source``, the worker's input position, which tells a second copy of an input from
    a redelivery (empty offline); ``report``, whether its rejection is this partition's to report
    (another partition reports a broadcast's); ``placement``, whether it belongs here (None: yes).
    (Made for every input: a plain class, native once compiled; a dataclass's ``__init__`` stays Python.)"""

    def __init__(self, raw: bytes, origin: dict[str, Any], source: str = "", report: bool = True,
                 placement: Placement | None = None) -> None:
        self.raw = raw
        self.origin = origin
        self.source = source
        self.report = report
        self.placement = placement


def decide(partition: Partition, received: Received, decoded: Decoded | BadInput | None = None) -> Applied:
    """One input to its effects on ``partition`` and its outputs: the one path from raw bytes to
    outputs. Never raises on bad input: unreadable bytes, a wrong placement and a refused event each
    give one rejection (none where the input is not this partition's to report). ``decoded``: the
    input decoded already (one decoding for several engines, ``rewards whatif``)."""
    raw, origin = received.raw, received.origin
    if decoded is None:
        decoded = decode(raw)
    if isinstance(decoded, BadInput):
        out = Applied(refusal=Refusal(decoded.reason, decoded.error))
        if received.report:
            out.outputs.append(rejection(decoded, raw, origin, rejection_id(decoded.cause_id, raw)))
        return out
    event = decoded.event
    placed = True if received.placement is None else received.placement(event)
    if placed is False:
        return Applied()
    if isinstance(placed, Refusal):
        return Applied([refused(event, placed, raw, origin)], placed)
    out = apply(partition, event, decoded.ts_us, received)
    out.event, out.ts_us = event, decoded.ts_us
    return out


class _Context:
    """The parts of a partition one input needs, passed on to the parked inputs it releases."""

    def __init__(self, store: Clients, shared: Shared, rules: Rules, identities: IdentityPort,
                 commissions: CommissionBook, out: Applied) -> None:
        self.store = store
        self.shared = shared
        self.rules = rules  # the deployment's; an input is applied under the terms at its ts
        self.identities = identities
        self.commissions = commissions
        self.out = out


def apply(partition: Partition, event: InputEvent, ts_us: int, received: Received) -> Applied:
    """Apply one decoded input (see ``decide``). A refusal means the input had no effect; its
    rejection is among the outputs where it is this partition's to report (never for a second copy)."""
    ctx = _Context(partition.store, partition.shared, partition.rules, partition.identities, partition.commissions,
                   Applied())
    raw, origin, source = received.raw, received.origin, received.source
    if type(event) in CLIENT_EVENTS:  # not isinstance: schemas.inputs.CLIENT_EVENTS says why
        refusal = _client_input(ctx, cast(ClientEvent, event), ts_us, raw, origin, source)
    else:
        refusal = _shared_input(ctx, event, ts_us, source, raw, origin)
    if refusal is not None:
        ctx.out.refusal = refusal
        if received.report and refusal.reason != "recopy":
            ctx.out.outputs.append(refused(event, refusal, raw, origin))
    return ctx.out


def _advance(ctx: _Context, ts_us: int) -> None:
    """Move the partition's event time; inputs parked longer than the window are applied now."""
    shared = ctx.shared
    if ts_us > shared.clock_us:
        shared.clock_us = ts_us
    if shared.parked:
        for _, client_id in sorted((due, c) for c, due in shared.parked.items() if due < shared.clock_us):
            _drain(ctx, client_id, ctx.store.history(client_id))


def _client_input(ctx: _Context, event: ClientEvent, ts_us: int, raw: bytes, origin: dict[str, Any],
                  source: str) -> Refusal | None:
    store, shared, rules = ctx.store, ctx.shared, ctx.rules
    client_id = event.client_id
    client = store.get(client_id)
    history = store.history(client_id)
    event_digest = digest(event)
    refusal = admit(history, client.latest_ts_us if client else 0, event, event_digest, ts_us, rules, source)
    if refusal is not None:
        return refusal
    _advance(ctx, ts_us)
    if client_id not in shared.parked and (not rules.park_window_us or parking.missing(client, history, event) is None):
        refusal = _apply_client(ctx, client, history, event, ts_us)
        # A refused input is still remembered: its redelivery is a `duplicate`, never applied.
        remember(history, store.get(client_id), event, event_digest, ts_us, source)
        return refusal
    queue = history.parked()
    if len(queue) >= rules.park_max_per_client:
        remember(history, client, event, event_digest, ts_us, source)
        return Refusal("parking_full", f"client {client_id} already has {len(queue)} inputs waiting for "
                                       "a prerequisite (`[parking] max_per_client`)")
    # Parked behind the client's other waiting inputs, in ts order (arrival order among equals).
    insort(queue, Parked(ts_us, raw, source, origin), key=_parked_ts)
    history.put_parked(queue)
    remember(history, None, event, event_digest, ts_us, source)
    shared.parked_events += 1
    ctx.out.parked = True
    _drain(ctx, client_id, history)
    return None


def _parked_ts(parked: Parked) -> int:
    return parked.ts_us


def _drain(ctx: _Context, client_id: str, history: ClientHistory, settle: bool = False) -> None:
    """Apply the client's parked inputs from the oldest, while what each needs is there or it has
    waited out the window (then it is applied as it stands and gets its usual refusal); with
    ``settle``, every one, as if the window had passed."""
    shared, rules, out = ctx.shared, ctx.rules, ctx.out
    queue = history.parked()
    while queue:
        index = 0
        head = queue[0]
        event = parked_event(head)
        client = ctx.store.get(client_id)
        expired = settle or head.ts_us + rules.park_window_us < shared.clock_us
        if not expired:
            need = parking.missing(client, history, event)
            if need is not None:
                # Brought by a newer parked input (the source clocks disagree)? Then that one first.
                index = next((i for i, p in enumerate(queue) if i and parking.provides(parked_event(p)) == need), 0)
                if not index or parking.missing(client, history, parked_event(queue[index])) is not None:
                    break
                head = queue[index]
                event = parked_event(head)
        queue.pop(index)
        shared.parked_events -= 1
        out.expired += expired
        refusal = _apply_client(ctx, client, history, event, head.ts_us)
        if refusal is not None:
            out.outputs.append(refused(event, refusal, head.raw, head.origin))
    history.put_parked(queue)
    if queue:
        shared.parked[client_id] = queue[0].ts_us + rules.park_window_us
    else:
        shared.parked.pop(client_id, None)


def settle_parked(partition: Partition) -> Applied:
    """Apply every parked input as it stands, as the window would once event time passed it
    (``rewards replay --settle-at-end``: a file ends, the window never passes)."""
    ctx = _Context(partition.store, partition.shared, partition.rules, partition.identities, partition.commissions,
                   Applied())
    for _, client_id in sorted((due, c) for c, due in partition.shared.parked.items()):
        _drain(ctx, client_id, partition.store.history(client_id), settle=True)
    return ctx.out


def waiting(store: ClientStore, shared: Shared) -> list[tuple[str, str, str]]:
    """Every parked input, oldest client queue first: (its event id, what it waits for, which):
    ``client`` (its registration), ``account`` (an id), ``fill`` (an id), or ``behind`` (an
    earlier input of its client that waits)."""
    found = []
    for _, client_id in sorted((due, c) for c, due in shared.parked.items()):
        history = store.history(client_id)
        queue = history.parked()
        head = parked_event(queue[0])
        kind, ident = parking.missing(store.get(client_id), history, head) or ("behind", "")
        found.append((head.id, kind, ident))
        found += [(parked_event(parked).id, "behind", head.id) for parked in queue[1:]]
    return found


def parked_event(parked: Parked) -> ClientEvent:
    """The event of a parked input (it was decoded before it was parked)."""
    decoded = decode(parked.raw)
    assert not isinstance(decoded, BadInput) and isinstance(decoded.event, ClientEvent), "a parked input decoded before"
    return decoded.event


def _apply_client(ctx: _Context, client: ClientState | None, history: ClientHistory, event: ClientEvent,
                  ts_us: int) -> Refusal | None:
    """One client event on its client's state; a refusal leaves the state as it was."""
    shared = ctx.shared
    rules = timeline.rules_at(shared.terms, ctx.rules, ts_us) if shared.terms else ctx.rules
    step = Step(event=event, ts_us=ts_us, date=day_of(ts_us), rules=rules, closed_through=shared.closed_through)
    if client is None:
        if not isinstance(event, ClientRegistered):
            return Refusal("unknown_client", f"client {event.client_id!r} is not registered")
        client = client_rules.register(event)
    refusal = client_rules.apply(client, history, event, step, PlanBook(shared.plans), ctx.identities)
    if ts_us > client.latest_ts_us:
        client.latest_ts_us = ts_us
    if _payouts_pending(client):
        shared.rebate_clients.add(client.client_id)
    ctx.store.put(client)
    if refusal is not None:
        assert not step.outputs and not step.commissions, "a refused event has no effect"
        return refusal
    shares = rules.override_shares
    for accrual in step.commissions:
        accrue(ledger_of(shared.commissions, accrual.partner_id), accrual.date, accrual.amount)
        if shares:
            for override in override_accruals(ParentBook(shared.parents), accrual, shares):
                accrue(ledger_of(shared.overrides, override.partner_id), override.date, override.amount)
    ctx.out.outputs.extend(step.outputs)
    return None


def _shared_input(ctx: _Context, event: InputEvent, ts_us: int, source: str, raw: bytes,
                  origin: dict[str, Any]) -> Refusal | None:
    shared, rules = ctx.shared, ctx.rules
    event_digest = digest(event)
    refusal = admit(shared.history, shared.latest_ts_us, event, event_digest, ts_us, rules, source)
    if refusal is not None:
        return refusal
    _advance(ctx, ts_us)
    step = Step(event=event, ts_us=ts_us, date=day_of(ts_us),
                rules=timeline.rules_at(shared.terms, rules, ts_us) if shared.terms else rules,
                closed_through=shared.closed_through)
    refusal = None
    if isinstance(event, ProgramTerms):
        refusal = _terms(ctx, event, ts_us, raw, origin)
    elif isinstance(event, PartnerPlan):
        PlanBook(shared.plans).add(event, ts_us)
    elif isinstance(event, PartnerParent):
        parents = ParentBook(shared.parents)
        if parents.would_cycle(event.partner_id, event.parent_id):
            refusal = Refusal("partner_cycle", f"partner {event.parent_id!r} is already below partner "
                              f"{event.partner_id!r}: it cannot become its parent")
        else:
            parents.add(event, ts_us)
    elif isinstance(event, DayClosed):
        close_day(ctx.store, shared, event, step, ctx.commissions)
        shared.closed_through = max(shared.closed_through, event.date)
    remember(shared.history, None, event, event_digest, ts_us, source)  # a refused id too: final
    shared.latest_ts_us = max(shared.latest_ts_us, ts_us)
    shared.history.maybe_prune(shared.latest_ts_us, rules)
    ctx.out.outputs.extend(step.outputs)
    return refusal


def _terms(ctx: _Context, event: ProgramTerms, ts_us: int, raw: bytes, origin: dict[str, Any]) -> Refusal | None:
    """A version of the program terms that passes its own checks (handlers.terms) waits for the
    verdict on whether it came in time, before any input at or past its effective, on every
    partition: ``conclude_terms``. Either way alike on every partition."""
    shared = ctx.shared
    admitted = timeline.admit(shared.terms, event, ts_us, ctx.rules)
    if isinstance(admitted, Refusal):
        return admitted
    shared.terms_pending.append(PendingTerms(version=admitted, raw=raw, origin=origin,
                                             late_here=shared.clock_us >= admitted.effective_us))
    return None


def conclude_terms(shared: Shared, event_id: str, in_time: bool, report: bool = True) -> list[OutputEvent]:
    """The verdict on a pending version (``_terms``): in time, it joins the timeline
    (``terms.accepted``); else it is refused ``terms_late``. Its outputs only where ``report``
    (one partition reports for all). Nothing for a version not pending: refused by its own
    checks, or concluded before."""
    found = next((pending for pending in shared.terms_pending if pending.version.cause_id == event_id), None)
    if found is None:
        return []
    shared.terms_pending.remove(found)
    version = found.version
    decoded = decode(found.raw)
    assert not isinstance(decoded, BadInput) and isinstance(decoded.event, ProgramTerms), "decoded before"
    event = decoded.event
    if in_time:
        timeline.join(shared.terms, version)
        return [TermsAccepted(id=f"terms.accepted:{event.id}", cause_id=event.id, ts=event.ts, version=version.version,
                              effective=version.effective, digest=version.digest)] if report else []
    shared.terms_late += 1
    refusal = Refusal("terms_late", f"version {version.version!r} takes effect at {version.effective}, but inputs at "
                      "or after that instant were applied before it came (its topic lagged the others beyond the "
                      "ordering grace): refused on every partition; publish it again, ahead")
    return [refused(event, refusal, found.raw, found.origin)] if report else []


def conclude_claim(partition: Partition, client_id: str, claim_raw: bytes, identity_free: bool) -> Applied | None:
    """The identity registry's verdict on a welcome claim its client's partition sent (``IdentityPort``):
    the bonus granted or refused, under the terms at the claim's ts. None: a verdict delivered twice."""
    client = partition.store.get(client_id)
    decoded = decode(claim_raw)
    assert not isinstance(decoded, BadInput) and isinstance(decoded.event, WelcomeClaim), "decoded before"
    claim = decoded.event
    if client is None or claim.id not in client.pending_claims:
        return None
    client.pending_claims.remove(claim.id)
    step = Step(event=claim, ts_us=decoded.ts_us, date=day_of(decoded.ts_us),
                rules=timeline.rules_at(partition.shared.terms, partition.rules, decoded.ts_us))
    welcome.finalize(client, claim, identity_free, step)
    cashback.assert_conserved(client)
    partition.store.put(client)
    return Applied(step.outputs)


def close_day(store: ClientStore, shared: Shared, event: DayClosed, step: Step,
              commissions: CommissionBook) -> None:
    """Pay every client's rebates and convertible bonus releases for day ``event.date`` and
    before, and hand the partners' commissions due to the commission book, which pays them
    summed over all clients."""
    for client_id in sorted(shared.rebate_clients):
        client = store.get(client_id)
        assert client is not None
        step.outputs.extend(_pay_rebates(client, event, step))
        if client.releases:
            step.outputs.extend(bonus_rules.release(client, event, step))
        if not _payouts_pending(client):
            shared.rebate_clients.discard(client_id)
        store.put(client)
    commissions.close(event, step, _due(shared.commissions, event.date), _due(shared.overrides, event.date))


def _due(ledgers: dict[str, PayoutLedger], date: str) -> dict[str, Decimal]:
    due = {}
    for partner_id in sorted(ledgers):
        amount = take_due(ledgers[partner_id], date)
        if amount is not None:
            due[partner_id] = amount
    return due


def _payouts_pending(client: ClientState) -> bool:
    return bool(client.rebates and any(ledger.pending for ledger in client.rebates.values())
                or client.releases and any(ledger.pending for ledger in client.releases.values()))


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
    """The partners' commission and override ledgers: each close adds what every partition
    reported due and pays each total, rounded down to cents, carrying the rest. Offline there
    is one partition."""

    def __init__(self, ledgers: dict[str, PayoutLedger] | None = None,
                 overrides: dict[str, PayoutLedger] | None = None) -> None:
        self.ledgers: dict[str, PayoutLedger] = ledgers if ledgers is not None else {}
        self.overrides: dict[str, PayoutLedger] = overrides if overrides is not None else {}

    def settle(self, event: DayClosed, step: Step, due: Iterable[tuple[str, Decimal]],
               overrides: Iterable[tuple[str, Decimal]] = ()) -> list[OutputEvent]:
        """The commission payouts, then the override payouts, each by partner id."""
        payouts: list[OutputEvent] = []
        for kind, ledgers, amounts in (("commission.payout", self.ledgers, due),
                                       ("override.payout", self.overrides, overrides)):
            totals: dict[str, Decimal] = {}
            for partner_id, amount in amounts:
                totals[partner_id] = totals.get(partner_id, ZERO) + amount
            model = CommissionPayout if kind == "commission.payout" else OverridePayout
            for partner_id in sorted(totals):
                ledger = ledger_of(ledgers, partner_id)
                accrue(ledger, event.date, totals[partner_id])
                paid = settle(ledger, event.date)
                if paid is not None:
                    payouts.append(model(
                        id=step.output_id(kind, partner_id), cause_id=event.id, ts=event.ts,
                        partner_id=partner_id, date=event.date, amount=fmt(paid[0]), carried=fmt(paid[1])))
        return payouts

    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal], overrides: dict[str, Decimal]) -> None:
        step.outputs.extend(self.settle(event, step, due.items(), overrides.items()))


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
        self.partners = PartnerLedgers()
        self.partition = Partition(self.store, self.shared, self.rules, InstantIdentities(self.registry), self.partners)

    @property
    def clients(self) -> dict[str, ClientState]:
        return self.store.clients

    @property
    def histories(self) -> dict[str, ClientHistory]:
        return self.store.histories

    @property
    def commissions(self) -> dict[str, PayoutLedger]:
        return self.partners.ledgers

    def process(self, raw: bytes, source: dict[str, Any], decoded: Decoded | BadInput | None = None) -> list[OutputEvent]:
        """One input, exactly as received (``decoded``: already decoded), to its outputs. Never raises
        on bad input."""
        outputs = decide(self.partition, Received(raw, source), decoded).outputs
        return outputs + self._conclude_terms() if self.shared.terms_pending else outputs

    def _conclude_terms(self) -> list[OutputEvent]:
        """In one process the one partition's view is everyone's: a version is in time unless an
        input at or past its effective was applied before it."""
        outputs = []
        for pending in list(self.shared.terms_pending):
            outputs += conclude_terms(self.shared, pending.version.cause_id, not pending.late_here)
        return outputs

    def settle(self) -> list[OutputEvent]:
        """Apply every input still parked, as it stands (see ``settle_parked``)."""
        return settle_parked(self.partition).outputs

    def waiting(self) -> list[tuple[str, str, str]]:
        """The inputs still parked: (event id, what it waits for, which)."""
        return waiting(self.store, self.shared)


def refused(event: InputEvent, refusal: Refusal, raw: bytes, source: dict[str, Any]) -> OutputEvent:
    assert refusal.reason != "recopy", "a second copy of an input is skipped, not rejected"
    bad = BadInput(refusal.reason, refusal.error, event.id, getattr(event, "client_id", None), event.ts)
    return rejection(bad, raw, source, rejection_id(event.id, raw, refusal.repeat))


def rejection_id(cause_id: str | None, raw: bytes, repeat: int = 0) -> str:
    """The same rejected bytes give the same id wherever they are rejected; a rejected
    redelivery of an event id adds ``:n``, n = 2 for the first (the original is the first
    delivery), so that an id names one payload."""
    base = f"event.rejected:{cause_id or '-'}:{rejection_digest(raw)}"
    return base if repeat == 0 else f"{base}:{repeat + 1}"
