"""The ledger agent: the sequenced log applied by streams.ledger, with its own Kafka consumer.

It does not go through a Faust stream. Faust's consumer treats a jump in a partition's offsets
as a "gap" it acknowledges, and its streams acknowledge records they skip across a rebalance;
both were seen here to commit sequenced records that were never applied (the worker then
diverged from the log). This loop reads with aiokafka directly, in batches:

- its own consumer group, ``<app>-ledger``, on ``<app>.sequenced``;
- its own state: one dict per partition held, recovered on assignment from the compacted
  ``<app>-state-changelog`` (same partition number), and written back to it by each batch;
- its own position: each partition is read from the offset after the last one its state has
  applied (the shared state's stamp), whatever the group committed. The commits after each
  batch are there for lag monitoring only.

A batch: read up to REWARDS_BATCH_MAX records; apply them; send the outputs and wait for Kafka;
send the state writes (each partition's to its changelog partition, the shared state last) and
wait for Kafka; commit; update Redis. A rebalance waits for the batch under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams import wire
from streams.ledger import PartitionLedger, Record, Send
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger("rewards.ledger")


def group_consumer(settings: Settings, group: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer in ``group`` that commits only when told to. A worker killed outright holds
    its partitions until its session expires: kept short, so that another takes over in seconds."""
    return AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            session_timeout_ms=10_000, heartbeat_interval_ms=3_000, **options)


async def consume_batches(consumer: AIOKafkaConsumer, settings: Settings,
                          apply: Callable[[dict[TopicPartition, list[Any]]], Awaitable[None]],
                          lock: asyncio.Lock | None = None) -> None:
    """Hand every batch read (REWARDS_BATCH_MAX records, REWARDS_BATCH_WITHIN_MS) to ``apply``,
    one at a time, under ``lock``; an empty one too, every REWARDS_BATCH_WITHIN_MS while there is
    nothing to read (for work that depends on time). A batch is finished even when the worker is
    told to stop in the middle of it (within REWARDS_STALL_S): one cut short would leave part of
    its effects."""
    while True:
        batch = await consumer.getmany(timeout_ms=settings.batch_within_ms, max_records=settings.batch_max)
        async with lock or contextlib.nullcontext():
            task = asyncio.ensure_future(apply(batch))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await asyncio.wait([task], timeout=settings.stall_s)
                raise


