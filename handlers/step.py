"""One input event being applied: its time, the rules, and what it has produced so far.

Dataclasses: native classes in the compiled build (``handlers.state``)."""

from __future__ import annotations

from decimal import Decimal

from dataclasses import dataclass, field

from handlers.rules import Rules
from schemas.inputs import InputEvent
from schemas.outputs import OutputEvent


@dataclass(frozen=True, slots=True)
class CommissionAccrual:
    """A partner's commission, accrued by a client's fill and owed to the partner's ledger
    (which may live in another partition: the caller routes it)."""

    partner_id: str
    date: str
    amount: Decimal
    ts_us: int = 0  # the fill's ts (a bust's accrual keeps its fill's): the partner hierarchy in force then


@dataclass(slots=True)
class Step:
    event: InputEvent
    ts_us: int
    date: str
    rules: Rules
    closed_through: str = ""  # the newest day closed before this event: its fills are late
    outputs: list[OutputEvent] = field(default_factory=list)
    commissions: list[CommissionAccrual] = field(default_factory=list)

    def output_id(self, output_type: str, *discriminators: str) -> str:
        """Deterministic: the same input gives the same output id, on any replay."""
        return ":".join((output_type, self.event.id, *discriminators))
