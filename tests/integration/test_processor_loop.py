"""The partition runtime (streams.worker.runtime) with a processor job (streams.worker.processor) across
an assignment, on a real broker: a batch read before a partition was handed over is never taken,
whenever the hand-over finishes.

The rebalance fault test once lost seven records of one ledger partition this way: a turn
dropped the partition's first records (no processor yet), the assignment then sought it back
to its place and handed it over in the event-loop step between the loop's check of the
generation and the start of its turn, and the turn took the next batch, read from past the
dropped records, as if nothing were missing. Here the same steps are made to happen in that
order, with the runtime's own ``on_partitions_assigned``, ``recover`` and ``turn``."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from streams.ops.metrics import Metrics
from streams.settings import Settings
from streams.worker.kafkaio import Sender, reader, stop_producer
from streams.worker.processor import ProcessorJob, Turn
from streams.worker.runtime import PartitionRuntime
from tests.integration.conftest import ensure

pytestmark = pytest.mark.integration

RECORDS = 12


class Recorder:
    """A processor that remembers the offsets it took."""

    def __init__(self) -> None:
        self.taken: list[int] = []
        self.last = -1

    def start_at(self, offset: int) -> None:
        self.last = offset - 1

    def take(self, record: Any, now_ms: float) -> None:
        if record.offset > self.last:
            self.taken.append(record.offset)
            self.last = record.offset

    def turn(self, now_ms: float) -> Turn:
        return Turn([], [], self.last + 1)


class RecorderJob(ProcessorJob[Recorder]):
    name = kind = "recorder"

    def make(self, partition: int, table: dict[bytes, bytes]) -> Recorder:
        return Recorder()


def runtime(settings: Settings, job: RecorderJob) -> PartitionRuntime[Any]:
    async def crash(exc: BaseException) -> None:
        raise AssertionError(f"the runtime crashed: {exc!r}")

    return PartitionRuntime(settings, Sender(settings), Metrics(), crash, job)


async def publish_records(settings: Settings, topic: str) -> None:
    """RECORDS records, ``b"0"`` to ``b"11"``, into partition 0 of ``topic``."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send_and_wait(topic, b"%d" % n, partition=0)
    finally:
        await producer.stop()


async def recovered_again(running: asyncio.Task[None], crashes: list[BaseException], made: list[Any]) -> None:
    """Until partition 0's processor was made a second time and has taken every record."""
    deadline = asyncio.get_running_loop().time() + 60
    while len(made) < 2 or made[-1].last < RECORDS - 1:
        assert not crashes and not running.done(), (crashes, running)
        assert asyncio.get_running_loop().time() < deadline, "the partition was not recovered again"
        await asyncio.sleep(0.2)


async def test_a_batch_read_before_an_assignment_finished_is_not_taken(settings: Settings) -> None:
    await ensure(settings)
    topic = settings.sequenced_topic
    tp = TopicPartition(topic, 0)
    await publish_records(settings, topic)

    job = RecorderJob(settings, Metrics(), topic=topic, group=f"{settings.app_id}-recorder",
                      changelog=settings.state_changelog)
    loop = runtime(settings, job)
    await job.start(loop.units)
    loop.consumer = consumer = reader(settings)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        # A turn while the partition is still being recovered drops what it reads of it...
        dropped = await consumer.getmany(tp, timeout_ms=5000, max_records=4)
        assert [r.offset for r in dropped[tp]] == [0, 1, 2, 3]
        await loop.turn(dropped, loop.generation)
        # ...the loop reads the next batch (from offset 4) and checks the generation...
        generation = loop.generation
        batch = await consumer.getmany(tp, timeout_ms=5000, max_records=4)
        assert [r.offset for r in batch[tp]] == [4, 5, 6, 7]
        # ...and the assignment finishes before the turn starts: sought to 0, handed over.
        await loop.on_partitions_assigned([tp])
        await loop.recover()
        recorder = job.processors[0]
        await loop.turn(batch, generation)
        assert recorder.taken == [], "a batch read before the hand-over was taken"
        while recorder.last < RECORDS - 1:
            await loop.turn(await consumer.getmany(tp, timeout_ms=5000), loop.generation)
        assert recorder.taken == list(range(RECORDS)), "records were skipped or taken out of order"
        await loop.committing.settle()  # the last turn's commit, in flight
    finally:
        for producer in loop.producers.values():
            await stop_producer(producer)
        await consumer.stop()


