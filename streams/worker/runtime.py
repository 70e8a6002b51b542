"""The partition runtime: the one loop every processor of the worker runs on (the sequencer's tasks,
the ledger, identity registry and commission book partitions), which owns the consumer group,
rebalances, recovery, fencing and the turn with its Kafka transaction. Touch it only to change how
partitions come, go and commit; what a processor does is its ``Job``'s (how its units are opened,
what a turn of records commits).

The steps, the same for every job:

- **Assignment.** ``on_partitions_assigned`` only notes the new partitions and pauses them: aiokafka
  sends no heartbeat while the callback runs, and a recovery in there that outlasted the session got
  the worker put out of the group and then fenced (the rebalance test caught that).
- **Recovery** (``recover``, in the loop). Per new partition, its transactional producer
  ``<app>-<kind>-<partition>`` is started under the lock: that fences every older holder, a worker
  paused past its session included, and aborts the transaction it left open, before anything is read
  back. Then the job opens its units (state from a changelog, or committed places), and, with nothing
  awaited in between, each is sought to its place, handed over and resumed; the generation moves on.
  A rebalance meanwhile (the generation moved) drops what was opened.
- **The turn.** A batch read across a rebalance is dropped and its partitions read again from each
  unit's place (it may start anywhere: before they were sought). Otherwise the job takes it and
  returns one ``Commit`` per unit with something to commit; each is one Kafka transaction (sends and
  the group's offsets together, ``Sender.commit_turn``), side by side. A turn's commit overlaps the
  next turn's work: the loop reads and takes the next batch while it is in flight, and the next
  turn's commit starts once it is in (``settle``), so at most one is in flight, and a producer has
  one transaction at a time, in turn order. What the next turn changed in memory is only ever
  committed after it; if the commit fails, the units go with it (below). A turn and its commit are
  finished even when the worker is told to stop in their middle (within FINISH_S); a revocation
  waits for them.
- **Failure.** A fenced producer stops the worker cleanly (another worker holds the partition); a
  missing ACL stops it with one line. A Kafka error in a turn or its commit (a broker restarting
  under a transaction) drops every unit and producer, with whatever later turns changed in them,
  and recovers them again in place, as after a rebalance, up to AGAIN_MAX times in a row; anything
  else crashes the worker, and a restart recovers from what was committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams import connect
from streams.ops.metrics import Metrics
from streams.settings import Settings
from streams.worker.kafkaio import FINISH_S, Batch, Changelog, Fenced, Sender, gather_all, group_consumer, stop_producer
from streams.worker.wire import Send

Crash = Callable[[BaseException], Awaitable[None]]
AGAIN_MAX: Final = 5  # Kafka errors in a row recovered from in place before the worker stops


class NotRecovered(Exception):
    """Partitions assigned to the runtime could not be recovered."""


class Unit(Protocol):
    """What the runtime holds for one partition number: a processor's partition, a sequencer task."""

    def place(self, tp: TopicPartition) -> int:
        """Where ``tp`` is read from again after a batch read across a rebalance was dropped."""

    def committed(self, tp: TopicPartition) -> int | None:
        """The offset last committed to the group for ``tp`` (None: none yet), for lag."""

    async def close(self) -> None:
        """The unit is no longer held (its producer is the runtime's to stop)."""


@dataclass
class Commit:
    """One unit's share of a turn: its ``sends`` and the group's ``positions`` (``{tp: offset}`` or
    ``{tp: (offset, metadata)}``) in one transaction; ``done`` runs once it is committed."""

    partition: int
    sends: list[Send]
    positions: dict[TopicPartition, Any]
    done: Callable[[], None] | None = None
    changelog: Changelog | None = None  # its state writes


@dataclass
class Turned:
    """A job's turn as the runtime commits it: one ``Commit`` per unit with something to commit,
    and what to do once every one is committed (metrics, the read model), made as the turn ended:
    the units change again, with the next turn, while it commits."""

    commits: list[Commit]
    then: Callable[[], Awaitable[None]] | None = None


