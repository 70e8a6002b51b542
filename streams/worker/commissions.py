"""The commission book: a partner's commission for a day is paid once each of the N ledger
partitions has reported its share of the day close.

A ledger partition sends, on a day close, one CommissionReport to every partition of the
commission topic: the share due to the partners whose key lands there (streams.worker.ledger
RemoteCommissions). A CommissionPartition holds one partition of that topic: the closes in progress
(who has reported, what is due) and the partners' payout ledgers (what is carried to the next
close; and, with multi-level partners, the master partners' overrides, paid the same way,
handlers.overrides). The report that completes a close pays it. A report sent twice (its ledger partition
re-applied a batch after a crash) is recognised by its close and partition.

Pure of Kafka: the worker runs it on the processor loop (streams.worker.processor; position in its
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
from streams.worker.ledger import Topics, output_send
from streams.worker.position import OwnPosition
from streams.worker.wire import Send

STATE_KEY: Final = b"\x00commissions"

_payout_ledger = msgspec.msgpack.Decoder(PayoutLedger)


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

    @classmethod
    def upgraded(cls, partition: int, partitions: int, rules: Rules, topics: Topics,
                 partners: dict[bytes, bytes], closes: dict[bytes, bytes]) -> CommissionPartition:
        """A book from the two Faust tables of earlier versions (``partners``: partner id ->
        PayoutLedger; ``closes``: close id SEP partition -> CloseProgress). It has applied
        nothing: reading the topic from its start again pays nothing twice, as every close
        the tables knew is recognised."""
        book = cls(partition, partitions, rules, topics, {})
        book.state.partners = {key.decode(): _payout_ledger.decode(value) for key, value in partners.items()}
        for key, value in closes.items():
            progress = wire.close_progress.decode(value)
            close_id = key.rsplit(b"\x1f", 1)[0].decode()
            if progress.done:
                book.state.paid.add(close_id)
            else:
                book.state.closes[close_id] = progress
        book.dirty = bool(partners or closes)
        return book

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

    # -- on the processor loop -----------------------------------------------------------------
    def effects(self, now_ms: float = 0.0) -> list[Send]:
        return [output_send(payout, self.topics) for payout in self.payouts]

    def commit(self, now_ms: float = 0.0) -> list[tuple[bytes, bytes]]:
        if not self.dirty:
            return []
        self.dirty = False
        return [(STATE_KEY, wire.encode(self.state))]

    def lag_offset(self) -> int:
        return self.state.last + 1

    def take_payouts(self) -> list[OutputEvent]:
        """The payouts since the last call (sent by the turn's effects)."""
        payouts, self.payouts = self.payouts, []
        return payouts

