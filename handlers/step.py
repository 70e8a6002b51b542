"""One input event being applied: its time, the rules, and what it has produced so far.

Plain classes with their own ``__init__``, made for every input: in the compiled build
(schemas.compiled) they are native classes, made and read by compiled code directly, which a
msgspec Struct (a module defining one is not compiled) or a dataclass (its generated
``__init__`` stays Python) would not be."""

from __future__ import annotations

from decimal import Decimal

from handlers.rules import Rules
from schemas.inputs import InputEvent
from schemas.outputs import OutputEvent


class CommissionAccrual:
    """A partner's commission, accrued by a client's fill and owed to the partner's ledger
    (which may live in another partition: the caller routes it)."""

    def __init__(self, partner_id: str, date: str, amount: Decimal, ts_us: int = 0) -> None:
        self.partner_id = partner_id
        self.date = date
        self.amount = amount
        self.ts_us = ts_us  # the fill's ts (a bust's accrual keeps its fill's): the partner hierarchy in force then


class Step:
    def __init__(self, *, event: InputEvent, ts_us: int, date: str, rules: Rules, closed_through: str = "") -> None:
        self.event = event
        self.ts_us = ts_us
        self.date = date
        self.rules = rules
        self.closed_through = closed_through  # the newest day closed before this event: its fills are late
        self.outputs: list[OutputEvent] = []
        self.commissions: list[CommissionAccrual] = []

    def output_id(self, output_type: str, *discriminators: str) -> str:
        """Deterministic: the same input gives the same output id, on any replay."""
        return ":".join((output_type, self.event.id, *discriminators))
