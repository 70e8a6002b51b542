"""The job of the processors that keep their position in their own state (the ledger, the identity
registry, the commission book) on the partition runtime: a pure ``Processor`` per partition, over a
table recovered from its own compacted changelog. Touch it to change how such a processor's turn
becomes a commit; what it decides is its own module's (streams.worker.ledger, .registry, .commissions).

A processor's position is in its state: ``last``, the last input offset applied (its stamp). A
turn takes the records, each partition's in offset order (one at or below ``last`` is skipped:
applied before a restart), then asks every processor for its ``Turn`` (the sends, the state writes
for the changelog with the partition's own state, its commit, last, and the offset for the group)
and commits that in the partition's transaction; a turn that would only move the group's offset
commits it at most every LAG_ONLY_EVERY_S. Every reader of the internal topics and changelogs
reads ``read_committed``: a turn's outputs and its state appear together or not at all. A crash
before a commit aborts the transaction, and the batch is taken again from the state before it.
Invariants, asserted: a stamp only increases; a partition's commit is its last state write; a
changelog whose stamps go back is refused (a writer that was not fenced).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.ops.metrics import Metrics
from streams.settings import Settings
from streams.worker.kafkaio import Batch, Changelog, read_changelog
from streams.worker.runtime import Commit, Job, Turned
from streams.worker.wire import Send

# A turn whose only change is the group's offset (moved past transaction markers, for lag)
# commits it at most this often per partition. Such a transaction, right after the last
# commit, is answered CONCURRENT_TRANSACTIONS while the broker writes that commit's markers,
# and aiokafka retries it after its 100 ms backoff: live, half of the processors' transactions
# were of this kind, each holding its turn ~100 ms. The next turn with records commits the
# offset anyway; an idle partition's lag reaches 0 within this.
LAG_ONLY_EVERY_S: Final = 1.0


class StampWentBack(Exception):
    """A changelog holds a commit older than one before it."""


@dataclass
class Turn:
    """Everything one processor commits for a turn, taken out of it (it is empty afterwards)."""

    sends: list[Send]
    writes: Sequence[tuple[bytes, bytes | None]]  # for its changelog, its commit last ([]: nothing to write)
    position: int  # the offset committed to the group, for lag
    report: Any = None  # what the job observes after the commit (the ledger's outbox, payouts)


class Processor(Protocol):
    """One partition's processor (pure: no I/O)."""

    @property
    def last(self) -> int:
        """The last input offset the state has applied: its stamp (-1: none)."""

    def start_at(self, offset: int) -> None:
        """Nothing applied yet: the first record is at ``offset`` (the log's first)."""

    def take(self, record: Any, now_ms: float) -> None:
        """Take one record (aiokafka's ConsumerRecord): one at or below ``last`` is skipped; the
        offsets after it may have holes (transaction markers, aborted records)."""

    def turn(self, now_ms: float) -> Turn:
        """What the records taken since the last turn commit; the processor is emptied of it."""


P = TypeVar("P", bound=Processor)


@dataclass
class Held(Generic[P]):
    """A partition the runtime holds for a processor job: its processor, and what was committed."""

    processor: P
    tp: TopicPartition
    stamp: int  # the stamp of its last commit
    position: int | None = None  # the group offset last committed
    sent: int | None = None  # the group offset in its last commit (in flight, or committed)
    at: float = 0.0  # when its last commit was made (monotonic)

    def place(self, tp: TopicPartition) -> int:
        return self.processor.last + 1

    def committed(self, tp: TopicPartition) -> int | None:
        if self.processor.last < 0:
            return None
        return self.processor.last + 1 if self.position is None else self.position

    async def close(self) -> None:
        return None