async def read_changelog(settings: Settings, topic: str, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
    """Each partition's table, read from its partition of the compacted changelog ``topic`` from
    the beginning to its end at the time of the call."""
    tables: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
    if not partitions:
        return tables
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                              max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        pending = {tp for tp in tps if await reader.position(tp) < ends[tp]}  # not empty
        while pending:
            for tp, records in (await reader.getmany(*pending, timeout_ms=1000)).items():
                table = tables[tp.partition]
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    if record.value is None:
                        table.pop(record.key, None)
                    else:
                        table[record.key] = record.value
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
    except KafkaError:
        log.exception("recovering partitions %s from %s", partitions, topic)
        raise
    finally:
        await reader.stop()
    return tables


class Positioned(Protocol):
    """A processor that keeps its own position: the last offset of its input it has applied."""

    @property
    def last(self) -> int: ...

    def start_at(self, offset: int) -> None: ...


P = TypeVar("P", bound=Positioned)


async def recover(settings: Settings, consumer: AIOKafkaConsumer, changelog: str, topic: str, partitions: list[int],
                  make: Callable[[int, dict[bytes, bytes]], P]) -> tuple[list[tuple[TopicPartition, P]], int]:
    """The processors of newly assigned ``partitions`` of ``topic``, each made (``make``) over its
    table read back from ``changelog``, and the number of records read. One that has applied
    nothing starts at the log's first offset, so that a batch fetched before the seek (getmany
    may return one while this awaits) is refused by its offset check, never taken for the
    beginning. The consumer is sought to each one's place before they are handed back: the
    caller hands them to its loop."""
    tables = await read_changelog(settings, changelog, partitions)
    tps = [TopicPartition(topic, p) for p in partitions]
    starts = await consumer.beginning_offsets(tps) if tps else {}
    made = []
    for tp in tps:
        processor = make(tp.partition, tables[tp.partition])
        if processor.last < 0:
            processor.start_at(starts[tp])
        consumer.seek(tp, processor.last + 1)
        made.append((tp, processor))
    return made, sum(len(table) for table in tables.values())


class LedgerLoop(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.ledgers: dict[int, PartitionLedger] = {}
        self.reported: dict[int, int] = {}  # partition -> offset of the last Progress mark sent on
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer = None  # made in the worker's event loop, by run
        self.started = False

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        self.consumer = consumer = group_consumer(self.settings, self.settings.ledger_group,
                                                  max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        self.started = True
        consumer.subscribe([self.settings.sequenced_topic], listener=self)
        try:
            await consume_batches(consumer, self.settings, self._batch, self.lock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The states in memory may now hold effects whose outputs are not in Kafka. Stop:
            # a restart recovers the state from the changelog (a supervisor restarts it).
            self.ledgers.clear()
            log.critical("ledger batch failed; stopping so the worker restarts from its changelog", exc_info=exc)
            await self.worker.app.crash(exc)
            raise
        finally:
            self.started = False
            await consumer.stop()  # leaves the group: another worker takes the partitions at once

    async def _batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        if not batch:
            await self.worker.send_all(self._progress())
            return
        worker, consumer = self.worker, self.consumer
        touched: list[tuple[TopicPartition, PartitionLedger]] = []
        types: Counter[str] = Counter()
        event_ts: list[int] = []
        appended: list[float] = []
        for tp, messages in batch.items():
            ledger = self.ledgers.get(tp.partition)
            if ledger is None:
                # Revoked since it was fetched (its next holder reads it from its state), or
                # assigned and still being recovered: the end of the recovery seeks it to the
                # first offset its state has not applied, so these records come again.
                continue
            touched.append((tp, ledger))
            for message in messages:
                if not ledger.handle(Record(tp.partition, message.offset, message.key, message.value,
                                            dict(message.headers or ()))):
                    # A batch fetched before the partition was sought to its ledger's place (at
                    # an assignment), or a record the consumer skipped: read again from the place.
                    log.info("the ledger of %s needs offset %s but was handed %s: re-reading from it",
                             tp, ledger.last + 1, message.offset)
                    worker.metrics.rewinds.labels(tp.topic, str(tp.partition)).inc()
                    consumer.seek(tp, ledger.last + 1)
                    break
                appended.append(message.timestamp / 1000)
        sends: list[Send] = []
        outputs = []
        for _, ledger in touched:
            outbox = ledger.take_outbox()
            sends += outbox.sends
            outputs += outbox.outputs
            types.update(outbox.applied)
            event_ts += outbox.event_ts
            worker.skipped += outbox.skipped
            worker.metrics.redeliveries.inc(outbox.skipped)
            worker.metrics.parked_total.inc(outbox.parked)
            worker.metrics.parked_expired.inc(outbox.expired)
        await worker.send_all(sends)
        views = []
        changelog: list[Send] = []
        for tp, ledger in touched:
            changed, writes = ledger.flush_state()
            changelog += [Send(self.settings.state_changelog, key, value, tp.partition) for key, value in writes]
            views += [(ledger.cache[c], version) for c, version in changed.items()]
            if len(ledger.cache) > 100_000:
                ledger.forget_cache()
        await worker.send_all(changelog + self._progress())
        positions = {tp: ledger.last + 1 for tp, ledger in touched if ledger.last >= 0}
        try:
            if positions:
                await consumer.commit(positions)
        except KafkaError as exc:  # a rebalance under way, mostly: the next batch commits again
            log.info("commit of the ledger's offsets failed (%r); its positions are in its state", exc)
        worker.metrics.parked.set(sum(ledger.shared.parked_events for ledger in self.ledgers.values()))
        worker.applied += len(appended)
        worker.metrics.observe_outputs(outputs)
        worker.metrics.observe_applied(types, event_ts, appended)
        if await worker.read_model.publish(views):
            for ledger in self.ledgers.values():
                ledger.views_published()

    # -- the identity registry's view of this worker's partitions ------------------------------
    def _progress(self) -> list[Send]:
        """The last Progress mark each partition has applied, when new, to every identity registry
        partition (streams.registry). Sent after the batch's identity requests have reached
        Kafka, so it follows them."""
        sends = []
        for partition, ledger in self.ledgers.items():
            mark = ledger.progress
            if mark is None or self.reported.get(partition) == mark.offset:
                continue
            self.reported[partition] = mark.offset
            report = wire.encode(mark)
            sends += [Send(self.settings.identity_topic, None, report, registry, [(wire.H_KIND, wire.KIND_PROGRESS)])
                      for registry in range(self.settings.partitions)]
        return sends

    # -- partitions coming and going -----------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:  # the batch under way reaches Kafka whole first
            for tp in revoked:
                self.ledgers.pop(tp.partition, None)
                self.reported.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._assigned(assigned)
        except Exception as exc:
            log.critical("ledger partitions %s could not be recovered; stopping", assigned, exc_info=exc)
            await self.worker.app.crash(exc)
            raise

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        new = sorted(tp.partition for tp in assigned if tp.partition not in self.ledgers)
        settings, worker = self.settings, self.worker
        ledgers, recovered = await recover(
            settings, self.consumer, settings.state_changelog, settings.sequenced_topic, new,
            lambda p, table: PartitionLedger(p, settings.partitions, worker.rules, worker.topics, table, log_writes=True))
        for tp, ledger in ledgers:
            self.ledgers[tp.partition] = ledger
            # views of the last batches before a crash may not have reached Redis: again (guarded by version)
            await self.worker.read_model.publish(ledger.unpublished())
        self.worker.metrics.rebalanced(len(assigned))
        if new:
            log.info("ledger partitions %s recovered (%s state records)", new, recovered)

    # -- for /health, /metrics and the status page ---------------------------------------------------
    def assignment(self) -> list[int]:
        if not self.started:
            return []
        return sorted(tp.partition for tp in self.consumer.assignment())

    def offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, next offset to apply, end offset) of each partition held."""
        if not self.started:
            return []
        rows: list[tuple[str, int, int | None, int | None]] = []
        for tp in sorted(self.consumer.assignment()):
            ledger = self.ledgers.get(tp.partition)
            rows.append((tp.topic, tp.partition, None if ledger is None or ledger.last < 0 else ledger.last + 1,
                         self.consumer.highwater(tp)))
        return rows
