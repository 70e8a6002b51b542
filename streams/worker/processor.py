"""One processor loop and one commit protocol, for the processors that keep their position in
their own state: the ledger (streams.worker.ledger), the identity registry (streams.worker.registry) and the
commission book (streams.worker.commissions).

Each reads one topic with its own consumer group and holds, per partition of it, a processor
over a table recovered from its own compacted changelog (same partition number). A processor
is pure: it takes records and says what to send; this loop does the I/O. Its position is in its
state: ``last``, the last input offset the state has applied (its stamp). The group's committed
offsets are there for lag monitoring only.

A turn, on every batch read (and every REWARDS_BATCH_WITHIN_MS while nothing comes):

1. take the records, each partition's in offset order with none missing: one at or below
   ``last`` is skipped (applied before a restart), one beyond ``last + 1`` is refused, and the
   partition is read again from ``last + 1``;
2. send the effects (outputs, messages to the other processors), wave by wave, each wave
   acknowledged by Kafka before the next;
3. send the state writes to the changelog, each partition's own state (its commit) last, and
   wait for Kafka;
4. commit the group's offsets (for lag);
5. the after-turn work of the processor's kind (read model, metrics).

Invariants, asserted: a stamp only increases; a batch's effects are acknowledged before its
state is written; a partition's commit is its last state write. A crash before 3 takes the
batch again after the restart, with the same effects (same ids: their readers recognise a
second copy); a crash in the middle of 3 leaves writes without their commit, which each
processor knows not to count; a crash after 3 skips what the commit covers. A rebalance waits
for the turn under way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams.worker.kafkaio import Batch, Sender, consume_batches, group_consumer, read_changelog
from streams.ops.metrics import Metrics
from streams.settings import Settings
from streams.worker.wire import Send

Crash = Callable[[BaseException], Awaitable[None]]


class Processor(Protocol):
    """One partition's processor (pure: no I/O)."""

    @property
    def last(self) -> int:
        """The last input offset the state has applied: its stamp (-1: none)."""

    def start_at(self, offset: int) -> None:
        """Nothing applied yet: the first record is at ``offset`` (the log's first)."""

    def take(self, record: Any, now_ms: float) -> bool:
        """Take one record (aiokafka's ConsumerRecord); False when records before it are missing."""

    def effects(self, now_ms: float) -> list[list[Send]]:
        """What the records taken since the last turn send, in waves."""

    def commit(self, now_ms: float) -> list[tuple[bytes, bytes]]:
        """The state writes for the changelog, the commit last ([]: nothing to write)."""

    def lag_offset(self) -> int:
        """The offset committed to the group, for lag."""


P = TypeVar("P", bound=Processor)


