"""What every partition keeps of the events that are not a client's (``Shared``).

A msgspec Struct, like a client's history entries (``handlers.state``): the worker keeps it in
its changelog, encoded by msgspec, and decoding needs the declared field types, which mypyc erases
from a compiled class (``str | None`` becomes ``type``, ``dict[str, Plan]`` becomes ``dict``).
So the modules that define them are not compiled (streams.devtools.compile). The client state,
read and written on every input, is compiled all the same, its types declared again for the
decoder (handlers.clientstate).
"""

from __future__ import annotations

from typing import Any

import msgspec

from handlers.history import drop_expired_seen, next_prune, seen_due
from handlers.rules import Rules
from handlers.state import ParentLink, PayoutLedger, PendingTerms, Plan, Seen, TermsVersion


class SharedHistory(msgspec.Struct, kw_only=True):
    """The ids of the shared inputs seen (plans, parent links, day closes, terms), for their dedupe
    (handlers.dedupe's ``SeenIds``), swept as a client's are. It encodes as a client's history
    did when the shared state held one (tests/unit/test_state_codec pins the bytes): the fields
    a client's history has besides stay, always empty."""

    seen_ids: dict[str, Seen] = msgspec.field(default_factory=dict)
    fills: dict[str, bytes] = msgspec.field(default_factory=dict)
    deposits: dict[str, int] = msgspec.field(default_factory=dict)
    queue: list[Any] = msgspec.field(default_factory=list)
    next_prune_us: int = 0

    def seen(self, event_id: str) -> Seen | None:
        return self.seen_ids.get(event_id)

    def remember(self, event_id: str, entry: Seen) -> None:
        self.seen_ids[event_id] = entry

    def maybe_prune(self, latest_ts_us: int, rules: Rules) -> None:
        if latest_ts_us >= self.next_prune_us:
            drop_expired_seen(self.seen_ids, latest_ts_us, rules)
            self.next_prune_us = next_prune(seen_due(self.seen_ids, latest_ts_us, rules), latest_ts_us)


class Shared(msgspec.Struct, kw_only=True):
    """What every partition keeps of the events that are not a client's: partner plans, the
    dedupe of plans and day closes, the commissions its clients accrued and not yet reported
    at a day close, which of its clients have rebates pending, its event-time clock with
    the clients whose inputs are parked (handlers.parking), and the timeline of the program
    terms (handlers.terms)."""

    plans: dict[str, list[Plan]] = msgspec.field(default_factory=dict)
    parents: dict[str, list[ParentLink]] = msgspec.field(default_factory=dict)  # partner -> its parent links
    history: SharedHistory = msgspec.field(default_factory=SharedHistory)
    latest_ts_us: int = 0
    commissions: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)
    overrides: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)  # master partner -> not yet reported
    rebate_clients: set[str] = msgspec.field(default_factory=set)  # with payouts pending: rebates, bonus releases
    clock_us: int = 0                  # the newest ts admitted here: the parking window's clock
    parked: dict[str, int] = msgspec.field(default_factory=dict)  # client -> when its oldest parked input expires
    parked_events: int = 0             # inputs parked here, all clients
    closed_through: str = ""           # the newest day closed: a fill of it or before is late
    terms: list[TermsVersion] = msgspec.field(default_factory=list)  # the terms timeline, by effective
    terms_late: int = 0                # versions refused because they came after an input at or past their effective
    terms_pending: list[PendingTerms] = msgspec.field(default_factory=list)  # waiting for their verdict
