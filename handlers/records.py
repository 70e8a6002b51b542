"""The records kept encoded (msgpack arrays, in the history and the changelog): msgspec Structs,
which encode and decode in C. They live apart from the state classes because mypyc does not
compile a module that defines Structs (``make setup``'s compiled build, see ``handlers.state``)."""

from __future__ import annotations

from decimal import Decimal

import msgspec


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


class Seen(msgspec.Struct, array_like=True, gc=False):
    digest: bytes
    ts_us: int
    source: str = ""  # the worker: "topic:partition:offset" of the input it came from
    # Where the redeliveries of this id rejected so far were read (the worker's input positions;
    # "" offline): their count tells the next one's rejection id apart, and a second copy of one
    # of them is still known as a copy.
    redeliveries: tuple[str, ...] = ()


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


class Plan(msgspec.Struct, kw_only=True, array_like=True):
    cause_id: str
    ts_us: int
    rebate_per_lot: dict[str, Decimal]
    commission_per_lot: dict[str, Decimal]


class Stamped(msgspec.Struct, array_like=True):
    """The first two fields of an encoded FillRecord: enough to sweep it."""

    cause_id: str
    ts_us: int
