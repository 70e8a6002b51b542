"""The commission book (streams.worker.commissions) fed by hand: a close paid once every
partition has reported, reports sent twice, and a restart from its one state record."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson

from handlers.rules import Rules
from streams.worker import wire
from streams.worker.commissions import STATE_KEY, CommissionPartition
from streams.worker.ports import Topics

TOPICS = Topics(ledger="ledger", deadletter="dead", identity="identity", commissions="commissions", sequenced="seq")
CLOSE = "settlement.day_closed:2026-11-23"


@dataclass
class Message:
    offset: int
    value: bytes


def report(partition: int, **due: str) -> bytes:
    return wire.encode(wire.CommissionReport(CLOSE, "2026-11-24T00:00:00Z", "2026-11-23", partition, due))


def book(table: dict[bytes, bytes] | None = None) -> CommissionPartition:
    fresh = CommissionPartition(0, 3, Rules.default(), TOPICS, {} if table is None else table)
    if fresh.last < 0:
        fresh.start_at(0)
    return fresh


def paid(book: CommissionPartition) -> dict[str, str]:
    sends = book.turn().sends  # the turn empties the book of them
    payouts = {}
    for send in sends:
        doc = orjson.loads(send.value)
        assert (send.topic, send.key) == ("ledger", doc["partner_id"].encode())
        payouts[doc["partner_id"]] = doc["amount"]
    return payouts


def test_a_close_is_paid_once_every_partition_has_reported_and_a_report_sent_twice_is_ignored() -> None:
    b = book()
    b.take(Message(0, report(0, p1="1.005", p2="2")))
    b.take(Message(1, report(1, p1="2")))
    b.take(Message(2, report(1, p1="2")))  # partition 1 again: its ledger re-applied a batch
    assert paid(b) == {}
    b.take(Message(3, report(2)))
    assert paid(b) == {"p1": "3", "p2": "2"}  # rounded down to cents; 0.005 carried
    assert b.state.partners["p1"].carried == Decimal("0.005")
    b.take(Message(4, report(0, p1="9")))  # after the close: a late copy
    assert paid(b) == {}


def test_a_restart_reads_the_one_state_record_and_skips_what_it_covers() -> None:
    b = book()
    for offset, partition in enumerate((0, 1)):
        b.take(Message(offset, report(partition, p1="1")))
    writes = b.turn().writes
    assert [key for key, _ in writes] == [STATE_KEY] and b.turn().writes == []  # nothing new: nothing written
    again = book(dict(writes))
    assert again.last == 1
    again.take(Message(1, report(1, p1="1")))  # at or below its position: skipped
    again.take(Message(3, report(2, p1="1")))  # offset 2: a transaction marker
    assert paid(again) == {"p1": "3"}
