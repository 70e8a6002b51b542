"""The engine's state: plain, serialisable values (dataclasses, Decimal money).

A client's state is split in two so that the stream worker can store them apart:
``ClientState`` is what the programs know about the client (small, read on every event); its
history (ids seen, fills that can still be busted: ``handlers.history``) is what makes effects
exactly-once, bounded by the dedupe and bust windows of event time.

Dataclasses, not msgspec Structs: mypyc compiles them into native classes (attribute access
a C field read), and msgspec encodes and decodes them as it did the Structs, to the same bytes,
so the worker's changelog is unchanged (tests/unit/test_state_codec.py). The records kept
encoded as arrays stay Structs, in ``handlers.records``.
"""

from __future__ import annotations

from decimal import Decimal

from dataclasses import dataclass, field

from handlers.money import ZERO
from handlers.records import FillRecord, Parked, ParentLink, Plan, Seen

__all__ = ["Account", "Bonus", "ClientState", "FillRecord", "Parked", "ParentLink", "PayoutLedger", "Plan", "Seen",
           "Wallet"]


@dataclass(kw_only=True, slots=True)
class Account:
    account_id: str
    account_type: str
    currency: str
    conditions: str | None = None
    validated: bool = False
    allocated: Decimal = ZERO          # JM USD allocated here and not yet used for coverage
    qualifying_deposit: bool = False   # an external deposit of at least the transfer minimum
    profit: Decimal = ZERO             # welcome account: sum of realized P&L, USD
    transferred: Decimal = ZERO        # welcome account: profit already transferred, USD


@dataclass(kw_only=True, slots=True)
class Wallet:
    """The Reward Wallet, JM USD. Conservation (asserted after every change):
    accrued - reversed == balance + allocated + covered."""

    balance: Decimal = ZERO
    allocated: Decimal = ZERO  # JM USD allocated to accounts and not yet used (their sum)
    accrued: Decimal = ZERO    # lifetime cashback credited
    reversed: Decimal = ZERO   # lifetime cashback taken back by busts
    covered: Decimal = ZERO    # allocated JM USD consumed by coverage, net of bust refunds


@dataclass(kw_only=True, slots=True)
class Bonus:
    bonus_id: str
    account_id: str
    deposit_id: str
    percent: int
    amount: Decimal
    required_lots: Decimal
    lots_traded: Decimal = ZERO
    unlocked: bool = False
    release_per_lot: Decimal = ZERO  # a convertible bonus: USD released as cash per lot traded (0: not one)


@dataclass(kw_only=True, slots=True)
class PayoutLedger:
    """What one payee accrued and was paid. ``pending`` holds accruals by the UTC date of the
    entry that made them, so that closing day D pays exactly the entries of D and before."""

    pending: dict[str, Decimal] = field(default_factory=dict)
    carried: Decimal = ZERO
    accrued: Decimal = ZERO    # lifetime, net of reversals
    paid: Decimal = ZERO       # lifetime


@dataclass(kw_only=True, slots=True)
class ClientState:
    client_id: str
    country: str
    latest_ts_us: int = 0              # the newest event time applied: the windows' reference
    id_document: bool = False
    phone: bool = False
    identity_hash: str | None = None
    accounts: dict[str, Account] = field(default_factory=dict)
    wallet: Wallet = field(default_factory=Wallet)
    welcome_granted: bool = False
    bonus_granted_usd: Decimal = ZERO
    external_deposits: int = 0         # deposits of new money: the first may earn a first-deposit-only tier
    bonuses: list[Bonus] = field(default_factory=list)
    partner_id: str | None = None
    rebates: dict[str, PayoutLedger] = field(default_factory=dict)  # by partner id
    releases: dict[str, PayoutLedger] = field(default_factory=dict)  # convertible bonuses', by bonus id
    pending_claims: list[str] = field(default_factory=list)  # welcome claims awaiting the registry

    @property
    def verified(self) -> bool:
        return self.id_document and self.phone
