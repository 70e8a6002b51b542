"""The sequencer: every input copied, untouched, into the sequenced log, in event-time order
within each client (streams.worker.merge), with its own aiokafka consumers.

Source systems publish independently, one topic each; nothing orders a deposit on one topic
against the ``account.opened`` on another but their ``ts``. So the sequencer works like a Kafka
Streams task over co-partitioned inputs: task ``i`` reads partition ``i`` of every client topic
(they must all have REWARDS_PARTITIONS partitions, keyed by ``client_id``: checked at start-up)
and every partition of the broadcast topics, merges them by ``ts`` with a bounded wait
(REWARDS_ORDER_GRACE_MS), and writes sequenced partition ``i``. Task ``i`` is the one writer of
that partition's copies, and a client's every input is in it.

- The client topics are read in the group ``<app>-sequencer`` with the range assignor, which
  gives one worker the same partition numbers of every topic: its tasks.
- The broadcast topics (plans, day closes) are read by every task, each with a consumer of its
  own (no group), since every task needs all of them; the task's place in them is the metadata
  of its commits on its client partitions.
- A task writes a turn's copies and its commits in one Kafka transaction, with a producer of
  its own, ``<app>-sequencer-<task>``: per source partition, the offset after the last record it
  copied (not after what it read: records waiting in the merge are read again by the next
  owner). The copies and the commits land together or not at all, so an input is copied once.
  Starting a task's producer fences the task's older holders, a worker paused past its
  session included: its next send or commit fails and it stops without writing (as the
  processors do, streams.worker.processor). The ledger still recognises a second copy by its
  source position (streams.worker.ledger), which a sequenced log written before the copies
  were transactional may hold.
- A task starts where its commits say, and only records read after it started are taken: a
  batch fetched before a rebalance (``getmany`` may return it after the new assignment) is
  dropped and its partitions read again from where the task is. Taking it would put a source's
  later records before its earlier ones, and a client's registration after its fills.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from schemas.codec import RAW_KEPT_BYTES, rejection_digest
from schemas.timefmt import parse_ts_us
from streams import connect
from streams.worker import wire
from streams.ops.topics import partition_counts
from streams.worker.kafkaio import Fenced, Sender, gather_all, group_consumer, reader, stop_producer
from streams.worker.merge import EventTimeMerge, Sources
from streams.ops.metrics import Metrics
from streams.worker.processor import Crash
from streams.bus import precedence, task_notes, task_places
from streams.settings import Settings
from streams.worker.wire import Send

log = logging.getLogger("rewards.sequencer")

FETCH_WAIT_MS: Final = 100  # an idle source is heard from this often: part of the merge's latency
LEADERS_EVERY_MS: Final = 500  # how often the sequencer asks who leads its sources (a failover shows in it)


class _Stamp(msgspec.Struct):
    ts: str


class _Version(msgspec.Struct):
    """What the sequencer reads of a program.terms input: enough to hold inputs for its verdict."""

    id: str
    ts: str
    effective: str


_stamp = msgspec.json.Decoder(_Stamp)
_version = msgspec.json.Decoder(_Version)


@dataclass
class _Task:
    index: int
    broadcast: AIOKafkaConsumer
    producer: AIOKafkaProducer  # transactional: <app>-sequencer-<index>
    sources: list[TopicPartition]
    merge: EventTimeMerge[TopicPartition]
    answers: Sources[TopicPartition]  # which sources were heard from, by their leaders' answers
    read: dict[TopicPartition, int] = field(default_factory=dict)     # after the last record read
    fetched: dict[TopicPartition, int] = field(default_factory=dict)  # the consumer's position: past markers too
    copied: dict[TopicPartition, int] = field(default_factory=dict)   # after the last record copied
    places: dict[TopicPartition, int] = field(default_factory=dict)   # as last committed
    last_ts: dict[TopicPartition, int] = field(default_factory=dict)
    clock: int = 0  # the newest ts copied
    reported: tuple[float, int, bool] | None = None  # the last Progress mark: (when, clock, caught up)
    # versions of the terms copied, waiting for every task's word: event id -> effective (µs)
    pending: dict[str, int] = field(default_factory=dict)
    acks: dict[str, dict[int, bool]] = field(default_factory=dict)  # event id -> task -> it was late


class SequencerLoop(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, settings: Settings, sender: Sender, metrics: Metrics, crash: Crash) -> None:
        self.settings, self.sender, self.metrics, self.crash = settings, sender, metrics, crash
        self.consumer: AIOKafkaConsumer = None  # made in the worker's event loop, by run
        self.tasks: dict[int, _Task] = {}
        self.lock = asyncio.Lock()
        self.precedence = precedence(settings)
        self.broadcast_partitions: list[TopicPartition] = []
        self.started = False
        self.ready = False  # in its group with its first assignment's tasks made (readiness), until it stops
        self.generation = 0  # one more at every revocation and assignment: a batch read across one is stale
        self.pending: list[int] = []  # tasks assigned, their partitions paused until the loop has made them
        self.leaders: AIOKafkaClient = None  # made in the worker's event loop, by run

    async def run(self) -> None:
        settings = self.settings
        self.consumer = consumer = group_consumer(
            settings, settings.sequencer_group, partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=FETCH_WAIT_MS)
        await connect.start(consumer)
        counts = await partition_counts(settings, settings.broadcast_topics)
        self.broadcast_partitions = [TopicPartition(topic, p) for topic in settings.broadcast_topics
                                     for p in range(counts.get(topic, 0))]
        consumer.subscribe(list(settings.client_topics), listener=self)
        # Who leads each source partition (streams.worker.merge.Sources): a client of its own, its
        # metadata refreshed every LEADERS_EVERY_MS, since the consumers do not tell.
        self.leaders = AIOKafkaClient(**connect.connection(settings), metadata_max_age_ms=LEADERS_EVERY_MS)
        await self.leaders.bootstrap()
        self.leaders.set_topics(list(settings.client_topics) + list(settings.broadcast_topics))
        self.started = True
        try:
            while True:
                if self.pending:
                    await self._make_tasks()
                    continue
                generation = self.generation
                batch = await consumer.getmany(timeout_ms=settings.batch_within_ms, max_records=settings.batch_max)
                async with self.lock:
                    if generation != self.generation:
                        self._reread(batch)
                        continue
                    await self._step(batch)
        except asyncio.CancelledError:
            raise
        except Fenced as exc:  # not a failure: the worker stops (streams.worker.app)
            await self.crash(exc)
        except Exception as exc:
            refused = connect.not_allowed(exc, self.settings)
            if refused is not None:  # a missing ACL: no restart helps (streams.worker.app)
                await self.crash(refused)
                return
            log.critical("sequencer batch failed; stopping so the worker restarts from committed offsets",
                         exc_info=exc)
            await self.crash(exc)
            raise
        finally:
            self.started = self.ready = False  # the rebalance callbacks from here on do nothing
            tasks = list(self.tasks.values())
            self.tasks.clear()
            for task in tasks:
                await self._stop_task(task)
            await consumer.stop()
            await self.leaders.close()

    # -- one turn: take in what was read, copy what the merge lets out ---------------------------
    async def _step(self, batch: dict[TopicPartition, list[Any]]) -> None:
        tasks = list(self.tasks.values())
        for tp, messages in batch.items():
            task = self.tasks.get(tp.partition)
            if task is not None:
                self._take(task, tp, messages, self.consumer)
        acks = self.settings.terms_acks_topic
        for task in tasks:
            for tp, messages in (await task.broadcast.getmany(timeout_ms=0)).items():
                if tp.topic == acks:
                    for message in messages:
                        ack = wire.terms_acks.decode(message.value)
                        task.acks.setdefault(ack.event_id, {}).setdefault(ack.task, ack.late)  # a task's first word
                else:
                    self._take(task, tp, messages, task.broadcast)
        sequenced, broadcast = self.settings.sequenced_topic, set(self.settings.broadcast_topics)
        for task in tasks:  # past the transaction markers (and aborted records) of sources written transactionally
            for tp in task.sources:
                consumer = task.broadcast if tp.topic in broadcast else self.consumer
                if tp in consumer.assignment():
                    task.fetched[tp] = max(task.fetched.get(tp, 0), await consumer.position(tp))
        turns: list[tuple[_Task, list[Send]]] = []
        for task in tasks:
            sends: list[Send] = []
            heard = self._heard(task)
            for tp in task.sources:  # each source's answers seen every turn, a leader change among them
                heard(tp)
            for tp, message, ts_us in task.merge.ready(task.sources, heard, self._barrier_of):
                if tp.topic == self.settings.topic_programs:
                    sends += self._version_copied(task, message)
                kind = wire.KIND_BROADCAST if tp.topic in broadcast else wire.KIND_INPUT
                headers = [(wire.H_SOURCE, wire.Source(tp.topic, tp.partition, message.offset).header()),
                           (wire.H_KIND, kind)]
                key = None if kind == wire.KIND_BROADCAST else (message.key or b"")
                value = message.value or b""  # a tombstone: rejected as malformed
                if len(value) > self.settings.max_input_bytes:  # too large to carry: a stand-in
                    headers.append((wire.H_OVERSIZE, f"{len(value)}:{rejection_digest(value)}".encode()))
                    value = value[:RAW_KEPT_BYTES]
                sends.append(Send(sequenced, key, value, task.index, headers))
                task.copied[tp] = message.offset + 1
                task.clock = max(task.clock, ts_us)
            sends += self._verdicts(task)
            sends += self._progress(task, heard)
            self._observe_sources(task)
            if sends or self._places(task) != task.places:
                turns.append((task, sends))
        await gather_all(*(self._commit(task, sends) for task, sends in turns))

    # -- versions of the terms: in time on every task, or late on one ----------------------------
    def _barrier_of(self, item: Any) -> float | None:
        """A version of the terms holds back what is at or past its effective until its verdict."""
        tp, message, _ = item
        if tp.topic != self.settings.topic_programs:
            return None
        version = _read_version(message.value)
        return None if version is None else version[1]

    def _version_copied(self, task: _Task, message: Any) -> list[Send]:
        """The task's word on a version it copies: whether it had copied an input at or past the
        version's effective before it (then it came beyond the ordering grace, and the inputs
        before it were recorded under the terms before it). Written with the copy."""
        version = _read_version(message.value)
        if version is None:
            return []
        event_id, effective_us = version
        task.pending[event_id] = effective_us
        ack = wire.TermsAck(event_id, task.index, task.clock >= effective_us)
        return [Send(self.settings.terms_acks_topic, event_id.encode(), wire.encode(ack), 0)]

    def _verdicts(self, task: _Task) -> list[Send]:
        """Each version every task has spoken for: its verdict into the task's sequenced partition,
        before anything at or past its effective (the merge held that back), and the hold lifted.
        Every task reads the same words, so every partition gets the same verdict."""
        sends = []
        for event_id in sorted(task.pending):
            words = task.acks.get(event_id, {})
            if len(words) < self.settings.partitions:
                continue
            del task.pending[event_id]
            verdict = wire.TermsVerdict(event_id, not any(words.values()))
            if not verdict.in_time:
                log.warning("version %s of the program terms came after inputs at or past its effective on "
                            "sequencer task(s) %s: refused on every partition (terms_late)", event_id,
                            sorted(task_index for task_index, late in words.items() if late))
            sends.append(Send(self.settings.sequenced_topic, None, wire.encode(verdict), task.index,
                              [(wire.H_KIND, wire.KIND_TERMS)]))
        task.merge.barrier_us = min(task.pending.values(), default=math.inf)
        return sends

    def _take(self, task: _Task, tp: TopicPartition, messages: list[Any], consumer: AIOKafkaConsumer) -> None:
        """Into the merge. The grace counts from when an input was published: its Kafka
        timestamp, or when its fetch came back if that is earlier (a producer's clock ahead of
        ours; a partition with records not yet taken is not fetched again, so its last poll is
        theirs). The other sources' empty answers in that fetch count as heard at that moment."""
        rank = self.precedence[tp.topic]
        fetched_ms = consumer.last_poll_timestamp(tp) or time.time() * 1000
        last = task.last_ts.get(tp, 0)
        for message in messages:
            try:
                last = parse_ts_us(_stamp.decode(message.value).ts)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                pass  # no readable ts: it keeps its place in its source (the ledger rejects it)
            published = message.timestamp if 0 < message.timestamp < fetched_ms else fetched_ms
            task.merge.add(tp, last, rank, published, (tp, message, last))
        task.last_ts[tp] = last
        task.read[tp] = messages[-1].offset + 1
        task.fetched[tp] = max(task.fetched.get(tp, 0), task.read[tp])

    def _reread(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Drop a batch read across a rebalance; its partitions are read again from the place
        of the task that now holds them (a revoked one's next owner reads it)."""
        assignment = self.consumer.assignment()
        for tp in batch:
            task = self.tasks.get(tp.partition)
            if task is not None and tp in assignment:
                self.consumer.seek(tp, task.fetched[tp])

    def _progress(self, task: _Task, heard: Any) -> list[Send]:
        """A Progress mark after the task's copies, when it changed, at most every
        wire.PROGRESS_EVERY_S: the ts it has copied up to, and whether it had copied all its sources
        had, every one of them known (answering its leader, not settling after a change: a
        source that does not answer may hold a claim earlier than the registry's next one). The ledger partition passes the last one it applied on to the identity registry,
        which decides welcome claims in ts order by it (streams.worker.registry)."""
        now_ms = time.time() * 1000
        caught_up = task.merge.buffered() == 0 and all(heard(tp) is not None and task.answers.known(tp, now_ms)
                                                       for tp in task.sources)
        now = time.monotonic()
        last = task.reported
        if last is not None and (last[1:] == (task.clock, caught_up) or now - last[0] < wire.PROGRESS_EVERY_S):
            return []
        task.reported = (now, task.clock, caught_up)
        mark = wire.encode(wire.Progress(task.index, task.clock, caught_up))
        return [Send(self.settings.sequenced_topic, None, mark, task.index, [(wire.H_KIND, wire.KIND_PROGRESS)])]

    def _heard(self, task: _Task) -> Any:
        """The merge's ``heard_at``: a source's last answer from its leader that left nothing to
        fetch, as ``Sources`` lets the merge take it (held after a leader change, bounded)."""
        now_ms = time.time() * 1000
        memo: dict[TopicPartition, float | None] = {}

        def heard_at(tp: TopicPartition) -> float | None:
            if tp not in memo:
                consumer = task.broadcast if tp.topic in self.settings.broadcast_topics else self.consumer
                end, at = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
                leader = self.leaders.cluster.leader_for_partition(tp)
                caught_up = end is not None and at is not None and task.fetched.get(tp, 0) >= end
                memo[tp] = task.answers.heard_at(tp, leader, None if at is None else float(at), caught_up, now_ms)
            return memo[tp]
        return heard_at

    def _observe_sources(self, task: _Task) -> None:
        """Log what ``Sources`` saw this turn: a source settled after a leader change, or given up."""
        answers = task.answers
        for tp, ms in answers.settled:
            log.info("source %s:%s answers from its new leader; merged again after %.1f s without it "
                     "(REWARDS_FAILOVER_SETTLE_MS %s)", tp.topic, tp.partition, ms / 1000, self.settings.failover_settle_ms)
        for tp in answers.given_up:
            log.warning("source %s:%s has not answered for %s s (REWARDS_SOURCE_WAIT_MAX_S): the sequencer merges on "
                        "without it; what it holds is taken as late input when it answers", tp.topic, tp.partition,
                        self.settings.source_wait_max_s)
            self.metrics.source_waits_given_up.inc()
        answers.settled.clear()
        answers.given_up.clear()

    def waiting(self) -> list[tuple[str, int, str, float]]:
        """The source partitions the merge waits for now: (topic, partition, "unanswered" or
        "settling", seconds since their last answer counted)."""
        now_ms = time.time() * 1000
        return sorted((tp.topic, tp.partition, state, seconds) for task in list(self.tasks.values())
                      for tp, state, seconds in task.answers.waiting(now_ms))

    @staticmethod
    def _places(task: _Task) -> dict[TopicPartition, int]:
        """Where the task stands in each source: after the last record it copied; or, when it
        has copied every record it read there, where its consumer is, past the transaction
        markers of a source written transactionally (else the lag never reached 0 there)."""
        places = {}
        for tp, copied in task.copied.items():
            places[tp] = task.fetched.get(tp, copied) if copied >= task.read.get(tp, copied) else copied
        return places

    async def _commit(self, task: _Task, sends: list[Send]) -> None:
        """A task's copies and its commits, in one transaction: its client partitions' places,
        each with the task's broadcast places as its commit metadata (every task has its own
        place in the broadcast topics)."""
        broadcast_topics = self.settings.broadcast_topics
        places = self._places(task)
        notes: dict[str, Any] = {f"{tp.topic}:{tp.partition}": offset for tp, offset in places.items()
                                 if tp.topic in broadcast_topics}
        notes["~clock"] = task.clock
        if task.pending:  # versions copied and waiting for their verdict (bus.task_notes)
            notes["~terms"] = task.pending
        metadata = orjson.dumps(notes).decode()
        positions = {tp: (offset, metadata) for tp, offset in places.items() if tp.topic not in broadcast_topics}
        await self.sender.commit_turn(task.producer, sends, positions, self.settings.sequencer_group, self.metrics,
                                      "sequencer", f"sequencer task {task.index}")
        task.places = places

    # -- tasks coming and going -------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:  # the turn under way (or the producer being started) reaches Kafka whole first
            self.generation += 1
            self.pending = []
            for index in sorted({tp.partition for tp in revoked}):
                task = self.tasks.pop(index, None)
                if task is not None:
                    await self._stop_task(task)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Only noted here, the new tasks' partitions paused; the loop makes the tasks
        (``_make_tasks``): aiokafka sends no heartbeat while this callback runs, and making
        them here could outlast the session (as processor loops' recoveries did,
        streams.worker.processor)."""
        if not self.started:  # stopping
            return
        topics = self.settings.client_topics
        held = {tp.partition for tp in assigned}
        new = []
        for index in sorted(held - set(self.tasks)):
            sources = [TopicPartition(topic, index) for topic in topics]
            if set(sources) <= set(assigned):
                new.append(index)
            else:
                log.error("sequencer task %s was given only part of its partitions (%s): the client topics must "
                          "have the same number of partitions and every worker the same settings", index,
                          sorted(tp.topic for tp in assigned if tp.partition == index))
        self.consumer.pause(*(tp for tp in assigned if tp.partition not in self.tasks))
        self.pending = new
        self.generation += 1
        if not new:
            self.ready = True

    async def _make_tasks(self) -> None:
        """The tasks assigned last, each sought to its place; then, with nothing awaited in
        between, handed over and their partitions resumed, the generation moved on (a batch
        read before is dropped). A rebalance meanwhile drops what was made."""
        generation, new = self.generation, self.pending
        made: list[tuple[_Task, dict[TopicPartition, int]]] = []
        try:
            for index in new:
                # Under the lock: a revocation waits for it, so no producer is started for a
                # task this worker no longer holds (it would fence the one that does).
                async with self.lock:
                    if generation != self.generation:
                        return
                    producer = await self.sender.transactional(f"{self.settings.app_id}-sequencer-{index}")
                made.append(await self._task(index, [TopicPartition(topic, index) for topic in self.settings.client_topics],
                                             producer))
            if generation != self.generation or not self.started:
                return
            broadcast = set(self.settings.broadcast_topics)
            for task, starts in made:  # no await from here on
                for tp, offset in starts.items():
                    (task.broadcast if tp.topic in broadcast else self.consumer).seek(tp, offset)
                self.tasks[task.index] = task
            self.consumer.resume(*(tp for task, _ in made for tp in task.sources if tp.topic not in broadcast))
            made = []
            self.pending = []
            self.generation += 1
            self.ready = True
        finally:
            for task, _ in made:  # not handed over
                await self._stop_task(task)

    async def _task(self, index: int, sources: list[TopicPartition],
                    producer: AIOKafkaProducer) -> tuple[_Task, dict[TopicPartition, int]]:
        """Task ``index`` (its producer started, which fenced its older holders and aborted what
        they left open) and where it starts in each source."""
        settings = self.settings
        broadcast = reader(settings, fetch_max_wait_ms=FETCH_WAIT_MS)
        task = _Task(index, broadcast, producer, sources + self.broadcast_partitions,
                     EventTimeMerge(settings.order_grace_ms),
                     Sources(settings.failover_settle_ms, settings.source_wait_max_s * 1000))
        acks = TopicPartition(settings.terms_acks_topic, 0)
        try:
            await connect.start(broadcast)
            broadcast.assign(self.broadcast_partitions + [acks])
            # Where the task left off: its commits on its client partitions, and their metadata for
            # the broadcast partitions; where there is none, the beginning.
            admin = connect.admin(settings)
            await connect.start(admin)
            try:
                committed = await admin.list_consumer_group_offsets(settings.sequencer_group, partitions=sources)
            finally:
                await admin.close()
            places = task_places(settings, committed).get(index, {})
            notes = task_notes(settings, committed).get(index, {})
            task.clock = int(notes.get("~clock", 0))
            task.pending = {str(event_id): int(effective) for event_id, effective in notes.get("~terms", {}).items()}
            task.merge.barrier_us = min(task.pending.values(), default=math.inf)
            broadcast.seek(acks, (await broadcast.beginning_offsets([acks]))[acks])  # every word, each time
            starts = {tp: found.offset for tp, found in committed.items() if tp in sources and found.offset >= 0}
            starts.update((tp, offset) for tp, offset in places.items() if tp in self.broadcast_partitions)
            unknown = [tp for tp in task.sources if tp not in starts]
            for tp in unknown:
                consumer = broadcast if tp.topic in settings.broadcast_topics else self.consumer
                starts[tp] = (await consumer.beginning_offsets([tp]))[tp]
        except BaseException:
            await self._stop_task(task)
            raise
        for tp, offset in starts.items():
            task.read[tp] = task.fetched[tp] = task.copied[tp] = task.places[tp] = offset
        return task, starts

    @staticmethod
    async def _stop_task(task: _Task) -> None:
        await task.broadcast.stop()
        await stop_producer(task.producer)

    def offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, the place last committed, end offset) of each client partition held."""
        if not self.started:
            return []
        return [(tp.topic, tp.partition, task.places.get(tp), self.consumer.highwater(tp))
                for task in self.tasks.values() for tp in task.sources if tp.topic in self.settings.client_topics]


def _read_version(value: bytes | None) -> tuple[str, int] | None:
    """(event id, effective in µs) of a program.terms input that may take effect (after its own
    ts); None for anything else, which the ledger refuses by itself, every partition alike."""
    try:
        version = _version.decode(value or b"")
        ts_us, effective_us = parse_ts_us(version.ts), parse_ts_us(version.effective)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    return (version.id, effective_us) if effective_us > ts_us else None