U = TypeVar("U", bound=Unit)


class Job(Generic[U]):
    """One kind of processor, as the runtime runs it: a subclass says how its units are opened
    (``open``) and what a turn of records commits (``turn``); the rest has defaults."""

    name: str  # in logs: "ledger", "sequencer"
    kind: str  # in the transactional ids <app>-<kind>-<partition>, and the metrics
    unit_name = "partition"  # names a fenced holder: "ledger partition 3", "sequencer task 3"
    group: str
    topics: list[str]
    consumer_options: dict[str, Any]
    units: dict[int, U]  # the runtime's, for the job to read (``start``)

    async def start(self, units: dict[int, U]) -> None:
        """Before the runtime joins its group."""
        self.units = units

    async def stop(self) -> None:
        """After the runtime left its group."""

    def takes(self, partition: int, assigned: list[TopicPartition]) -> bool:
        """Whether partition number ``partition`` of ``assigned`` can be made a unit."""
        return True

    def assigned(self, count: int) -> None:
        """A new assignment of ``count`` partitions (for metrics)."""

    async def open(self, partitions: list[int],
                   consumer: AIOKafkaConsumer) -> list[tuple[int, U, dict[TopicPartition, int]]]:
        """The units of ``partitions`` (their producers started, which fenced older holders), each
        with where its consumer partitions are to be sought. What it made before failing, it closes."""
        raise NotImplementedError

    async def turn(self, batch: Batch, units: dict[int, U], consumer: AIOKafkaConsumer) -> Turned:
        """Take ``batch`` (records of held units only) and say what each unit commits."""
        raise NotImplementedError


