"""Every way the worker talks to Kafka, in one place: the group consumer its processors read
with, the batch reader, the sender (the project's own transactional producers) and the
changelog reader. Touch it for how records are read or sent (only public aiokafka API); nothing
here knows what the records mean."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from streams import connect
from streams.ops.metrics import Metrics
from streams.worker.partitioning import partition_for, partition_of_value
from streams.settings import Settings
from streams.worker.wire import Send

log = logging.getLogger("rewards.kafka")

FINISH_S: Final = 20.0  # how long a batch under way may take to finish when the worker is told to stop


Batch = dict[TopicPartition, list[Any]]  # aiokafka's ConsumerRecords, by partition


class Fenced(Exception):
    """Another worker holds a partition this one was still writing: this one must stop."""


def group_consumer(settings: Settings, group: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer in ``group`` that commits only when told to. A worker killed outright holds
    its partitions until its session expires (REWARDS_SESSION_TIMEOUT_MS): kept short, so that
    another takes over in seconds."""
    return connect.consumer(settings, *topics, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
                            session_timeout_ms=settings.session_timeout_ms,
                            heartbeat_interval_ms=settings.session_timeout_ms // 3, **options)


def reader(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    """A consumer outside any group: it neither uses nor moves committed offsets."""
    return connect.consumer(settings, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", isolation_level="read_committed", **options)


async def read_to_end(consumer: AIOKafkaConsumer,
                      partitions: list[TopicPartition]) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Each partition's records from the beginning up to its end at the time of the call, in
    batches. With ``read_committed`` the end is the last
    stable offset, and the offsets have holes (transaction markers, aborted records): a partition
    is done when the consumer's position reaches its end, not when a record's offset does."""
    if not partitions:
        return
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while pending:
        for tp, records in (await consumer.getmany(*pending, timeout_ms=1000)).items():
            end = ends[tp]
            yield tp, records if not records or records[-1].offset < end else [r for r in records if r.offset < end]
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)


async def read_changelog(settings: Settings, topic: str, partitions: list[int],
                         watch: Callable[[int, bytes, bytes], None] | None = None) -> dict[int, dict[bytes, bytes]]:
    """Each partition's table, read from its partition of the compacted changelog ``topic`` from
    the beginning to its end at the time of the call (committed records only). ``watch`` sees
    every record, in order."""
    tables: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
    if not partitions:
        return tables
    consumer = reader(settings, max_partition_fetch_bytes=8 * 1024 * 1024)
    await connect.start(consumer)
    try:
        async for tp, records in read_to_end(consumer, [TopicPartition(topic, p) for p in partitions]):
            table = tables[tp.partition]
            for record in records:
                if record.value is None:
                    table.pop(record.key, None)
                else:
                    table[record.key] = record.value
                    if watch is not None:
                        watch(tp.partition, record.key, record.value)
    except KafkaError:
        log.exception("recovering partitions %s from %s", partitions, topic)
        raise
    finally:
        await consumer.stop()
    return tables


async def gather_all(*steps: Awaitable[Any]) -> None:
    """Run ``steps`` side by side to the end, every one (none left with an exception nobody
    reads); then raise the first failure, a fencing first (it says the most)."""
    failures = [outcome for outcome in await asyncio.gather(*steps, return_exceptions=True)
                if isinstance(outcome, BaseException)]
    if failures:
        raise next((f for f in failures if isinstance(f, Fenced)), failures[0])


async def stop_producer(producer: AIOKafkaProducer) -> None:
    """Stop a producer that may have been fenced: its sender then ends with the fencing error,
    which stopping it would raise again; it says nothing new."""
    try:
        await producer.stop()
    except KafkaError as exc:
        log.debug("producer stopped after %r", exc)


class Sender:
    """The worker's producers, the project's own (not Faust's): a transactional one per
    sequencer task and per processor partition, the one way records are sent with them, and
    the one way a turn is committed (``commit_turn``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._partition_counts: dict[str, int] = {}

    async def transactional(self, transactional_id: str) -> AIOKafkaProducer:
        """A started producer with ``transactional_id``: starting it fences every older producer
        of that id (its next send or commit fails) and aborts the transaction it left open."""
        producer = connect.producer(self.settings, transactional_id=transactional_id)
        try:
            await connect.start(producer)
        except Exception as exc:
            if connect.not_allowed(exc, self.settings) is not None:
                raise connect.NotAllowed(self.settings, "Write", f"transactional id {transactional_id}") from None
            raise
        return producer

    async def commit_turn(self, producer: AIOKafkaProducer, sends: list[Send], offsets: dict[TopicPartition, Any],
                          group: str, metrics: Metrics, kind: str, holder: str,
                          changelog: Changelog | None = None) -> None:
        """A turn's commit, for the processors (streams.worker.processor) and the sequencer's
        tasks alike: its ``sends`` and ``group``'s ``offsets`` (``{partition: offset}``, or
        ``(offset, metadata)``), with the ``changelog`` writes, in one Kafka transaction of ``producer``, so that they land
        together or not at all. A producer fenced by a newer holder raises Fenced, naming the
        ``holder`` (e.g. "ledger partition 3"): this worker must stop without writing."""
        try:
            with metrics.transaction_seconds.labels(kind).time():
                await producer.begin_transaction()
                await self.send_all(sends, producer, changelog)
                await producer.send_offsets_to_transaction(offsets, group)
                await producer.commit_transaction()
        except ProducerFenced as exc:
            raise Fenced(f"{holder} was fenced: another worker holds it now (this one was paused or cut off "
                         "past its session); stopping without writing") from exc
        metrics.transactions.labels(kind).inc()

    async def send_all(self, sends: list[Send], producer: AIOKafkaProducer, changelog: Changelog | None = None) -> None:
        """Send with ``producer``, and the ``changelog`` writes (a partition's, not made into a
        ``Send`` each: three or so a fill), then wait until Kafka has acknowledged every one.
        Records for one partition keep their order.

        The records are appended to one record batch per topic partition and handed to the
        producer whole: a record costs an append to a (C-built) batch, not a trip through
        ``producer.send`` with a future of its own, which was a quarter of the worker's time.
        A record without a partition goes where Kafka's default partitioner would put its key
        (murmur2, ``streams.worker.partitioning``); one without a key, by the hash of its value."""
        groups: dict[tuple[str, int], list[Send]] = {}
        for send in sends:
            partition = send.partition
            if partition is None:
                count = self._partition_counts.get(send.topic)
                if count is None:
                    count = self._partition_counts[send.topic] = len(await producer.partitions_for(send.topic))
                partition = (partition_for(send.key, count) if send.key is not None
                             else partition_of_value(send.value or b"", count))
            group = groups.get((send.topic, partition))
            if group is None:
                group = groups[(send.topic, partition)] = []
            group.append(send)
        futures = []
        for (topic, partition), group in groups.items():
            futures += await _batches(producer, topic, partition,
                                      ((send.key, send.value, send.headers or NO_HEADERS) for send in group))
        if changelog is not None and changelog.records:  # last: after any send to the same partition
            futures += await _batches(producer, changelog.topic, changelog.partition,
                                      ((key, value, NO_HEADERS) for key, value in changelog.records))
        await gather_all(*futures)  # every outcome taken (a fenced producer fails them all), the first raised


NO_HEADERS: Final[list[tuple[str, bytes]]] = []


@dataclass
class Changelog:
    """A unit's state writes for a turn: ``records`` (key, value; None a tombstone) to ``partition`` of ``topic``."""

    topic: str
    partition: int
    records: Sequence[tuple[bytes, bytes | None]]


async def _batches(producer: AIOKafkaProducer, topic: str, partition: int,
                   records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> list[Any]:
    """``records`` (key, value, headers) appended to record batches for ``partition`` of ``topic``
    and handed to ``producer``: the futures of their acknowledgements."""
    futures = []
    batch = producer.create_batch()
    for key, value, headers in records:
        # A full batch refuses the record: send it and start the next. An empty batch takes any
        # record (one over Kafka's size limit fails at the broker).
        while batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
