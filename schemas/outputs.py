"""Typed models of the output events: msgspec Structs (made and encoded in C: a dataclass cost
seven times as much to build and four times as much to encode), serialised in field order, so the
same output always gives the same bytes.

Every output carries `type`, a deterministic `id`, `cause_id` (the input's id), `ts` (the
input's ts, never the wall clock) and, where there is one, `client_id`. Amounts are USD
decimal strings.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec


AllocationRefusal = Literal["not_verified", "account_not_validated", "unknown_account",
                            "ineligible_account", "invalid_amount", "insufficient_balance"]
WelcomeRefusal = Literal["not_verified", "country_excluded", "ineligible_account",
                         "already_claimed", "duplicate_identity", "unknown_account"]
TransferRefusal = Literal["no_qualifying_deposit", "insufficient_profit", "invalid_amount",
                          "unknown_account"]
BonusRefusal = Literal["internal_transfer", "ineligible_account", "below_minimum", "cap_reached",
                       "unknown_account", "not_first_deposit"]


class OutputEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    # Redefined with its literal value by every subclass; declared here so that it is the
    # first field on the wire.
    type: str
    id: str
    cause_id: str | None
    ts: str | None


class ClientOutput(OutputEvent, frozen=True, kw_only=True, gc=False):
    client_id: str


class CoverageApplied(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["coverage.applied"] = "coverage.applied"
    account_id: str
    fill_id: str
    cost: str
    covered: str
    charged: str
    allocated_left: str


class CashbackAccrued(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["cashback.accrued"] = "cashback.accrued"
    account_id: str
    fill_id: str
    amount: str
    wallet_balance: str


class WalletAllocated(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["wallet.allocated"] = "wallet.allocated"
    account_id: str
    amount: str
    wallet_balance: str
    allocated: str


class WalletAllocationRejected(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["wallet.allocation_rejected"] = "wallet.allocation_rejected"
    account_id: str
    amount: str
    reason: AllocationRefusal


class WelcomeGranted(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["welcome.granted"] = "welcome.granted"
    account_id: str
    amount: str


class WelcomeRejected(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["welcome.rejected"] = "welcome.rejected"
    account_id: str
    reason: WelcomeRefusal


class WelcomeTransferApproved(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["welcome.transfer_approved"] = "welcome.transfer_approved"
    account_id: str
    to_account_id: str
    amount: str


class WelcomeTransferRejected(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["welcome.transfer_rejected"] = "welcome.transfer_rejected"
    account_id: str
    to_account_id: str
    amount: str
    reason: TransferRefusal


class BonusGranted(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["bonus.granted"] = "bonus.granted"
    account_id: str
    deposit_id: str
    bonus_id: str
    percent: int
    amount: str
    required_lots: str


class BonusRejected(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["bonus.rejected"] = "bonus.rejected"
    account_id: str
    deposit_id: str
    reason: BonusRefusal


class BonusProgress(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["bonus.progress"] = "bonus.progress"
    account_id: str
    bonus_id: str
    lots_traded: str
    required_lots: str


class BonusUnlocked(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["bonus.unlocked"] = "bonus.unlocked"
    account_id: str
    bonus_id: str
    amount: str


class BonusReleased(ClientOutput, frozen=True, kw_only=True, gc=False):
    """Cash released from a convertible bonus at a day close, for the lots traded by then."""

    type: Literal["bonus.released"] = "bonus.released"
    account_id: str
    bonus_id: str
    date: str
    amount: str
    carried: str


class RebateAccrued(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["rebate.accrued"] = "rebate.accrued"
    partner_id: str
    account_id: str
    fill_id: str
    rebate: str
    commission: str
    late: bool = False  # the fill's day was already closed when it arrived: paid with the next close



class RebatePayout(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["rebate.payout"] = "rebate.payout"
    partner_id: str
    date: str
    amount: str
    carried: str


class CommissionPayout(OutputEvent, frozen=True, kw_only=True, gc=False):
    type: Literal["commission.payout"] = "commission.payout"
    partner_id: str
    date: str
    amount: str
    carried: str


class OverridePayout(OutputEvent, frozen=True, kw_only=True, gc=False):
    """A master partner's override for a day: its shares of its sub-partners' commissions."""

    type: Literal["override.payout"] = "override.payout"
    partner_id: str
    date: str
    amount: str
    carried: str


class FillReversed(ClientOutput, frozen=True, kw_only=True, gc=False):
    type: Literal["fill.reversed"] = "fill.reversed"
    account_id: str
    fill_id: str
    cashback: str
    covered: str
    lots: str
    rebate: str
    commission: str


class TermsAccepted(OutputEvent, frozen=True, kw_only=True, gc=False):
    """The audit of a version of the program terms joining the timeline (no ``client_id``):
    ``digest`` is the SHA-256 of its ``rules`` as canonical JSON (keys sorted, no spaces)."""

    type: Literal["terms.accepted"] = "terms.accepted"
    version: str
    effective: str
    digest: str


RejectionReason = Literal[
    "malformed", "unknown_type", "invalid_field", "unknown_client", "unknown_account",
    "conflicting_duplicate", "bust_window_expired", "unknown_fill", "duplicate", "stale_event",
    "parking_full", "too_large", "partner_cycle", "terms_retroactive", "terms_conflict", "terms_invalid",
    "terms_late",
]


class EventRejected(OutputEvent, frozen=True, kw_only=True, gc=False):
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
    BonusRejected, BonusProgress, BonusUnlocked, BonusReleased, RebateAccrued, RebatePayout, CommissionPayout,
    OverridePayout, FillReversed, TermsAccepted, EventRejected,
)


def type_of(model: type[OutputEvent]) -> str:
    """The ``type`` an output model always carries."""
    (field,) = (f for f in msgspec.structs.fields(model) if f.name == "type")
    return str(field.default)