class InFlight(Generic[U]):
    """The last turn's commit, while it is in flight (see the module): ``start`` starts it,
    ``settle`` waits for it and raises its failure, ``quiesce`` lets it land before units go."""

    def __init__(self, sender: Sender, metrics: Metrics, job: Job[U], producers: dict[int, AIOKafkaProducer],
                 log: logging.Logger) -> None:
        self.sender, self.metrics, self.job, self.producers, self.log = sender, metrics, job, producers, log
        self.future: asyncio.Future[None] | None = None

    def start(self, turned: Turned) -> None:
        assert self.future is None, "a commit is in flight"
        if turned.commits or turned.then is not None:
            self.future = asyncio.ensure_future(self._commit(turned))

    async def _commit(self, turned: Turned) -> None:
        job = self.job

        async def commit(one: Commit) -> None:
            await self.sender.commit_turn(self.producers[one.partition], one.sends, one.positions, job.group,
                                          self.metrics, job.kind, f"{job.name} {job.unit_name} {one.partition}",
                                          one.changelog)
            if one.done is not None:
                one.done()

        await gather_all(*(commit(one) for one in turned.commits))
        if turned.then is not None:
            await turned.then()

    async def settle(self) -> None:
        """Wait until the last turn's commit is in; its failure is raised here, in the loop."""
        future, self.future = self.future, None
        if future is not None:
            await future

    async def quiesce(self, timeout: float | None = None, forget: bool = False) -> None:
        """Let the last turn's commit land (or fail) before units or producers are dropped. Its
        failure is left for ``settle`` to raise, unless every unit is dropped anyway (``forget``)."""
        future = self.future
        if future is None:
            return
        await asyncio.wait([future], timeout=timeout)
        if forget:
            self.future = None
            future.add_done_callback(self._forgotten)  # now, or once a commit cut short by the stop ends

    def _forgotten(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.log.debug("a commit failed as its units were dropped: %r", future.exception())


class PartitionRuntime(Generic[U], ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs one ``Job`` on its consumer group (see the module)."""

    def __init__(self, settings: Settings, sender: Sender, metrics: Metrics, crash: Crash, job: Job[U]) -> None:
        self.settings, self.sender, self.metrics, self.crash, self.job = settings, sender, metrics, crash, job
        self.log = logging.getLogger(f"rewards.{job.name}")
        self.units: dict[int, U] = {}
        self.producers: dict[int, AIOKafkaProducer] = {}  # partition -> its transactional producer
        self.generation = 0  # one more at every revocation and assignment: a batch read across one is stale
        self.pending: list[int] = []  # partitions assigned, paused until they are recovered
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None  # made in the worker's event loop, by run
        self.ready = False  # in its group with its first assignment recovered (readiness), until it stops
        self.failures = 0  # Kafka errors in a row, each followed by a recovery in place (``_again``)
        self.committing = InFlight(sender, metrics, job, self.producers, self.log)  # the last turn's commit

    async def run(self) -> None:
        job = self.job
        self.consumer = consumer = group_consumer(self.settings, job.group, **job.consumer_options)
        await connect.start(consumer)
        try:
            await job.start(self.units)
            consumer.subscribe(job.topics, listener=self)
            await self._loop(consumer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The units in memory may hold effects whose outputs are not in Kafka: the runtime stops
            # (dropping them all, below), and a restart recovers from what was committed.
            if isinstance(exc, Fenced):  # not a failure: the worker stops (streams.worker.app)
                await self.crash(exc)
                return
            refused = exc if isinstance(exc, connect.NotAllowed) else connect.not_allowed(exc, self.settings)
            if refused is not None:  # a missing ACL: no restart helps (streams.worker.app)
                await self.crash(refused)
                return
            self.log.critical("%s; stopping so the worker restarts from what it committed",
                              exc if isinstance(exc, NotRecovered) else f"{job.name} turn failed", exc_info=exc)
            await self.crash(exc)
            raise
        finally:
            self.ready = False
            self.consumer = None  # the rebalance callbacks from here on do nothing
            await self.committing.quiesce(FINISH_S, forget=True)
            await self._drop(sorted(set(self.units) | set(self.producers)))
            await consumer.stop()  # leaves the group: another worker takes the partitions at once
            await job.stop()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            if self.pending:
                try:
                    await self.recover()
                except Exception as exc:
                    if isinstance(exc, (Fenced, connect.NotAllowed)):
                        raise
                    if await self._again(exc, "recovery"):
                        continue
                    raise NotRecovered(f"{self.job.name} partitions {self.pending} could not be recovered") from exc
                continue
            generation = self.generation
            batch = await consumer.getmany(timeout_ms=self.settings.batch_within_ms, max_records=self.settings.batch_max)
            try:
                async with self.lock:
                    # A turn is finished even when the worker is told to stop in the middle of it
                    # (within FINISH_S): one cut short is aborted, and done again by the next holder.
                    task = asyncio.ensure_future(self.turn(batch, generation))
                    try:
                        await asyncio.shield(task)
                    except asyncio.CancelledError:
                        await asyncio.wait([task], timeout=FINISH_S)
                        raise
            except KafkaError as exc:
                if not await self._again(exc, "turn"):
                    raise
                continue
            self.failures = 0

    async def _again(self, exc: Exception, what: str) -> bool:
        """After a Kafka error in a turn or a recovery (a broker going away under a transaction can
        break a producer for good: aiokafka's sender gives up on a lost coordinator): whether to
        recover every partition held again, in this process, from what was committed, as after a
        rebalance (new producers abort what the broken ones left open). Not a missing ACL, and at
        most AGAIN_MAX times in a row, waiting longer each time; then the worker stops as before."""
        if not isinstance(exc, KafkaError) or connect.not_allowed(exc, self.settings) is not None:
            return False
        if self.failures >= AGAIN_MAX:
            return False
        self.failures += 1
        self.log.warning("%s %s failed (%r); recovering its partitions again from what was committed (%d of %d)",
                         self.job.name, what, exc, self.failures, AGAIN_MAX)
        await asyncio.sleep(min(2 ** self.failures, 30))
        async with self.lock:
            consumer = self.consumer
            assert consumer is not None
            await self.committing.quiesce(forget=True)
            await self._drop(sorted(set(self.units) | set(self.producers)))
            self._pend(consumer, list(consumer.assignment()))
        return True

    async def turn(self, batch: Batch, generation: int) -> None:
        """One turn on ``batch``, read at ``generation``. The check that no rebalance came in
        between is here, with nothing awaited before the records are taken: a task starts an
        event-loop step after it is made, and an assignment finishing in that step would hand
        over a partition sought back to its place while the batch holds its records from past
        those an earlier turn dropped (the rebalance test caught that: seven records skipped)."""
        consumer = self.consumer
        assert consumer is not None
        if generation != self.generation:
            self._reread(batch, consumer)
            return
        turned = await self.job.turn(batch, self.units, consumer)
        await self.committing.settle()  # the turn before commits first: in turn order, one transaction at a time
        self.committing.start(turned)

    def _reread(self, batch: Batch, consumer: AIOKafkaConsumer) -> None:
        """Drop a batch read across a rebalance; its partitions held are read again from their
        unit's place (a revoked one's next holder reads it)."""
        assignment = consumer.assignment()
        for tp in batch:
            unit = self.units.get(tp.partition)
            if unit is not None and tp in assignment:
                self.metrics.rewinds.labels(tp.topic, str(tp.partition)).inc()
                consumer.seek(tp, unit.place(tp))

    # -- partitions coming and going -------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:  # the turn under way (or the producer being started) reaches Kafka whole first
            await self.committing.quiesce()  # and the commit in flight
            self.generation += 1
            self.pending = []
            await self._drop(sorted({tp.partition for tp in revoked}))

    async def _drop(self, partitions: list[int]) -> None:
        for partition in partitions:
            unit = self.units.pop(partition, None)
            if unit is not None:
                await unit.close()
            producer = self.producers.pop(partition, None)
            if producer is not None:
                await stop_producer(producer)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Only noted here, the new partitions paused: the loop recovers them (``recover``)."""
        consumer = self.consumer
        if consumer is None:  # stopping
            return
        self.job.assigned(len(assigned))
        self._pend(consumer, assigned)

    def _pend(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """The partitions of ``assigned`` not held, paused and left for the loop to recover."""
        held = {tp.partition for tp in assigned}
        new = [p for p in sorted(held - set(self.units)) if self.job.takes(p, assigned)]
        consumer.pause(*(tp for tp in assigned if tp.partition not in self.units))
        self.pending = new
        self.generation += 1
        if not new:
            self.ready = True

    async def recover(self) -> None:
        """Recover the partitions assigned last (see the module)."""
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
                self.producers[p] = await self.sender.transactional(f"{self.settings.app_id}-{self.job.kind}-{p}")
        opened = await self.job.open(new, consumer)
        try:
            if generation != self.generation or self.consumer is None:  # a rebalance meanwhile, or stopping
                return
            for partition, unit, places in opened:  # no await from here on
                for tp, offset in places.items():
                    consumer.seek(tp, offset)
                self.units[partition] = unit
            consumer.resume(*(tp for tp in consumer.assignment() if tp.partition in new))
            opened = []
            self.pending = []
            self.generation += 1
            self.ready = True
            self.log.info("%s %ss %s recovered", self.job.name, self.job.unit_name, new)
        finally:
            for _, unit, _ in opened:  # not handed over
                await unit.close()

    # -- for /health, /metrics and the status page -------------------------------------------------
    def offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, the offset committed for lag, end offset) of each partition assigned."""
        consumer = self.consumer
        if consumer is None:
            return []
        rows: list[tuple[str, int, int | None, int | None]] = []
        for tp in sorted(consumer.assignment()):
            unit = self.units.get(tp.partition)
            rows.append((tp.topic, tp.partition, None if unit is None else unit.committed(tp), consumer.highwater(tp)))
        return rows
