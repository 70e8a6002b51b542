"""Summing a partner's commission over every partition: a day close is paid once each of the
N ledger partitions has reported its share. Shared by the ``commissions`` agent and by
``rewards replay --from-kafka``; reads and writes table-like mappings."""

from __future__ import annotations

from collections.abc import MutableMapping
from decimal import Decimal

import msgspec

from handlers.engine import PartnerLedgers
from handlers.rules import Rules
from handlers.state import PayoutLedger
from handlers.step import Step
from schemas.inputs import DayClosed
from schemas.outputs import OutputEvent
from schemas.timefmt import day_of, parse_ts_us
from streams import wire

_payout_ledger = msgspec.msgpack.Decoder(PayoutLedger)


class CommissionAggregator:
    def __init__(self, partitions: int, rules: Rules, closes: MutableMapping[bytes, bytes],
                 ledgers: MutableMapping[bytes, bytes]) -> None:
        self.partitions, self.rules = partitions, rules
        self.closes, self.ledgers = closes, ledgers
        self.writes: list[tuple[MutableMapping[bytes, bytes], bytes, bytes]] = []

    def receive(self, report: wire.CommissionReport, aggregator_partition: int) -> list[OutputEvent]:
        """Take one report; returns the payouts when it completes its close. Call ``flush``
        after the payouts are safely sent."""
        key = report.close_id.encode() + b"\x1f" + str(aggregator_partition).encode()
        raw = self.closes.get(key)
        progress = wire.CloseProgress() if raw is None else wire.close_progress.decode(raw)
        if progress.done or report.partition in progress.reported:
            return []  # a report sent twice
        progress.reported.add(report.partition)
        for partner_id, amount in report.due.items():
            progress.due.setdefault(partner_id, []).append(amount)
        payouts: list[OutputEvent] = []
        if len(progress.reported) == self.partitions:
            payouts = self._pay(report, progress)
            progress.done, progress.due = True, {}
        self.writes.append((self.closes, key, wire.encode(progress)))
        return payouts

    def _pay(self, report: wire.CommissionReport, progress: wire.CloseProgress) -> list[OutputEvent]:
        ledgers: dict[str, PayoutLedger] = {}
        for partner_id in progress.due:
            raw = self.ledgers.get(partner_id.encode())
            ledgers[partner_id] = PayoutLedger() if raw is None else _payout_ledger.decode(raw)
        close = DayClosed(id=report.close_id, ts=report.close_ts, date=report.date)
        ts_us = parse_ts_us(report.close_ts)
        step = Step(event=close, ts_us=ts_us, date=day_of(ts_us), rules=self.rules)
        due = [(p, Decimal(a)) for p, amounts in sorted(progress.due.items()) for a in amounts]
        payouts = PartnerLedgers(ledgers).settle(close, step, due)
        for partner_id, ledger in ledgers.items():
            self.writes.append((self.ledgers, partner_id.encode(), wire.encode(ledger)))
        return payouts

    def flush(self) -> None:
        for table, key, value in self.writes:
            table[key] = value
        self.writes.clear()
