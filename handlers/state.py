"""The engine's state: plain, serialisable values (msgspec Structs, Decimal money).

A client's state is split in two so that the stream worker can store them apart:
``ClientState`` is what the programs know about the client (small, read on every event); its
history (ids seen, fills that can still be busted: ``handlers.history``) is what makes effects
exactly-once, bounded by the dedupe and bust windows of event time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from handlers.money import ZERO


class Account(msgspec.Struct, kw_only=True):
    account_id: str
    account_type: str
    currency: str
    conditions: str | None = None
    validated: bool = False
    allocated: Decimal = ZERO          # JM USD allocated here and not yet used for coverage
    qualifying_deposit: bool = False   # an external deposit of at least the transfer minimum
    profit: Decimal = ZERO             # welcome account: sum of realized P&L, USD
    transferred: Decimal = ZERO        # welcome account: profit already transferred, USD


class Wallet(msgspec.Struct, kw_only=True):
    """The Reward Wallet, JM USD. Conservation (asserted after every change):
    accrued - reversed == balance + allocated + covered."""

    balance: Decimal = ZERO
    allocated: Decimal = ZERO  # JM USD allocated to accounts and not yet used (their sum)
    accrued: Decimal = ZERO    # lifetime cashback credited
    reversed: Decimal = ZERO   # lifetime cashback taken back by busts
    covered: Decimal = ZERO    # allocated JM USD consumed by coverage, net of bust refunds


class Bonus(msgspec.Struct, kw_only=True):
    bonus_id: str
    account_id: str
    deposit_id: str
    percent: int
    amount: Decimal
    required_lots: Decimal
    lots_traded: Decimal = ZERO
    unlocked: bool = False
    release_per_lot: Decimal = ZERO  # a convertible bonus: USD released as cash per lot traded (0: not one)


class PayoutLedger(msgspec.Struct, kw_only=True):
    """What one payee accrued and was paid. ``pending`` holds accruals by the UTC date of the
    entry that made them, so that closing day D pays exactly the entries of D and before."""

    pending: dict[str, Decimal] = msgspec.field(default_factory=dict)
    carried: Decimal = ZERO
    accrued: Decimal = ZERO    # lifetime, net of reversals
    paid: Decimal = ZERO       # lifetime


class ClientState(msgspec.Struct, kw_only=True):
    client_id: str
    country: str
    latest_ts_us: int = 0              # the newest event time applied: the windows' reference
    id_document: bool = False
    phone: bool = False
    identity_hash: str | None = None
    accounts: dict[str, Account] = msgspec.field(default_factory=dict)
    wallet: Wallet = msgspec.field(default_factory=Wallet)
    welcome_granted: bool = False
    bonus_granted_usd: Decimal = ZERO
    external_deposits: int = 0         # deposits of new money: the first may earn a first-deposit-only tier
    bonuses: list[Bonus] = msgspec.field(default_factory=list)
    partner_id: str | None = None
    rebates: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)  # by partner id
    releases: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)  # convertible bonuses', by bonus id
    pending_claims: list[str] = msgspec.field(default_factory=list)  # welcome claims awaiting the registry

    @property
    def verified(self) -> bool:
        return self.id_document and self.phone


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