class ProcessorJob(Job[Held[P]]):
    """The job for one kind of processor; subclasses say how to make one (``make``), where its
    commit is in its changelog (``stamp``) and what to observe after a turn (``observe``)."""

    name = "processor"
    kind = "processor"  # in the transactional ids: <app>-<kind>-<partition>

    def __init__(self, settings: Settings, metrics: Metrics, *, topic: str, group: str, changelog: str,
                 **consumer_options: Any) -> None:
        self.settings, self.metrics = settings, metrics
        self.topics, self.group, self.changelog = [topic], group, changelog
        self.consumer_options = consumer_options
        self.log = logging.getLogger(f"rewards.{self.name}")
        self.units: dict[int, Held[P]] = {}  # the runtime's (streams.worker.runtime), read here

    # -- what a kind of processor says ---------------------------------------------------------------
    def make(self, partition: int, table: dict[bytes, bytes]) -> P:
        raise NotImplementedError

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        """The stamp of a partition's commit record (None: not a commit)."""
        return None

    async def recovered(self, processor: P) -> None:
        """After a partition's recovery, before its first turn."""

    def observed(self, turns: list[tuple[P, Turn]]) -> Callable[[], Awaitable[None]]:
        """As a turn ends (every processor's ``Turn`` of it): what to observe once it is committed,
        taken now, for the processors change again while it commits. By default, ``observe``."""
        return lambda: self.observe(turns)

    async def observe(self, turns: list[tuple[P, Turn]]) -> None:
        """After a turn's commits (every processor's ``Turn`` of it)."""

    # -- the job -------------------------------------------------------------------------------------
    @property
    def processors(self) -> dict[int, P]:
        return {partition: held.processor for partition, held in self.units.items()}

    async def open(self, partitions: list[int],
                   consumer: AIOKafkaConsumer) -> list[tuple[int, Held[P], dict[TopicPartition, int]]]:
        """Each partition's table read back from the changelog and its processor made over it
        (one that has applied nothing starts at the log's first offset)."""
        tables = await self.read_tables(partitions)
        tps = [TopicPartition(self.topics[0], p) for p in partitions]
        starts = await consumer.beginning_offsets(tps) if tps else {}
        opened = []
        for tp in tps:
            processor = self.make(tp.partition, tables[tp.partition])
            if processor.last < 0:
                processor.start_at(starts[tp])
            await self.recovered(processor)
            opened.append((tp.partition, Held(processor, tp, processor.last), {tp: processor.last + 1}))
        self.log.info("%s partitions %s read back (%s state records)", self.name, partitions,
                      sum(len(table) for table in tables.values()))
        return opened

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

    async def turn(self, batch: Batch, units: dict[int, Held[P]], consumer: AIOKafkaConsumer) -> Turned:
        now_ms = time.time() * 1000
        for tp, records in batch.items():
            held = units.get(tp.partition)
            if held is None:
                # Revoked since it was fetched (its next holder reads it from its state), or
                # assigned and still being recovered (the recovery seeks it to its place).
                continue
            processor = held.processor
            before = processor.last
            for record in records:
                processor.take(record, now_ms)
            assert processor.last >= before, f"{self.name} {tp}: stamp went back from {before} to {processor.last}"
        commits = []
        turns = []
        for held in list(units.values()):  # every one: the registry decides on time, with no record
            turn = held.processor.turn(now_ms)
            turns.append((held.processor, turn))
            commit = await self._commit(held, turn, consumer)
            if commit is not None:
                commits.append(commit)
        return Turned(commits, self.observed(turns))

    async def _commit(self, held: Held[P], turn: Turn, consumer: AIOKafkaConsumer) -> Commit | None:
        processor, tp = held.processor, held.tp
        offset = turn.position
        if offset == processor.last + 1 and tp in consumer.assignment():
            offset = max(offset, await consumer.position(tp))  # past the transaction markers read
        if not turn.sends and not turn.writes and (offset == held.sent or
                                                   time.monotonic() - held.at < LAG_ONLY_EVERY_S):
            return None
        if turn.writes:
            assert processor.last >= held.stamp, f"{self.name} {tp.partition}: stamp went back"
            held.stamp = processor.last
        held.sent, held.at = offset, time.monotonic()

        def done() -> None:
            held.position = offset

        return Commit(tp.partition, turn.sends, {tp: offset}, done, Changelog(self.changelog, tp.partition, turn.writes))
