"""What every partition keeps of the events that are not a client's (``Shared``).

A native class, compiled (streams.devtools.compile): the engine reads its clock, parked clients,
terms and plans for every input. A dataclass, as the client state is, for the same reasons and
with the same care (handlers.clientstate): msgspec encodes it to the bytes the Struct it was wrote
(tests/unit/test_state_codec pins them) and decodes it by ``DECLARED``. Its parts stay msgspec
Structs (handlers.state, and handlers.shared's ``SharedHistory``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from handlers.clientstate import declare
from handlers.shared import SharedHistory
from handlers.state import ParentLink, PayoutLedger, PendingTerms, Plan, TermsVersion


@dataclass
class Shared:
    """What every partition keeps of the events that are not a client's: partner plans, the
    dedupe of plans and day closes, the commissions its clients accrued and not yet reported
    at a day close, which of its clients have rebates pending, its event-time clock with
    the clients whose inputs are parked (handlers.parking), and the timeline of the program
    terms (handlers.terms)."""

    plans: dict[str, list[Plan]] = field(default_factory=dict)
    parents: dict[str, list[ParentLink]] = field(default_factory=dict)  # partner -> its parent links
    history: SharedHistory = field(default_factory=SharedHistory)
    latest_ts_us: int = 0
    commissions: dict[str, PayoutLedger] = field(default_factory=dict)
    overrides: dict[str, PayoutLedger] = field(default_factory=dict)  # master partner -> not yet reported
    rebate_clients: set[str] = field(default_factory=set)  # with payouts pending: rebates, bonus releases
    clock_us: int = 0                  # the newest ts admitted here: the parking window's clock
    parked: dict[str, int] = field(default_factory=dict)  # client -> when its oldest parked input expires
    parked_events: int = 0             # inputs parked here, all clients
    closed_through: str = ""           # the newest day closed: a fill of it or before is late
    terms: list[TermsVersion] = field(default_factory=list)  # the terms timeline, by effective
    terms_late: int = 0                # versions refused because they came after an input at or past their effective
    terms_pending: list[PendingTerms] = field(default_factory=list)  # waiting for their verdict


# Its field types as written above, for msgspec's decoding (handlers.clientstate says why).
DECLARED: Final[dict[type, dict[str, Any]]] = {
    Shared: {"plans": dict[str, list[Plan]], "parents": dict[str, list[ParentLink]], "history": SharedHistory,
             "latest_ts_us": int, "commissions": dict[str, PayoutLedger], "overrides": dict[str, PayoutLedger],
             "rebate_clients": set[str], "clock_us": int, "parked": dict[str, int], "parked_events": int,
             "closed_through": str, "terms": list[TermsVersion], "terms_late": int,
             "terms_pending": list[PendingTerms]},
}

declare(DECLARED)
