"""One processor loop and one commit protocol, for the processors that keep their position in
their own state: the ledger (streams.worker.ledger), the identity registry
(streams.worker.registry) and the commission book (streams.worker.commissions).

Each reads one topic with its own consumer group and holds, per partition of it, a processor
over a table recovered from its own compacted changelog (same partition number). A processor
is pure: it takes records and says what to send; this loop does the I/O. Its position is in its
state: ``last``, the last input offset the state has applied (its stamp).

Each partition held has a transactional producer of its own, ``<app>-<kind>-<partition>``
(Kafka Streams' exactly-once design, a producer per task). Starting it when the loop recovers
a partition assigned to it fences every older holder of the partition, a worker paused past its session (a
"zombie") included: the zombie's next send or commit fails, and it stops without writing. Its
open transaction is aborted before the new holder reads the state back, so nothing it wrote
half-way is ever read.

A turn, on every batch read (and every REWARDS_BATCH_WITHIN_MS while nothing comes):

1. take the records, each partition's in offset order: one at or below ``last`` is skipped
   (applied before a restart); a batch read across a rebalance is dropped and its partitions
   read again from ``last + 1`` (it may have been fetched before they were sought there);
2. per partition, in one Kafka transaction: the effects (outputs, messages to the other
   processors), the state writes to the changelog with the partition's own state (its commit)
   last, and the group's offsets (for lag; a turn that would only move those commits them at
   most every LAG_ONLY_EVERY_S); the partitions' transactions run side by side
   (``Sender.commit_turn``, with which the sequencer's tasks commit too);
3. the after-turn work of the processor's kind (read model, metrics).

Every reader of the internal topics and changelogs reads ``read_committed``: a turn's outputs
and its state appear together or not at all. A crash before a commit aborts the transaction
(on the next start of its id, at the latest): the batch is taken again from the state before
it. Invariants, asserted: a stamp only increases; a partition's commit is its last state write.
A rebalance waits for the turn under way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from streams import connect
from streams.worker.kafkaio import (FINISH_S, Batch, Fenced, Sender, gather_all, group_consumer, read_changelog,
                                    stop_producer)
from streams.ops.metrics import Metrics
from streams.settings import Settings
from streams.worker.wire import Send

Crash = Callable[[BaseException], Awaitable[None]]

# A turn whose only change is the group's offset (moved past transaction markers, for lag)
# commits it at most this often per partition. Such a transaction, right after the last
# commit, is answered CONCURRENT_TRANSACTIONS while the broker writes that commit's markers,
# and aiokafka retries it after its 100 ms backoff: live, half of the processors' transactions
# were of this kind, each holding its turn ~100 ms. The next turn with records commits the
# offset anyway; an idle partition's lag reaches 0 within this.
LAG_ONLY_EVERY_S: Final = 1.0


class NotRecovered(Exception):
    """Partitions assigned to the loop could not be recovered."""


class StampWentBack(Exception):
    """A changelog holds a commit older than one before it."""


class Processor(Protocol):
    """One partition's processor (pure: no I/O)."""

    @property
    def last(self) -> int:
        """The last input offset the state has applied: its stamp (-1: none)."""

    def start_at(self, offset: int) -> None:
        """Nothing applied yet: the first record is at ``offset`` (the log's first)."""

    def take(self, record: Any, now_ms: float) -> None:
        """Take one record (aiokafka's ConsumerRecord): one at or below ``last`` is skipped; the
        offsets after it may have holes (transaction markers, aborted records), and a batch
        read across a rebalance is the loop's to drop, so any record above it is the next."""

    def effects(self, now_ms: float) -> list[Send]:
        """What the records taken since the last turn send (a partition's in order)."""

    def commit(self, now_ms: float) -> Sequence[tuple[bytes, bytes | None]]:
        """The state writes for the changelog, the commit last ([]: nothing to write)."""

    def lag_offset(self) -> int:
        """The offset committed to the group, for lag."""


P = TypeVar("P", bound=Processor)