async def test_a_recovery_longer_than_the_session_keeps_the_worker_in_its_group(settings: Settings) -> None:
    """aiokafka sends no heartbeat while an assignment callback runs. Recovering in there once
    got a worker put out of its group when recovery outlasted the session (workers starting
    side by side on a busy machine), and then fenced by the worker given its partitions. The
    loop recovers outside the callback: however long it takes, the one assignment stands."""
    settings = replace(settings, session_timeout_ms=6_000)
    await ensure(settings)
    assignments: list[list[int]] = []

    class SlowJob(RecorderJob):
        def assigned(self, count: int) -> None:
            assignments.append(count)

        async def read_tables(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
            await asyncio.sleep(settings.session_timeout_ms / 1000 * 1.5)
            return await super().read_tables(partitions)

    job = SlowJob(settings, Metrics(), topic=settings.sequenced_topic, group=f"{settings.app_id}-slow",
                  changelog=settings.state_changelog)
    loop = runtime(settings, job)
    running = asyncio.create_task(loop.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(loop.units) < settings.partitions:
            assert not running.done(), running
            assert asyncio.get_running_loop().time() < deadline, "the partitions were never recovered"
            await asyncio.sleep(0.2)
        await asyncio.sleep(settings.session_timeout_ms / 1000)  # a member put out would be back by now
        assert assignments == [settings.partitions], assignments
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_kafka_error_in_a_turn_recovers_the_partitions_in_place(settings: Settings) -> None:
    """A broker going away under a transaction can break a producer for good (aiokafka's sender gives
    up on a lost coordinator: the fault tier's broker restart caught it). The runtime then drops its
    partitions and recovers them again, as after a rebalance, instead of stopping the worker."""
    from aiokafka.errors import KafkaError

    await ensure(settings)
    topic = settings.sequenced_topic
    await publish_records(settings, topic)
    made: list[Recorder] = []

    class BrokenOnce(RecorderJob):
        def make(self, partition: int, table: dict[bytes, bytes]) -> Recorder:
            recorder = Recorder()
            if partition == 0:
                made.append(recorder)
            return recorder

        async def turn(self, batch: Any, units: Any, consumer: Any) -> Any:
            commits = await super().turn(batch, units, consumer)
            if any(tp.partition == 0 for tp in batch) and len(made) == 1:
                raise KafkaError("Unexpected error during batch delivery")
            return commits

    crashes: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashes.append(exc)

    job = BrokenOnce(settings, Metrics(), topic=topic, group=f"{settings.app_id}-broken", changelog=settings.state_changelog)
    loop = PartitionRuntime(settings, Sender(settings), Metrics(), crash, job)
    running = asyncio.create_task(loop.run())
    try:
        await recovered_again(running, crashes, made)
        assert made[-1].taken == list(range(RECORDS)), "the recovered partition did not start from what was committed"
        assert loop.failures == 0 and not crashes
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


class Keeper(Recorder):
    """A Recorder whose position is its state, in the changelog (a ledger's stamp, in small)."""

    def __init__(self, table: dict[bytes, bytes]) -> None:
        super().__init__()
        self.last = int(table.get(b"last", b"-1"))
        self.began = self.last + 1  # where it starts reading: after what was committed

    def turn(self, now_ms: float) -> Turn:
        return Turn([], [(b"last", b"%d" % self.last)], self.last + 1)


async def test_a_failed_commit_drops_what_later_turns_took_and_recovers_from_what_was_committed(
        settings: Settings) -> None:
    """A turn's commit is in flight while the next turn takes its batch (streams.worker.runtime). A
    commit that fails then takes with it what the turns after it changed in memory: the partition
    is recovered from its last commit, and reads again from there; nothing skipped, nothing twice."""
    from aiokafka.errors import KafkaError

    settings = replace(settings, batch_max=3)
    await ensure(settings)
    topic = settings.sequenced_topic
    await publish_records(settings, topic)
    made: list[Keeper] = []
    at_failure: list[int] = []
    landed: list[int] = []  # partition 0's group offsets committed, in order

    class KeeperJob(RecorderJob):
        def make(self, partition: int, table: dict[bytes, bytes]) -> Recorder:
            keeper = Keeper(table)
            if partition == 0:
                made.append(keeper)
            return keeper

        def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
            return int(value) if key == b"last" else None

    class FailsOnce(Sender):
        commits = 0

        async def commit_turn(self, producer: Any, sends: Any, offsets: Any, *args: Any) -> None:
            tp = TopicPartition(topic, 0)
            if tp in offsets and len(made) == 1 and offsets[tp] > 0:
                self.commits += 1
                if self.commits == 2:  # partition 0's second turn with records: slow, then broken
                    await asyncio.sleep(1.5)  # the loop reads and takes the next batch meanwhile
                    at_failure.extend([offsets[tp], made[0].last + 1])  # the commit's offset, the keeper's
                    raise KafkaError("Unexpected error during batch delivery")
            await super().commit_turn(producer, sends, offsets, *args)
            if tp in offsets and offsets[tp] > 0:
                landed.append(offsets[tp])

    crashes: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashes.append(exc)

    job = KeeperJob(settings, Metrics(), topic=topic, group=f"{settings.app_id}-keeper",
                    changelog=settings.state_changelog)
    loop = PartitionRuntime(settings, FailsOnce(settings), Metrics(), crash, job)
    running = asyncio.create_task(loop.run())
    try:
        await recovered_again(running, crashes, made)
        first, again = made
        committed = landed[0]  # the first turn with records: the only commit of the first keeper that landed
        failed_at, taken_to = at_failure
        assert committed < failed_at < taken_to, "the next turn did not take its batch while the commit was in flight"
        assert again.began == committed, "not recovered from the last commit that landed"
        assert first.taken[:committed] + again.taken == list(range(RECORDS)), "records were skipped or taken twice"
        assert loop.failures == 0 and not crashes
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
