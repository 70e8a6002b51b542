"""The engine's state kept as msgspec Structs (Decimal money): a client's history entries (seen
ids, fill records, parked inputs), payout ledgers, and the shared state's parts.

A client's state is split in two so that the stream worker can store them apart: what the
programs know about the client (``handlers.clientstate``: small, read on every event, native
classes), and its history (ids seen, fills that can still be busted: ``handlers.history``),
which makes effects exactly-once, bounded by the dedupe and bust windows of event time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from handlers.money import ZERO


class PayoutLedger(msgspec.Struct, kw_only=True):
    """What one payee accrued and was paid. ``pending`` holds accruals by the UTC date of the
    entry that made them, so that closing day D pays exactly the entries of D and before."""

    pending: dict[str, Decimal] = msgspec.field(default_factory=dict)
    carried: Decimal = ZERO
    accrued: Decimal = ZERO    # lifetime, net of reversals
    paid: Decimal = ZERO       # lifetime


class FillRecord(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """What a fill did, so that a bust can undo exactly that."""

    cause_id: str
    ts_us: int
    account_id: str
    cashback: Decimal
    covered: Decimal
    turnover: list[tuple[str, Decimal]]   # (bonus_id, standard lots credited)
    rebate: Decimal
    commission: Decimal
    partner_id: str | None
    pnl: Decimal                          # welcome account: realized P&L counted, USD
    busted_by: str | None = None


class FillStamp(msgspec.Struct, array_like=True):
    """The first two fields of an encoded FillRecord: enough to sweep it (handlers.history)."""

    cause_id: str
    ts_us: int


class Seen(msgspec.Struct, array_like=True, gc=False):
    digest: bytes
    ts_us: int
    source: str = ""  # the worker: "topic:partition:offset" of the input it came from
    # Where the redeliveries of this id rejected so far were read (the worker's input positions;
    # "" offline): their count tells the next one's rejection id apart, and a second copy of one
    # of them is still known as a copy.
    redeliveries: tuple[str, ...] = ()


class SeenStamp(msgspec.Struct, array_like=True):
    """The first two fields of an encoded Seen: enough to sweep it (handlers.history)."""

    digest: bytes
    ts_us: int


class Parked(msgspec.Struct, array_like=True, gc=False):
    """An input waiting for its prerequisite (handlers.parking), kept as received so that it is
    applied, or refused, exactly as it would have been on arrival."""

    ts_us: int
    raw: bytes
    source: str = ""                                          # the worker's input position
    origin: dict[str, str | int] = msgspec.field(default_factory=dict)  # `source` of a rejection


class ParentLink(msgspec.Struct, kw_only=True, array_like=True):
    """From ``ts_us`` on, the partner's parent is ``parent_id`` (None: it has none)."""

    cause_id: str
    ts_us: int
    parent_id: str | None


class TermsVersion(msgspec.Struct, kw_only=True, array_like=True):
    """A version of the program terms on a partition's timeline (handlers.terms)."""

    version: str
    effective_us: int
    effective: str
    digest: str          # SHA-256 of ``rules``, hex
    rules: bytes         # its rules object, canonical JSON (keys sorted)
    cause_id: str        # the program.terms event that published it


class PendingTerms(msgspec.Struct, kw_only=True, array_like=True):
    """A version that passed its own checks and waits for the verdict on whether it came in time:
    before any input at or past its ``effective`` was applied, on every partition
    (handlers.terms; the worker's sequencer decides it for all, the offline engine at once)."""

    version: TermsVersion
    raw: bytes                 # the program.terms input as received: a late one's rejection copies it
    origin: dict[str, Any]     # where it was read
    late_here: bool            # this partition had applied an input at or past its effective first


class Plan(msgspec.Struct, kw_only=True, array_like=True):
    cause_id: str
    ts_us: int
    rebate_per_lot: dict[str, Decimal]
    commission_per_lot: dict[str, Decimal]