class ProcessorLoop(Generic[P], ConsumerRebalanceListener):  # type: ignore[misc]
    """The loop for one kind of processor; subclasses say how to make one and what a turn does
    after its commit."""

    name = "processor"
    kind = "processor"  # in the transactional ids: <app>-<kind>-<partition>

    def __init__(self, settings: Settings, sender: Sender, metrics: Metrics, crash: Crash, *, topic: str,
                 group: str, changelog: str, **consumer_options: Any) -> None:
        self.settings, self.sender, self.metrics, self.crash = settings, sender, metrics, crash
        self.topic, self.group, self.changelog = topic, group, changelog
        self.consumer_options = consumer_options
        self.log = logging.getLogger(f"rewards.{self.name}")
        self.processors: dict[int, P] = {}
        self.stamps: dict[int, int] = {}  # partition -> the stamp of its last commit
        self.producers: dict[int, AIOKafkaProducer] = {}  # partition -> its transactional producer
        self.committed: dict[int, int] = {}  # partition -> the group offset last committed
        self.committed_at: dict[int, float] = {}  # partition -> when its last transaction committed (monotonic)
        self.generation = 0  # one more at every revocation and assignment: a batch read across one is stale
        self.pending: list[int] = []  # partitions assigned, paused until the loop has recovered them
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None  # made in the worker's event loop, by run
        self.ready = False  # in its group with its first assignment recovered (readiness), until it stops

    # -- what a kind of processor says ------------------------------------------------------------
    def make(self, partition: int, table: dict[bytes, bytes]) -> P:
        raise NotImplementedError

    async def recovered(self, processor: P) -> None:
        """After a partition's recovery, before its first turn."""

    async def after_turn(self, touched: list[P]) -> None:
        """Step 3 of the turn (``touched``: the processors that took records)."""

    # -- the loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        self.consumer = consumer = group_consumer(self.settings, self.group, **self.consumer_options)
        await connect.start(consumer)
        consumer.subscribe([self.topic], listener=self)
        try:
            while True:
                if self.pending:
                    try:
                        await self.recover()
                    except Exception as exc:
                        raise NotRecovered(f"{self.name} partitions {self.pending} could not be recovered") from exc
                    continue
                generation = self.generation
                batch = await consumer.getmany(timeout_ms=self.settings.batch_within_ms,
                                               max_records=self.settings.batch_max)
                async with self.lock:
                    # A turn is finished even when the worker is told to stop in the middle of
                    # it (within FINISH_S): one cut short is aborted, and done again by the next holder.
                    task = asyncio.ensure_future(self.turn(batch, generation))
                    try:
                        await asyncio.shield(task)
                    except asyncio.CancelledError:
                        await asyncio.wait([task], timeout=FINISH_S)
                        raise
        except asyncio.CancelledError:
            raise
        except Fenced as exc:  # not a failure: the worker stops (streams.worker.app)
            self.processors.clear()
            await self.crash(exc)
        except Exception as exc:
            # The states in memory may hold effects whose outputs are not in Kafka. Stop: a
            # restart recovers the state from the changelog (a supervisor restarts the worker).
            self.processors.clear()
            refused = connect.not_allowed(exc, self.settings)
            if refused is not None:  # a missing ACL: no restart helps (streams.worker.app)
                await self.crash(refused)
                return
            self.log.critical("%s; stopping so the worker restarts from its changelog",
                              exc if isinstance(exc, NotRecovered) else f"{self.name} turn failed", exc_info=exc)
            await self.crash(exc)
            raise
        finally:
            self.ready = False
            self.consumer = None  # the rebalance callbacks from here on do nothing
            producers = list(self.producers.values())
            self.producers.clear()
            for producer in producers:
                await stop_producer(producer)
            await consumer.stop()  # leaves the group: another worker takes the partitions at once

    async def turn(self, batch: Batch, generation: int) -> None:
        """One turn on ``batch``, read at ``generation``. The check that no rebalance came in
        between is here, where the records are taken with nothing awaited in between: a task
        starts an event-loop step after it is made, and an assignment finishing in that step
        would hand over a partition sought back to its place, while the batch holds its records
        from past those an earlier turn dropped for want of a processor (the rebalance test
        caught that: a partition skipping seven records)."""
        consumer = self.consumer
        assert consumer is not None
        if generation != self.generation:
            self._reread(batch)
            return
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
                processor.take(record, now_ms)
            assert processor.last >= before, f"{self.name} {tp}: stamp went back from {before} to {processor.last}"
        # 2. Per partition, one transaction.
        await gather_all(*(self._commit(partition, processor, now_ms)
                           for partition, processor in list(self.processors.items())))
        # 3.
        await self.after_turn(touched)

    def _reread(self, batch: Batch) -> None:
        """Drop a batch read across a rebalance (it may start anywhere: before the new
        partitions were sought to their places); its partitions are read again from there."""
        consumer = self.consumer
        assert consumer is not None
        assignment = consumer.assignment()
        for tp in batch:
            processor = self.processors.get(tp.partition)
            if processor is not None and tp in assignment:
                self.metrics.rewinds.labels(tp.topic, str(tp.partition)).inc()
                consumer.seek(tp, processor.last + 1)

    async def _commit(self, partition: int, processor: P, now_ms: float) -> None:
        sends = processor.effects(now_ms)
        writes = processor.commit(now_ms)
        tp = TopicPartition(self.topic, partition)
        offset = processor.lag_offset()
        consumer = self.consumer
        if offset == processor.last + 1 and consumer is not None and tp in consumer.assignment():
            offset = max(offset, await consumer.position(tp))  # past the transaction markers read
        if not sends and not writes and (offset == self.committed.get(partition) or
                                         time.monotonic() - self.committed_at.get(partition, 0.0) < LAG_ONLY_EVERY_S):
            return
        if writes:
            assert processor.last >= self.stamps.get(partition, -1), f"{self.name} {partition}: stamp went back"
            self.stamps[partition] = processor.last
        await self.sender.commit_turn(
            self.producers[partition], sends + [Send(self.changelog, key, value, partition) for key, value in writes],
            {tp: offset}, self.group, self.metrics, self.kind, f"{self.name} partition {partition}")
        self.committed[partition] = offset
        self.committed_at[partition] = time.monotonic()

    # -- partitions coming and going -----------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:  # the turn under way (or the producer being started) reaches Kafka whole first
            for tp in revoked:
                self.processors.pop(tp.partition, None)
                self.stamps.pop(tp.partition, None)
                self.committed.pop(tp.partition, None)
                self.committed_at.pop(tp.partition, None)
                producer = self.producers.pop(tp.partition, None)
                if producer is not None:
                    await stop_producer(producer)
            self.pending = []
            self.generation += 1

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Only noted here; the loop recovers the partitions (``recover``). aiokafka sends no
        heartbeat while this callback runs (between the join and the restart of its heartbeat
        task): a recovery in here that outlasted the session got the worker put out of the
        group, its partitions given to another, and then fenced by it (the rebalance test
        caught that, workers starting side by side on a busy machine). The new partitions are
        paused until they are recovered and sought to their places."""
        consumer = self.consumer
        if consumer is None:  # stopping
            return
        new = sorted(tp.partition for tp in assigned if tp.partition not in self.processors)
        consumer.pause(*(tp for tp in assigned if tp.partition in new))
        self.pending = new
        self.generation += 1
        if not new:
            self.ready = True

    async def recover(self) -> None:
        """Recover the partitions assigned last: each one's producer started (which fences the
        partition's older holders and aborts what they left open), its table read back from
        the changelog and its processor made over it (one that has applied nothing starts at the
        log's first offset). Then, with nothing awaited in between, each is sought to its place,
        handed to the loop and resumed, and the generation moves on. A rebalance meanwhile
        (the generation moved) drops what was recovered: the loop recovers the new assignment."""
        consumer = self.consumer
        assert consumer is not None
        generation, new = self.generation, self.pending
        for p in new:
            if p in self.producers:
                continue
            # Under the lock: a revocation waits for it, so no producer is started for a
            # partition this worker no longer holds (it would fence the one that does).
            async with self.lock:
                if generation != self.generation:
                    return
                self.producers[p] = await self.sender.transactional(f"{self.settings.app_id}-{self.kind}-{p}")
        tables = await self.read_tables(new)
        tps = [TopicPartition(self.topic, p) for p in new]
        starts = await consumer.beginning_offsets(tps) if tps else {}
        made: list[tuple[TopicPartition, P]] = []
        for tp in tps:
            processor = self.make(tp.partition, tables[tp.partition])
            if processor.last < 0:
                processor.start_at(starts[tp])
            await self.recovered(processor)
            made.append((tp, processor))
        if generation != self.generation or self.consumer is None:  # a rebalance meanwhile, or stopping
            return
        for tp, processor in made:  # no await from here on
            consumer.seek(tp, processor.last + 1)
            self.stamps[tp.partition] = processor.last
            self.processors[tp.partition] = processor
        consumer.resume(*tps)
        self.pending = []
        self.generation += 1
        self.ready = True
        self.log.info("%s partitions %s recovered (%s state records)", self.name, new,
                      sum(len(table) for table in tables.values()))

    async def read_tables(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        """The partitions' tables, with every commit in them checked: stamps only increase. A
        decrease means a writer that was not fenced wrote after a newer one; recovering from
        it would rewind the partition silently, so it is refused."""
        highest: dict[int, int] = {}

        def watch(partition: int, key: bytes, value: bytes) -> None:
            stamp = self.stamp(partition, key, value)
            if stamp is None:
                return
            if stamp < highest.get(partition, -1):
                raise StampWentBack(f"{self.changelog} partition {partition}: a commit stamped {stamp} follows one "
                                    f"stamped {highest[partition]}, written by a writer that was not fenced; "
                                    "refusing to recover from it")
            highest[partition] = stamp

        return await read_changelog(self.settings, self.changelog, partitions, watch)

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        """The stamp of a partition's commit record (None: not a commit)."""
        return None

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
                         else self.committed.get(tp.partition, processor.lag_offset()), consumer.highwater(tp)))
        return rows

    def assignment(self) -> list[int]:
        consumer = self.consumer
        return [] if consumer is None else sorted(tp.partition for tp in consumer.assignment())
