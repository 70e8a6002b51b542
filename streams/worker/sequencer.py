"""The sequencer's job on the partition runtime (streams.worker.runtime): every input copied, untouched,
into the sequenced log, in event-time order within each client (streams.worker.merge). Touch it to
change what a task copies, marks and commits; rebalances and fencing are the runtime's, the order
the merge's.

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
  session included: its next send or commit fails and it stops without writing (the runtime's,
  as for every processor).
- A task starts where its commits say, and only records read after it started are taken: a
  batch fetched before a rebalance is dropped by the runtime and its partitions read again from
  where the task is (``_Task.place``). Taking it would put a source's later records before its
  earlier ones, and a client's registration after its fills.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from schemas.codec import RAW_KEPT_BYTES, rejection_digest
from schemas.timefmt import parse_ts_us
from streams import connect
from streams.worker import wire
from streams.ops.topics import partition_counts
from streams.worker.kafkaio import Batch, reader
from streams.worker.merge import EventTimeMerge, Sources
from streams.ops.metrics import Metrics
from streams.worker.runtime import Commit, Job, Turned
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
    """Sequencer task ``index``: a unit of the partition runtime, with its own broadcast consumer."""

    index: int
    broadcast: AIOKafkaConsumer
    sources: list[TopicPartition]
    merge: EventTimeMerge[TopicPartition]
    answers: Sources[TopicPartition]  # which sources were heard from, by their leaders' answers
    read: dict[TopicPartition, int] = field(default_factory=dict)     # after the last record read
    fetched: dict[TopicPartition, int] = field(default_factory=dict)  # the consumer's position: past markers too
    copied: dict[TopicPartition, int] = field(default_factory=dict)   # after the last record copied
    places: dict[TopicPartition, int] = field(default_factory=dict)   # as last committed
    placed: dict[TopicPartition, int] = field(default_factory=dict)   # in its last commit (in flight, or committed)
    last_ts: dict[TopicPartition, int] = field(default_factory=dict)
    clock: int = 0  # the newest ts copied
    reported: tuple[float, int, bool] | None = None  # the last Progress mark: (when, clock, caught up)
    # versions of the terms copied, waiting for every task's word: event id -> effective (µs)
    pending: dict[str, int] = field(default_factory=dict)
    acks: dict[str, dict[int, bool]] = field(default_factory=dict)  # event id -> task -> it was late

    def place(self, tp: TopicPartition) -> int:
        return self.fetched[tp]

    def committed(self, tp: TopicPartition) -> int | None:
        return self.places.get(tp)

    async def close(self) -> None:
        await self.broadcast.stop()

    def take(self, tp: TopicPartition, messages: list[Any], consumer: AIOKafkaConsumer, rank: int) -> None:
        """Into the merge. The grace counts from when an input was published: its Kafka
        timestamp, or when its fetch came back if that is earlier (a producer's clock ahead of
        ours; a partition with records not yet taken is not fetched again, so its last poll is
        theirs). The other sources' empty answers in that fetch count as heard at that moment."""
        fetched_ms = consumer.last_poll_timestamp(tp) or time.time() * 1000
        last = self.last_ts.get(tp, 0)
        for message in messages:
            try:
                last = parse_ts_us(_stamp.decode(message.value).ts)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                pass  # no readable ts: it keeps its place in its source (the ledger rejects it)
            published = message.timestamp if 0 < message.timestamp < fetched_ms else fetched_ms
            self.merge.add(tp, last, rank, published, (tp, message, last))
        self.last_ts[tp] = last
        self.read[tp] = messages[-1].offset + 1
        self.fetched[tp] = max(self.fetched.get(tp, 0), self.read[tp])

    def standing(self) -> dict[TopicPartition, int]:
        """Where the task stands in each source: after the last record it copied; or, when it
        has copied every record it read there, where its consumer is, past the transaction
        markers of a source written transactionally (else the lag never reached 0 there)."""
        places = {}
        for tp, copied in self.copied.items():
            places[tp] = self.fetched.get(tp, copied) if copied >= self.read.get(tp, copied) else copied
        return places


