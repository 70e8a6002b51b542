"""Typed models of the input events (the contract in docs/events.md).

Each model checks its own fields on decode (``__post_init__``): a ValueError there becomes a
msgspec.ValidationError, which the codec turns into an ``invalid_field`` rejection.
Unknown extra fields are ignored: producers may add fields, never rename these.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Union

import msgspec

from schemas.fields import (
    CountryCode,
    Date,
    Id,
    IdentityHash,
    Money,
    SignedMoney,
    Symbol,
    Timestamp,
    check_money,
    check_signed_money,
)
from schemas.checks import check_fill, check_ts
from schemas.timefmt import parse_date

AccountType = Literal["standard_cent", "standard", "pro", "raw_spread", "welcome"]
LiveAccountType = Literal["standard_cent", "standard", "pro", "raw_spread"]
LIVE_ACCOUNT_TYPES: Final = ("standard_cent", "standard", "pro", "raw_spread")
Currency = Literal["USD", "USC"]
Conditions = Literal["standard", "pro"]
# A deposit bonus tier, as a whole percent: the rules file says which are offered (50, 100 and
# 120 by default; a tier not offered is refused `ineligible_account`).
BonusPercent = Annotated[int, msgspec.Meta(ge=1, le=1000)] | Annotated[str, msgspec.Meta(pattern="^[1-9][0-9]{0,2}$|^1000$")]


class InputEvent(msgspec.Struct, kw_only=True, tag_field="type", frozen=True):
    """The envelope every input carries. ``ts`` is parsed (and so checked) by the codec,
    once, since the engine needs its value. Money fields are checked by each model's
    ``__post_init__`` (one straight line per model: this runs for every event)."""

    id: Id
    ts: Timestamp


class ClientEvent(InputEvent, kw_only=True, frozen=True):
    client_id: Id


class ClientRegistered(ClientEvent, tag="client.registered", kw_only=True, frozen=True):
    country: CountryCode


class ClientVerified(ClientEvent, tag="client.verified", kw_only=True, frozen=True):
    id_document: bool
    phone: bool
    identity_hash: IdentityHash


class AccountOpened(ClientEvent, tag="account.opened", kw_only=True, frozen=True):
    account_id: Id
    account_type: AccountType
    currency: Currency
    conditions: Conditions | None = None

    def __post_init__(self) -> None:
        if self.account_type == "welcome" and self.conditions is None:
            raise ValueError("`conditions` is required for a welcome account")


class AccountValidated(ClientEvent, tag="account.validated", kw_only=True, frozen=True):
    account_id: Id


class TradeFill(ClientEvent, tag="trade.fill", kw_only=True, frozen=True):
    account_id: Id
    fill_id: Id
    symbol: Symbol
    action: Literal["open", "close"]
    lots: Money
    spread_cost: Money
    commission: Money
    realized_pnl: SignedMoney | None = None
    opened_at: Timestamp | None = None
    notional_usd: Money | None = None  # the fill's traded volume in USD: partner rates per notional ([rebates] basis)

    def __post_init__(self) -> None:
        check_fill(self.lots, self.spread_cost, self.commission, self.realized_pnl, self.opened_at, self.notional_usd)


class TradeBust(ClientEvent, tag="trade.bust", kw_only=True, frozen=True):
    fill_id: Id


class Deposit(ClientEvent, tag="deposit", kw_only=True, frozen=True):
    account_id: Id
    deposit_id: Id
    amount: Money
    source: Literal["external", "internal"]
    bonus_percent: BonusPercent | None = None

    def __post_init__(self) -> None:
        check_money("amount", self.amount)
        if self.amount.strip("0.") == "":
            raise ValueError("`amount` of a deposit must be greater than zero")


class WalletAllocate(ClientEvent, tag="wallet.allocate", kw_only=True, frozen=True):
    """A client-area command: the amount is signed so that a bad amount gets the
    command's own `invalid_amount` answer rather than a generic rejection."""

    account_id: Id
    amount: SignedMoney

    def __post_init__(self) -> None:
        check_signed_money("amount", self.amount)


class WelcomeClaim(ClientEvent, tag="welcome.claim", kw_only=True, frozen=True):
    account_id: Id


class WelcomeTransfer(ClientEvent, tag="welcome.transfer", kw_only=True, frozen=True):
    account_id: Id
    to_account_id: Id
    amount: SignedMoney

    def __post_init__(self) -> None:
        check_signed_money("amount", self.amount)


class PartnerLinked(ClientEvent, tag="partner.linked", kw_only=True, frozen=True):
    partner_id: Id


class PartnerPlan(InputEvent, tag="partner.plan", kw_only=True, frozen=True):
    partner_id: Id
    rebate_per_lot: dict[LiveAccountType, Money]
    commission_per_lot: dict[LiveAccountType, Money]

    def __post_init__(self) -> None:
        for table in ("rebate_per_lot", "commission_per_lot"):
            for account_type, rate in getattr(self, table).items():
                check_money(f"{table}.{account_type}", rate)
        for account_type, rate in self.rebate_per_lot.items():
            commission = self.commission_per_lot.get(account_type, "0")
            # Exact comparison: both are checked decimal strings by now.
            if Decimal(rate) > Decimal(commission):
                raise ValueError(f"rebate_per_lot.{account_type} ({rate}) exceeds "
                                 f"commission_per_lot.{account_type} ({commission})")


class PartnerParent(InputEvent, tag="partner.parent", kw_only=True, frozen=True):
    """From ``ts`` on, ``partner_id`` is a sub-partner of ``parent_id`` (none: of nobody)."""

    partner_id: Id
    parent_id: Id | None

    def __post_init__(self) -> None:
        if self.parent_id == self.partner_id:
            raise ValueError(f"`parent_id`: partner {self.partner_id!r} cannot be its own parent")


class DayClosed(InputEvent, tag="settlement.day_closed", kw_only=True, frozen=True):
    date: Date

    def __post_init__(self) -> None:
        try:
            parse_date(self.date)
        except ValueError as exc:
            raise ValueError(f"`date`: {exc}") from None


class ProgramTerms(InputEvent, tag="program.terms", kw_only=True, frozen=True):
    """A version of the program terms, in force from ``effective`` (event time) until the next
    version's: ``rules`` has the keys of a rules file (handlers.terms checks them, as it checks
    the version against the timeline: its refusals have reasons of their own)."""

    version: Id
    effective: Timestamp
    rules: dict[str, Any]
    note: str | None = None

    def __post_init__(self) -> None:
        check_ts("effective", self.effective)


AnyInput = Union[
    ClientRegistered,
    ClientVerified,
    AccountOpened,
    AccountValidated,
    TradeFill,
    TradeBust,
    Deposit,
    WalletAllocate,
    WelcomeClaim,
    WelcomeTransfer,
    PartnerLinked,
    PartnerPlan,
    PartnerParent,
    DayClosed,
    ProgramTerms,
]

INPUT_MODELS: Final[dict[str, type[InputEvent]]] = {
    str(model.__struct_config__.tag): model for model in AnyInput.__args__  # type: ignore[attr-defined]
}
# The client-keyed models, for a test by exact type (``type(event) in CLIENT_EVENTS``): every
# decoded event is of a leaf class, and isinstance against a msgspec class costs a call of the
# metaclass's __instancecheck__ when it misses.
CLIENT_EVENTS: Final[frozenset[type[InputEvent]]] = frozenset(
    model for model in INPUT_MODELS.values() if issubclass(model, ClientEvent))
