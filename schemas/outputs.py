"""Typed models of the output events. orjson serialises these dataclasses natively, in
field order, so the same output always gives the same bytes.

Every output carries `type`, a deterministic `id`, `cause_id` (the input's id), `ts` (the
input's ts, never the wall clock) and, where there is one, `client_id`. Amounts are USD
decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal


AllocationRefusal = Literal["not_verified", "account_not_validated", "unknown_account",
                            "ineligible_account", "invalid_amount", "insufficient_balance"]
WelcomeRefusal = Literal["not_verified", "country_excluded", "ineligible_account",
                         "already_claimed", "duplicate_identity", "unknown_account"]
TransferRefusal = Literal["no_qualifying_deposit", "insufficient_profit", "invalid_amount",
                          "unknown_account"]
BonusRefusal = Literal["internal_transfer", "ineligible_account", "below_minimum", "cap_reached",
                       "unknown_account"]


@dataclass(slots=True, frozen=True, kw_only=True)
class OutputEvent:
    # Redefined with its literal value by every subclass; declared here so that it is the
    # first field on the wire.
    type: str
    id: str
    cause_id: str | None
    ts: str | None


@dataclass(slots=True, frozen=True, kw_only=True)
class ClientOutput(OutputEvent):
    client_id: str


@dataclass(slots=True, frozen=True, kw_only=True)
class CoverageApplied(ClientOutput):
    type: Literal["coverage.applied"] = "coverage.applied"
    account_id: str
    fill_id: str
    cost: str
    covered: str
    charged: str
    allocated_left: str


@dataclass(slots=True, frozen=True, kw_only=True)
class CashbackAccrued(ClientOutput):
    type: Literal["cashback.accrued"] = "cashback.accrued"
    account_id: str
    fill_id: str
    amount: str
    wallet_balance: str


@dataclass(slots=True, frozen=True, kw_only=True)
class WalletAllocated(ClientOutput):
    type: Literal["wallet.allocated"] = "wallet.allocated"
    account_id: str
    amount: str
    wallet_balance: str
    allocated: str


@dataclass(slots=True, frozen=True, kw_only=True)
class WalletAllocationRejected(ClientOutput):
    type: Literal["wallet.allocation_rejected"] = "wallet.allocation_rejected"
    account_id: str
    amount: str
    reason: AllocationRefusal


@dataclass(slots=True, frozen=True, kw_only=True)
class WelcomeGranted(ClientOutput):
    type: Literal["welcome.granted"] = "welcome.granted"
    account_id: str
    amount: str


@dataclass(slots=True, frozen=True, kw_only=True)
class WelcomeRejected(ClientOutput):
    type: Literal["welcome.rejected"] = "welcome.rejected"
    account_id: str
    reason: WelcomeRefusal


@dataclass(slots=True, frozen=True, kw_only=True)
class WelcomeTransferApproved(ClientOutput):
    type: Literal["welcome.transfer_approved"] = "welcome.transfer_approved"
    account_id: str
    to_account_id: str
    amount: str


@dataclass(slots=True, frozen=True, kw_only=True)
class WelcomeTransferRejected(ClientOutput):
    type: Literal["welcome.transfer_rejected"] = "welcome.transfer_rejected"
    account_id: str
    to_account_id: str
    amount: str
    reason: TransferRefusal


@dataclass(slots=True, frozen=True, kw_only=True)
class BonusGranted(ClientOutput):
    type: Literal["bonus.granted"] = "bonus.granted"
    account_id: str
    deposit_id: str
    bonus_id: str
    percent: int
    amount: str
    required_lots: str


@dataclass(slots=True, frozen=True, kw_only=True)
class BonusRejected(ClientOutput):
    type: Literal["bonus.rejected"] = "bonus.rejected"
    account_id: str
    deposit_id: str
    reason: BonusRefusal


@dataclass(slots=True, frozen=True, kw_only=True)
class BonusProgress(ClientOutput):
    type: Literal["bonus.progress"] = "bonus.progress"
    account_id: str
    bonus_id: str
    lots_traded: str
    required_lots: str


@dataclass(slots=True, frozen=True, kw_only=True)
class BonusUnlocked(ClientOutput):
    type: Literal["bonus.unlocked"] = "bonus.unlocked"
    account_id: str
    bonus_id: str
    amount: str


@dataclass(slots=True, frozen=True, kw_only=True)
class RebateAccrued(ClientOutput):
    type: Literal["rebate.accrued"] = "rebate.accrued"
    partner_id: str
    account_id: str
    fill_id: str
    rebate: str
    commission: str
    late: bool = False  # the fill's day was already closed when it arrived: paid with the next close



@dataclass(slots=True, frozen=True, kw_only=True)
class RebatePayout(ClientOutput):
    type: Literal["rebate.payout"] = "rebate.payout"
    partner_id: str
    date: str
    amount: str
    carried: str


@dataclass(slots=True, frozen=True, kw_only=True)
class CommissionPayout(OutputEvent):
    type: Literal["commission.payout"] = "commission.payout"
    partner_id: str
    date: str
    amount: str
    carried: str


@dataclass(slots=True, frozen=True, kw_only=True)
class FillReversed(ClientOutput):
    type: Literal["fill.reversed"] = "fill.reversed"
    account_id: str
    fill_id: str
    cashback: str
    covered: str
    lots: str
    rebate: str
    commission: str


RejectionReason = Literal[
    "malformed", "unknown_type", "invalid_field", "unknown_client", "unknown_account",
    "conflicting_duplicate", "bust_window_expired", "unknown_fill", "duplicate", "stale_event",
    "parking_full", "too_large",
]


@dataclass(slots=True, frozen=True, kw_only=True)
class EventRejected(OutputEvent):
    """Bad input, as received: `raw` is the input's bytes (decoded as UTF-8; bytes that are not
    UTF-8 are given in base64 and `raw_encoding` says so), its first 4,096 bytes when it is
    longer; `raw_size` is the whole input's size in bytes and `raw_blake2b` its 64-bit BLAKE2b
    (hex, as `b2sum -l 64` prints it)."""

    type: Literal["event.rejected"] = "event.rejected"
    client_id: str | None
    reason: RejectionReason
    error: str
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_size: int
    raw_blake2b: str
    source: dict[str, Any]


OUTPUT_MODELS: Final[tuple[type[OutputEvent], ...]] = (
    CoverageApplied, CashbackAccrued, WalletAllocated, WalletAllocationRejected, WelcomeGranted,
    WelcomeRejected, WelcomeTransferApproved, WelcomeTransferRejected, BonusGranted,
    BonusRejected, BonusProgress, BonusUnlocked, RebateAccrued, RebatePayout, CommissionPayout,
    FillReversed, EventRejected,
)