class TermsVotes:
    """Versions of the program terms, in time on every task or late on one: each task's word on a
    version it copies, and the verdict once every task has spoken (the same on every partition)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def barrier_of(self, item: Any) -> float | None:
        """A version of the terms holds back what is at or past its effective until its verdict."""
        tp, message, _ = item
        if tp.topic != self.settings.topic_programs:
            return None
        version = _read_version(message.value)
        return None if version is None else version[1]

    def copied(self, task: _Task, message: Any) -> list[Send]:
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

    def verdicts(self, task: _Task) -> list[Send]:
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

    def heard(self, task: _Task, messages: list[Any]) -> None:
        """The tasks' words read from the acks topic: a task's first word on a version counts."""
        for message in messages:
            ack = wire.terms_acks.decode(message.value)
            task.acks.setdefault(ack.event_id, {}).setdefault(ack.task, ack.late)


class SequencerJob(Job[_Task]):
    """The sequencer, as the partition runtime runs it: task ``i`` is partition ``i`` of every client topic."""

    name = "sequencer"
    kind = "sequencer"
    unit_name = "task"

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.group = settings.sequencer_group
        self.topics = list(settings.client_topics)
        self.consumer_options: dict[str, Any] = {"partition_assignment_strategy": (RangePartitionAssignor,),
                                                 "fetch_max_wait_ms": FETCH_WAIT_MS}
        self.units: dict[int, _Task] = {}  # the runtime's, read here
        self.votes = TermsVotes(settings)
        self.consumer: AIOKafkaConsumer = None  # the runtime's, given with every turn
        self.precedence = precedence(settings)
        self.broadcast_partitions: list[TopicPartition] = []
        self.leaders: AIOKafkaClient = None  # made in the worker's event loop, by start

    async def start(self, units: dict[int, _Task]) -> None:
        settings = self.settings
        self.units = units
        counts = await partition_counts(settings, settings.broadcast_topics)
        self.broadcast_partitions = [TopicPartition(topic, p) for topic in settings.broadcast_topics
                                     for p in range(counts.get(topic, 0))]
        # Who leads each source partition (streams.worker.merge.Sources): a client of its own, its
        # metadata refreshed every LEADERS_EVERY_MS, since the consumers do not tell.
        self.leaders = AIOKafkaClient(**connect.connection(settings), metadata_max_age_ms=LEADERS_EVERY_MS)
        await self.leaders.bootstrap()
        self.leaders.set_topics(list(settings.client_topics) + list(settings.broadcast_topics))

    async def stop(self) -> None:
        if self.leaders is not None:
            await self.leaders.close()

    # -- one turn: take in what was read, copy what the merge lets out ---------------------------
    async def turn(self, batch: Batch, units: dict[int, _Task], consumer: AIOKafkaConsumer) -> Turned:
        self.consumer = consumer
        tasks = list(units.values())
        for tp, messages in batch.items():
            task = units.get(tp.partition)
            if task is not None:
                task.take(tp, messages, consumer, self.precedence[tp.topic])
        for task in tasks:
            await self._read_broadcast(task)
        broadcast = set(self.settings.broadcast_topics)
        for task in tasks:  # past the transaction markers (and aborted records) of sources written transactionally
            for tp in task.sources:
                reading = task.broadcast if tp.topic in broadcast else consumer
                if tp in reading.assignment():
                    task.fetched[tp] = max(task.fetched.get(tp, 0), await reading.position(tp))
        commits = []
        for task in tasks:
            heard = self._heard(task)
            for tp in task.sources:  # each source's answers seen every turn, a leader change among them
                heard(tp)
            sends = self._copies(task, heard) + self.votes.verdicts(task) + self._progress(task, heard)
            _observe_sources(task, self.settings, self.metrics)
            places = task.standing()
            if sends or places != task.placed:
                commits.append(self._commit(task, sends, places))
        return Turned(commits)

    async def _read_broadcast(self, task: _Task) -> None:
        """What the task's own consumer read of the broadcast topics, and the tasks' words on versions."""
        acks = self.settings.terms_acks_topic
        for tp, messages in (await task.broadcast.getmany(timeout_ms=0)).items():
            if tp.topic == acks:
                self.votes.heard(task, messages)
            else:
                task.take(tp, messages, task.broadcast, self.precedence[tp.topic])

    def _copies(self, task: _Task, heard: Any) -> list[Send]:
        """What the merge lets out, copied into the task's sequenced partition with its source position."""
        sends: list[Send] = []
        sequenced, broadcast = self.settings.sequenced_topic, set(self.settings.broadcast_topics)
        for tp, message, ts_us in task.merge.ready(task.sources, heard, self.votes.barrier_of):
            if tp.topic == self.settings.topic_programs:
                sends += self.votes.copied(task, message)
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
        return sends

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

    def waiting(self) -> list[tuple[str, int, str, float]]:
        """The source partitions the merge waits for now: (topic, partition, "unanswered" or
        "settling", seconds since their last answer counted)."""
        now_ms = time.time() * 1000
        return sorted((tp.topic, tp.partition, state, seconds) for task in list(self.units.values())
                      for tp, state, seconds in task.answers.waiting(now_ms))

    def _commit(self, task: _Task, sends: list[Send], places: dict[TopicPartition, int]) -> Commit:
        """A task's copies and its commits, in one transaction: its client partitions' places,
        each with the task's broadcast places as its commit metadata (every task has its own
        place in the broadcast topics)."""
        broadcast_topics = self.settings.broadcast_topics
        notes: dict[str, Any] = {f"{tp.topic}:{tp.partition}": offset for tp, offset in places.items()
                                 if tp.topic in broadcast_topics}
        notes["~clock"] = task.clock
        if task.pending:  # versions copied and waiting for their verdict (bus.task_notes)
            notes["~terms"] = task.pending
        metadata = orjson.dumps(notes).decode()
        positions = {tp: (offset, metadata) for tp, offset in places.items() if tp.topic not in broadcast_topics}
        task.placed = places

        def done() -> None:
            task.places = places

        return Commit(task.index, sends, positions, done)

    # -- tasks coming and going -------------------------------------------------------------------
    def takes(self, index: int, assigned: list[TopicPartition]) -> bool:
        """A task needs partition ``index`` of every client topic."""
        if {TopicPartition(topic, index) for topic in self.settings.client_topics} <= set(assigned):
            return True
        log.error("sequencer task %s was given only part of its partitions (%s): the client topics must "
                  "have the same number of partitions and every worker the same settings", index,
                  sorted(tp.topic for tp in assigned if tp.partition == index))
        return False

    async def open(self, partitions: list[int],
                   consumer: AIOKafkaConsumer) -> list[tuple[int, _Task, dict[TopicPartition, int]]]:
        self.consumer = consumer
        opened: list[tuple[int, _Task, dict[TopicPartition, int]]] = []
        try:
            for index in partitions:
                task, starts = await _open_task(self.settings, index, consumer, self.broadcast_partitions)
                opened.append((index, task, starts))
        except BaseException:
            for _, task, _ in opened:
                await task.close()
            raise
        return opened

