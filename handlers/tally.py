"""What a rule set paid, by program, read from the engine's outputs, each input's outputs'
fingerprints, and how many outputs two runs' fingerprints say changed: what ``rewards whatif``
compares two rule sets by (streams.offline.whatif, which makes the report from them). Pure, and
here rather than beside the report because it runs for every output of both runs and every
input: compiled (streams.devtools.compile), where as interpreted Python the tally and the
fingerprints took a fifth of a what-if side's time, and the comparison 1.5 s of the 1M file's.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

import msgspec

from handlers.money import ZERO
from schemas.outputs import (
    BonusGranted,
    BonusReleased,
    BonusUnlocked,
    CashbackAccrued,
    CommissionPayout,
    CoverageApplied,
    FillReversed,
    OutputEvent,
    OverridePayout,
    RebatePayout,
    WelcomeGranted,
)


NO_ACCOUNT: Final = "-"  # payouts are per client or partner, not per account


class Tally:
    """One rule set's money by program. Amounts are keyed by (program, day, client, account),
    partners' by (program, day, partner); the totals per day, account type, client and partner
    are made from them at the end."""

    def __init__(self) -> None:
        self.amounts: dict[tuple[str, str, str, str], Decimal] = {}
        self.partners: dict[tuple[str, str, str], Decimal] = {}
        self.outputs = 0

    def add(self, outputs: list[OutputEvent]) -> None:
        self.outputs += len(outputs)
        for o in outputs:  # by exact type: schemas.inputs.CLIENT_EVENTS says why
            if type(o) is CashbackAccrued:
                self._add("cashback_accrued", _day(o.ts), o.client_id, o.account_id, Decimal(o.amount))
            elif type(o) is CoverageApplied:
                if o.covered != "0":
                    self._add("cashback_covered", _day(o.ts), o.client_id, o.account_id, Decimal(o.covered))
            elif type(o) is FillReversed:
                if o.cashback != "0":
                    self._add("cashback_accrued", _day(o.ts), o.client_id, o.account_id, -Decimal(o.cashback))
                if o.covered != "0":
                    self._add("cashback_covered", _day(o.ts), o.client_id, o.account_id, -Decimal(o.covered))
            elif type(o) is WelcomeGranted:
                self._add("welcome_granted", _day(o.ts), o.client_id, o.account_id, Decimal(o.amount))
            elif type(o) is BonusGranted:
                self._add("bonus_granted", _day(o.ts), o.client_id, o.account_id, Decimal(o.amount))
            elif type(o) is BonusUnlocked:
                self._add("bonus_unlocked", _day(o.ts), o.client_id, o.account_id, Decimal(o.amount))
            elif type(o) is BonusReleased:
                self._add("bonus_released", o.date, o.client_id, o.account_id, Decimal(o.amount))
            elif type(o) is RebatePayout:
                self._add("rebates_paid", o.date, o.client_id, NO_ACCOUNT, Decimal(o.amount))
            elif type(o) is CommissionPayout:
                self._add_partner("commissions_paid", o.date, o.partner_id, Decimal(o.amount))
            elif type(o) is OverridePayout:
                self._add_partner("overrides_paid", o.date, o.partner_id, Decimal(o.amount))

    def _add(self, program: str, day: str, client_id: str, account_id: str, amount: Decimal) -> None:
        key = (program, day, client_id, account_id)
        self.amounts[key] = self.amounts.get(key, ZERO) + amount

    def _add_partner(self, program: str, day: str, partner_id: str, amount: Decimal) -> None:
        key = (program, day, partner_id)
        self.partners[key] = self.partners.get(key, ZERO) + amount


def _day(ts: str | None) -> str:
    return "" if ts is None else ts[:10]


def _output_types() -> tuple[str, ...]:
    """Every output type (each model's literal ``type``), in one order for both sides."""
    found, kinds = set(), [OutputEvent]
    while kinds:
        kind = kinds.pop()
        kinds += kind.__subclasses__()
        default = next((f.default for f in msgspec.structs.fields(kind) if f.name == "type"), None)
        if isinstance(default, str):
            found.add(default)
    return tuple(sorted(found))


OUTPUT_TYPES: Final = _output_types()
PRINT: Final = 8 + 8 + 1  # an output's fingerprint: its id's hash, its contents' hash, its type
_TYPE_CODE: Final = {name: bytes([n]) for n, name in enumerate(OUTPUT_TYPES)}
_pack: Final = struct.Struct("<qq").pack
_msgpack: Final = msgspec.msgpack.Encoder().encode


def fingerprints(outputs: list[OutputEvent]) -> bytes:
    """Each output's fingerprint, in order: Python's own hashes, in C. The two sides are forked
    from one process, so they share its hash seed (one after the other, they are in it). An
    output is a frozen Struct, hashed by its fields; one holding a dict (a rejection's
    ``source``) is hashed by its msgpack bytes."""
    found = []
    for output in outputs:
        try:
            contents = hash(output)
        except TypeError:
            contents = hash(_msgpack(output))
        found.append(_pack(hash(output.id), contents) + _TYPE_CODE[output.type])
    return b"".join(found)


def changed_outputs(prints_a: bytes, ends_a: Sequence[int], prints_b: bytes, ends_b: Sequence[int]) -> list[int]:
    """How many outputs differ between two runs over the same inputs, by type (counts in
    ``OUTPUT_TYPES``' order): by id, an output of an input under one run only, or with other
    contents. Input i's fingerprints are ``prints[ends[i - 1]:ends[i]]`` on each side. The outputs
    of an input mostly come in the same order on both sides: they are compared pair by pair while
    their ids agree, and the rest of that input by id."""
    counts = [0] * len(OUTPUT_TYPES)
    start_a = start_b = 0
    for k in range(len(ends_a)):
        end_a, end_b = ends_a[k], ends_b[k]
        i, j = start_a, start_b
        while i < end_a and j < end_b and _same(prints_a, i, prints_b, j, 8):
            if not _same(prints_a, i + 8, prints_b, j + 8, PRINT - 8):
                counts[prints_a[i + PRINT - 1]] += 1
            i += PRINT
            j += PRINT
        if i < end_a or j < end_b:
            _count_by_id(prints_a[i:end_a], prints_b[j:end_b], counts)
        start_a, start_b = end_a, end_b
    return counts


def _same(a: bytes, i: int, b: bytes, j: int, size: int) -> bool:
    for n in range(size):
        if a[i + n] != b[j + n]:
            return False
    return True


def _count_by_id(prints_a: bytes, prints_b: bytes, counts: list[int]) -> None:
    by_id = {prints_b[i:i + 8]: prints_b[i + 8:i + PRINT] for i in range(0, len(prints_b), PRINT)}
    for i in range(0, len(prints_a), PRINT):
        mine = prints_a[i + 8:i + PRINT]
        if by_id.pop(prints_a[i:i + 8], None) != mine:
            counts[mine[-1]] += 1
    for other in by_id.values():
        counts[other[-1]] += 1
