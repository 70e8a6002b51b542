"""``rewards replay --from-kafka``: rebuild every client's state from the recorded order.

Reads the sequenced log partition by partition, each from its earliest offset up to its end
when its turn comes (streams.worker.kafkaio.read_to_end), with a reader of its own (no consumer
group: it neither uses nor moves the worker's committed offsets), and applies it in process with
the worker's own ledger (state in a fresh namespace: plain dicts here, and Redis keys under the
namespace when ``redis_url`` is given). Welcome claims take the verdicts already recorded in the
log; commission reports are summed in process. The outputs are written partition by partition,
then the commission payouts: the same log always gives the same bytes, and the same outputs (by
id) as the worker sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from handlers.rules import Rules
from schemas.codec import encode_outputs
from schemas.outputs import OutputEvent
from streams import connect
from streams.worker import wire
from streams.worker.commissions import CommissionPartition
from streams.worker.kafkaio import read_to_end, reader
from streams.worker.ledger import PartitionLedger, Record, Topics
from streams.ops.readmodel import ReadModel
from streams.settings import Settings


@dataclass
class LogReplaySummary:
    records: int = 0
    outputs: int = 0
    seconds: float = 0.0
    by_partition: dict[int, int] = field(default_factory=dict)


async def replay_log(settings: Settings, rules: Rules, output: Path, namespace: str,
                     redis_url: str | None = None) -> LogReplaySummary:
    started = time.perf_counter()
    summary = LogReplaySummary()
    n = settings.partitions
    # Nothing is sent during a replay: these names only sort the outbox.
    topics = Topics(ledger="replay:ledger", deadletter="replay:deadletter", identity="replay:identity",
                    commissions="replay:commissions", sequenced=settings.sequenced_topic)
    consumer = reader(settings)
    await connect.start(consumer)
    books = [CommissionPartition(p, n, rules, topics, {}) for p in range(n)]
    read_model = ReadModel(redis_url, f"rewards:{namespace}:", rules) if redis_url else None
    try:
        partitions = [TopicPartition(settings.sequenced_topic, p) for p in range(n)]
        starts = await consumer.beginning_offsets(partitions)
        with open(output, "wb") as sink:
            for tp in partitions:  # one at a time, in order
                ledger = PartitionLedger(tp.partition, n, rules, topics, {}, replay=True)
                ledger.start_at(starts[tp])
                outputs, reports, records = await _replay_partition(consumer, tp, ledger)
                summary.by_partition[tp.partition] = records
                summary.records += records
                _write(sink, outputs)
                summary.outputs += len(outputs)
                for report, target in reports:
                    payouts = books[target].receive(report)
                    _write(sink, payouts)
                    summary.outputs += len(payouts)
                if read_model is not None:
                    await read_model.publish([(ledger.store.cache[c], v) for c, v in ledger.store.flush()[0].items()])
    finally:
        await consumer.stop()
    summary.seconds = time.perf_counter() - started
    return summary


Reports = list[tuple[wire.CommissionReport, int]]  # commission reports, with their aggregator partitions


async def _replay_partition(consumer: AIOKafkaConsumer, tp: TopicPartition,
                            ledger: PartitionLedger) -> tuple[list[OutputEvent], Reports, int]:
    """The partition's outputs, its commission reports and the number of records it held."""
    outputs: list[OutputEvent] = []
    reports: Reports = []
    records = 0
    async for _, messages in read_to_end(consumer, [tp]):
        records += len(messages)
        for message in messages:
            ledger.handle(Record(message.offset, message.key, message.value, dict(message.headers or ())))
        outbox = ledger.outbox.take()
        outputs += outbox.outputs
        reports += [(wire.commission_reports.decode(s.value), s.partition or 0) for s in outbox.sends
                    if s.topic == ledger.topics.commissions and s.value is not None]
    return outputs, reports, records


def _write(sink: Any, outputs: list[OutputEvent]) -> None:
    if outputs:
        sink.write(encode_outputs(outputs))