def _observe_sources(task: _Task, settings: Settings, metrics: Metrics) -> None:
    """Log what ``Sources`` saw this turn: a source settled after a leader change, or given up."""
    answers = task.answers
    for tp, ms in answers.settled:
        log.info("source %s:%s answers from its new leader; merged again after %.1f s without it "
                 "(REWARDS_FAILOVER_SETTLE_MS %s)", tp.topic, tp.partition, ms / 1000, settings.failover_settle_ms)
    for tp in answers.given_up:
        log.warning("source %s:%s has not answered for %s s (REWARDS_SOURCE_WAIT_MAX_S): the sequencer merges on "
                    "without it; what it holds is taken as late input when it answers", tp.topic, tp.partition,
                    settings.source_wait_max_s)
        metrics.source_waits_given_up.inc()
    answers.settled.clear()
    answers.given_up.clear()


async def _open_task(settings: Settings, index: int, consumer: AIOKafkaConsumer,
                     broadcast_partitions: list[TopicPartition]) -> tuple[_Task, dict[TopicPartition, int]]:
    """Task ``index`` (its producer started by the runtime, which fenced its older holders and
    aborted what they left open), its broadcast consumer sought, and where it starts in each
    client partition."""
    sources = [TopicPartition(topic, index) for topic in settings.client_topics]
    task = _Task(index, reader(settings, fetch_max_wait_ms=FETCH_WAIT_MS), sources + broadcast_partitions,
                 EventTimeMerge(settings.order_grace_ms),
                 Sources(settings.failover_settle_ms, settings.source_wait_max_s * 1000))
    try:
        starts = await _starts(settings, task, sources, consumer, broadcast_partitions)
    except BaseException:
        await task.close()
        raise
    for tp, offset in starts.items():
        task.read[tp] = task.fetched[tp] = task.copied[tp] = task.places[tp] = task.placed[tp] = offset
        if tp.topic in settings.broadcast_topics:
            task.broadcast.seek(tp, offset)
    return task, {tp: offset for tp, offset in starts.items() if tp in sources}

async def _starts(settings: Settings, task: _Task, sources: list[TopicPartition], consumer: AIOKafkaConsumer,
                  broadcast_partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where the task left off: its commits on its client partitions, and their metadata for the
    broadcast partitions; where there is none, the beginning."""
    acks = TopicPartition(settings.terms_acks_topic, 0)
    await connect.start(task.broadcast)
    task.broadcast.assign(broadcast_partitions + [acks])
    admin = connect.admin(settings)
    await connect.start(admin)
    try:
        committed = await admin.list_consumer_group_offsets(settings.sequencer_group, partitions=sources)
    finally:
        await admin.close()
    places = task_places(settings, committed).get(task.index, {})
    notes = task_notes(settings, committed).get(task.index, {})
    task.clock = int(notes.get("~clock", 0))
    task.pending = {str(event_id): int(effective) for event_id, effective in notes.get("~terms", {}).items()}
    task.merge.barrier_us = min(task.pending.values(), default=math.inf)
    task.broadcast.seek(acks, (await task.broadcast.beginning_offsets([acks]))[acks])  # every word, each time
    starts = {tp: found.offset for tp, found in committed.items() if tp in sources and found.offset >= 0}
    starts.update((tp, offset) for tp, offset in places.items() if tp in broadcast_partitions)
    for tp in [tp for tp in task.sources if tp not in starts]:
        reading = task.broadcast if tp.topic in settings.broadcast_topics else consumer
        starts[tp] = (await reading.beginning_offsets([tp]))[tp]
    return starts


def _read_version(value: bytes | None) -> tuple[str, int] | None:
    """(event id, effective in µs) of a program.terms input that may take effect (after its own
    ts); None for anything else, which the ledger refuses by itself, every partition alike."""
    try:
        version = _version.decode(value or b"")
        ts_us, effective_us = parse_ts_us(version.ts), parse_ts_us(version.effective)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    return (version.id, effective_us) if effective_us > ts_us else None