class ProcessorLoop(Generic[P], ConsumerRebalanceListener):  # type: ignore[misc]
    """The loop for one kind of processor; subclasses say how to make one and what a turn does
    after its commit."""

    name = "processor"

    def __init__(self, settings: Settings, sender: Sender, metrics: Metrics, crash: Crash, *, topic: str,
                 group: str, changelog: str, **consumer_options: Any) -> None:
        self.settings, self.sender, self.metrics, self.crash = settings, sender, metrics, crash
        self.topic, self.group, self.changelog = topic, group, changelog
        self.consumer_options = consumer_options
        self.log = logging.getLogger(f"rewards.{self.name}")
        self.processors: dict[int, P] = {}
        self.stamps: dict[int, int] = {}  # partition -> the stamp of its last commit
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None  # made in the worker's event loop, by run

    # -- what a kind of processor says ------------------------------------------------------------
    def make(self, partition: int, table: dict[bytes, bytes]) -> P:
        raise NotImplementedError

    async def recovered(self, processor: P) -> None:
        """After a partition's recovery, before its first turn."""

    async def after_turn(self, touched: list[P]) -> None:
        """Step 5 of the turn (``touched``: the processors that took records)."""

    # -- the loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        self.consumer = consumer = group_consumer(self.settings, self.group, **self.consumer_options)
        await consumer.start()
        consumer.subscribe([self.topic], listener=self)
        try:
            await consume_batches(consumer, self.settings, self.turn, self.lock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The states in memory may hold effects whose outputs are not in Kafka. Stop: a
            # restart recovers the state from the changelog (a supervisor restarts the worker).
            self.processors.clear()
            self.log.critical("%s turn failed; stopping so the worker restarts from its changelog", self.name,
                              exc_info=exc)
            await self.crash(exc)
            raise
        finally:
            self.consumer = None
            await consumer.stop()  # leaves the group: another worker takes the partitions at once

    async def turn(self, batch: Batch) -> None:
        consumer = self.consumer
        assert consumer is not None
        now_ms = time.time() * 1000
        # 1. Take the records.
        touched: list[P] = []
        for tp, records in batch.items():
            processor = self.processors.get(tp.partition)
            if processor is None:
                # Revoked since it was fetched (its next holder reads it from its state), or
                # assigned and still being recovered (the recovery seeks it to its place).
                continue
            touched.append(processor)
            before = processor.last
            for record in records:
                if not processor.take(record, now_ms):
                    # A batch fetched before the partition was sought to its place (at an
                    # assignment), or a record the consumer skipped: read again from the place.
                    self.log.info("%s %s needs offset %s but was handed %s: re-reading from it", self.name, tp,
                                  processor.last + 1, record.offset)
                    self.metrics.rewinds.labels(tp.topic, str(tp.partition)).inc()
                    consumer.seek(tp, processor.last + 1)
                    break
            assert processor.last >= before, f"{self.name} {tp}: stamp went back from {before} to {processor.last}"
        held = list(self.processors.items())
        # 2. The effects, wave by wave.
        waves = [processor.effects(now_ms) for _, processor in held]
        for k in range(max((len(w) for w in waves), default=0)):
            await self.sender.send_all([send for w in waves if k < len(w) for send in w[k]])
        effects_acknowledged = True
        # 3. The state; each partition's commit last.
        changelog: list[Send] = []
        for partition, processor in held:
            writes = processor.commit(now_ms)
            if not writes:
                continue
            assert effects_acknowledged
            assert processor.last >= self.stamps.get(partition, -1), f"{self.name} {partition}: stamp went back"
            self.stamps[partition] = processor.last
            changelog += [Send(self.changelog, key, value, partition) for key, value in writes]
        await self.sender.send_all(changelog)
        # 4. The group's offsets, for lag.
        positions = {TopicPartition(self.topic, p): processor.lag_offset() for p, processor in held
                     if processor.last >= 0}
        try:
            if positions:
                await consumer.commit(positions)
        except KafkaError as exc:  # a rebalance under way, mostly: the next turn commits again
            self.log.info("commit of the %s's offsets failed (%r); its positions are in its state", self.name, exc)
        # 5.
        await self.after_turn(touched)

    # -- partitions coming and going -----------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:  # the turn under way reaches Kafka whole first
            for tp in revoked:
                self.processors.pop(tp.partition, None)
                self.stamps.pop(tp.partition, None)
            self.revoked(revoked)

    def revoked(self, revoked: list[TopicPartition]) -> None:
        """After partitions were taken away (under the turn's lock)."""

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.assigned(assigned)
        except Exception as exc:
            self.log.critical("%s partitions %s could not be recovered; stopping", self.name, assigned, exc_info=exc)
            await self.crash(exc)
            raise

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """Recover the new partitions: each one's table read back from the changelog, its
        processor made over it, and the consumer sought to its place. One that has applied
        nothing starts at the log's first offset, so that a batch fetched before the seek
        (getmany may return one while this awaits) is refused by its offset check, never taken
        for the beginning. Handed to the loop only after its seek."""
        consumer = self.consumer
        assert consumer is not None
        new = sorted(tp.partition for tp in assigned if tp.partition not in self.processors)
        tables = await self.read_tables(new)
        tps = [TopicPartition(self.topic, p) for p in new]
        starts = await consumer.beginning_offsets(tps) if tps else {}
        for tp in tps:
            processor = self.make(tp.partition, tables[tp.partition])
            if processor.last < 0:
                processor.start_at(starts[tp])
            consumer.seek(tp, processor.last + 1)
            self.stamps[tp.partition] = processor.last
            await self.recovered(processor)
            self.processors[tp.partition] = processor
        if new:
            self.log.info("%s partitions %s recovered (%s state records)", self.name, new,
                          sum(len(table) for table in tables.values()))

    async def read_tables(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        return await read_changelog(self.settings, self.changelog, partitions)

    # -- for /health, /metrics and the status page ---------------------------------------------------
    def offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, the offset committed for lag, end offset) of each partition held."""
        consumer = self.consumer
        if consumer is None:
            return []
        rows: list[tuple[str, int, int | None, int | None]] = []
        for tp in sorted(consumer.assignment()):
            processor = self.processors.get(tp.partition)
            rows.append((tp.topic, tp.partition, None if processor is None or processor.last < 0
                         else processor.lag_offset(), consumer.highwater(tp)))
        return rows

    def assignment(self) -> list[int]:
        consumer = self.consumer
        return [] if consumer is None else sorted(tp.partition for tp in consumer.assignment())
