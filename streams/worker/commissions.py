"""The commission book: a partner's commission for a day is paid once each of the N ledger
partitions has reported its share of the day close, pure of Kafka. Touch it for how shares are
collected and a close is paid; how it runs and commits is streams.worker.processor's.

A ledger partition sends, on a day close, one CommissionReport to every partition of the
commission topic: the share due to the partners whose key lands there (streams.worker.ledger
RemoteCommissions). A CommissionPartition holds one partition of that topic: the closes in progress
(who has reported, what is due) and the partners' payout ledgers (what is carried to the next
close; and, with multi-level partners, the master partners' overrides, paid the same way,
handlers.overrides). The report that completes a close pays it. A report sent twice (its ledger partition
re-applied a batch after a crash) is recognised by its close and partition.

Pure of Kafka: the worker runs it on the partition runtime (streams.worker.processor; position in its
state, effects then state), and ``rewards replay --from-kafka`` on the reports of the recorded
log. Its whole state is one record, ``STATE_KEY``, in the compacted changelog
``<app>-commissions-changelog``: a close's progress and the partners' ledgers are written
together, so no crash can leave one without the other. The state is small: the partners of the
partition and the closes not yet complete; a complete close is remembered by its id only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec

from handlers.engine import PartnerLedgers
from handlers.rules import Rules
from handlers.state import PayoutLedger
from handlers.step import Step
from schemas.inputs import DayClosed
from schemas.outputs import OutputEvent
from schemas.timefmt import day_of, parse_ts_us
from streams.worker import wire
from streams.worker.ports import Topics, output_send
from streams.worker.position import OwnPosition
from streams.worker.processor import Turn

STATE_KEY: Final = b"\x00commissions"


class CommissionState(msgspec.Struct):
    last: int = -1  # the last commission-topic offset applied
    closes: dict[str, wire.CloseProgress] = msgspec.field(default_factory=dict)  # not complete yet
    paid: set[str] = msgspec.field(default_factory=set)  # the closes complete
    partners: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)
    overrides: dict[str, PayoutLedger] = msgspec.field(default_factory=dict)  # master partners' override ledgers


_state = msgspec.msgpack.Decoder(CommissionState)
commission_state = _state.decode


class CommissionPartition(OwnPosition):
    state: CommissionState

    def __init__(self, partition: int, partitions: int, rules: Rules, topics: Topics,
                 table: dict[bytes, bytes]) -> None:
        self.partition, self.partitions, self.rules, self.topics = partition, partitions, rules, topics
        raw = table.get(STATE_KEY)
        self.state = CommissionState() if raw is None else _state.decode(raw)
        self.payouts: list[OutputEvent] = []  # since the last turn
        self.dirty = False

    def take(self, record: Any, now_ms: float = 0.0) -> None:
        """One record of the commission topic."""
        if not self.advance(record.offset):
            return  # applied before this restart
        self.dirty = True
        self.payouts += self.receive(wire.commission_reports.decode(record.value))

    def receive(self, report: wire.CommissionReport) -> list[OutputEvent]:
        """Take one report; the payouts when it completes its close."""
        state = self.state
        if report.close_id in state.paid:
            return []  # a report sent twice
        progress = state.closes.setdefault(report.close_id, wire.CloseProgress())
        if report.partition in progress.reported:
            return []  # a report sent twice
        progress.reported.add(report.partition)
        for partner_id, amount in report.due.items():
            progress.due.setdefault(partner_id, []).append(amount)
        for partner_id, amount in report.overrides.items():
            progress.overrides.setdefault(partner_id, []).append(amount)
        if len(progress.reported) < self.partitions:
            return []
        del state.closes[report.close_id]
        state.paid.add(report.close_id)
        close = DayClosed(id=report.close_id, ts=report.close_ts, date=report.date)
        ts_us = parse_ts_us(report.close_ts)
        step = Step(event=close, ts_us=ts_us, date=day_of(ts_us), rules=self.rules)
        due = [(p, Decimal(a)) for p, amounts in sorted(progress.due.items()) for a in amounts]
        overrides = [(p, Decimal(a)) for p, amounts in sorted(progress.overrides.items()) for a in amounts]
        return PartnerLedgers(state.partners, state.overrides).settle(close, step, due, overrides)

    # -- on the partition runtime (streams.worker.processor) -----------------------------------------
    def turn(self, now_ms: float = 0.0) -> Turn:
        """The payouts since the last turn and the state, when it changed; ``report``: the payouts."""
        payouts, self.payouts = self.payouts, []
        writes = [(STATE_KEY, wire.encode(self.state))] if self.dirty else []
        self.dirty = False
        return Turn([output_send(payout, self.topics) for payout in payouts], writes, self.state.last + 1, payouts)

