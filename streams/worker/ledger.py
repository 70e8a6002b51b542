"""One partition of the sequenced log applied to its clients: the ledger's dispatcher, which reads each
record's kind and hands it to the engine (handlers.engine), pure of Kafka and Faust. Touch it to
change how a kind of record is applied; state is kept by streams.worker.ledgerstore and messages
are collected by streams.worker.ports.

It runs on the
partition runtime (streams.worker.processor, through streams.worker.ledgerloop): a turn takes the
records (``take``), and its outputs, dead letters and messages to the other processors go in one
Kafka transaction with its state writes, the partition's shared state last, as the turn's commit
(``turn``). A crash before the transaction commits aborts it: the batch is taken again from the
state before it and gives the same outputs with the same ids (read_committed readers saw none of
the first). Records the shared state's offset covers are skipped.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from handlers.engine import Partition, Received, conclude_claim, conclude_terms, decide
from handlers.rules import Rules
from handlers.sharedstate import Shared
from handlers.verdict import Refusal
from schemas.codec import BadInput, rejection
from schemas.inputs import ClientEvent, InputEvent
from schemas.outputs import OutputEvent
from streams.worker import wire
from streams.worker.ledgerstore import LedgerStore
from streams.worker.partitioning import partition_for
from streams.worker.ports import DeferredIdentities, Outbox, RemoteCommissions, Topics, output_send
from streams.worker.processor import Turn
from streams.worker.wire import Send

__all__ = ["PartitionLedger", "Record", "Topics"]


@dataclass
class Record:
    """One record of the sequenced log, as the ledger needs it."""

    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class Placement:
    """Whether an input read from this partition belongs to it: a client's event keyed by its client
    (or, published to a broadcast topic, applied by its own partition only); anything else broadcast."""

    __slots__ = ("key", "broadcast", "partition", "partitions")

    def __init__(self, key: bytes | None, broadcast: bool, partition: int, partitions: int) -> None:
        self.key, self.broadcast, self.partition, self.partitions = key, broadcast, partition, partitions

    def __call__(self, event: InputEvent) -> Refusal | bool:
        if isinstance(event, ClientEvent):
            if self.broadcast:
                return partition_for(event.client_id.encode(), self.partitions) == self.partition
            if self.key != event.client_id.encode():
                return Refusal("invalid_field", f"the message key {self.key!r} is not the event's client_id "
                               f"{event.client_id!r}")
            return True
        if not self.broadcast:
            return Refusal("invalid_field", f"{event.__struct_config__.tag} must be published to its "
                           "broadcast topic, so that every partition sees it")
        return True


def too_large(head: bytes, oversize: bytes, origin: dict[str, Any]) -> OutputEvent:
    """The rejection of an input too large to carry (the sequencer's stand-in: its first bytes,
    and ``size:digest`` of the whole). Its id is the one its whole bytes would give."""
    size, digest = oversize.decode().split(":")
    bad = BadInput("too_large", f"the input is {int(size):,} bytes, over the largest the worker carries "
                   f"(REWARDS_MAX_INPUT_BYTES); raw holds its first {len(head):,} bytes", None, None, None)
    return rejection(bad, head, origin, f"event.rejected:-:{digest}", int(size), digest)


class PartitionLedger:
    """The ledger of one partition of the sequenced log (see the module). ``replay``: the log is
    read again offline (``rewards replay --from-kafka``): the verdicts are in it, nothing is asked."""

    def __init__(self, partition: int, partitions: int, rules: Rules, topics: Topics,
                 table: MutableMapping[bytes, bytes], replay: bool = False) -> None:
        self.partition, self.partitions, self.topics = partition, partitions, topics
        self.store = store = LedgerStore(partition, rules, table)
        self.shared: Shared = store.shared  # the same object for the partition's life
        self.outbox = Outbox()
        self.engine = Partition(store, store.shared, rules, DeferredIdentities(self.outbox, topics.identity, replay),
                                RemoteCommissions(self.outbox, topics.commissions, partition, partitions))
        self.progress: wire.Progress | None = None  # the last Progress mark applied
        self.progress_sent = -1  # the offset of the last mark sent on to the identity registry

    @property
    def last(self) -> int:
        return self.store.last

    def start_at(self, offset: int) -> None:
        self.store.start_at(offset)

    def handle(self, record: Record) -> None:
        """Apply one record. The offsets after ``last`` may have holes (transaction markers,
        aborted records); a batch read before the consumer was sought to ``last + 1`` is the
        runtime's to drop (streams.worker.runtime)."""
        if record.offset <= self.store.last:
            self.outbox.skipped += 1
            return
        self.store.last = record.offset
        kind = record.headers.get(wire.H_KIND, wire.KIND_INPUT)
        if kind == wire.KIND_VERDICT:  # the identity registry's, on a welcome claim
            verdict = wire.verdicts.decode(record.value)
            concluded = conclude_claim(self.engine, verdict.client_id, verdict.claim, verdict.identity_free)
            if concluded is None:
                self.outbox.skipped += 1  # a verdict delivered twice
            else:
                self._emit(concluded.outputs)
        elif kind == wire.KIND_TERMS:  # the sequencer's verdict on a version: the same on every partition
            verdict_on = wire.terms_verdicts.decode(record.value)
            self._emit(conclude_terms(self.store.shared, verdict_on.event_id, verdict_on.in_time, self.partition == 0))
        elif kind == wire.KIND_PROGRESS:  # for the identity registry, once what came before is applied
            mark = wire.progress_reports.decode(record.value)
            self.progress = wire.Progress(mark.partition, mark.clock_us, mark.caught_up, record.offset)
        else:
            self._input(record, kind == wire.KIND_BROADCAST)

    def _input(self, record: Record, broadcast: bool) -> None:
        """An input copied by the sequencer: every partition applies a broadcast, one (0) counts it
        and reports its rejection."""
        source = record.headers[wire.H_SOURCE]
        origin = wire.Source.parse(source).as_dict()
        counted = not broadcast or self.partition == 0
        oversize = record.headers.get(wire.H_OVERSIZE)
        if oversize is not None:  # an input too large to carry: its first bytes stand in for it
            self._emit([too_large(record.value, oversize, origin)] if counted else [])
            return
        placement = Placement(record.key, broadcast, self.partition, self.partitions)
        applied = decide(self.engine, Received(record.value, origin, source.decode(), counted, placement))
        outbox = self.outbox
        if applied.refusal is not None and applied.refusal.reason == "recopy":
            outbox.skipped += 1
            return
        if applied.event is not None:
            if counted:
                outbox.applied[str(applied.event.__struct_config__.tag)] += 1
                outbox.event_ts.append(applied.ts_us)
            outbox.parked += applied.parked
            outbox.expired += applied.expired
        self._emit(applied.outputs)

    def _emit(self, outputs: list[OutputEvent]) -> None:
        for output in outputs:
            self.outbox.outputs.append(output)
            self.outbox.sends.append(output_send(output, self.topics))

    # -- on the partition runtime (streams.worker.processor) ---------------------------------------
    def take(self, record: Any, now_ms: float = 0.0) -> None:
        """One record of the sequenced log (aiokafka's ConsumerRecord)."""
        self.outbox.appended.append(record.timestamp / 1000)
        self.handle(Record(record.offset, record.key, record.value, dict(record.headers or ())))

    def turn(self, now_ms: float = 0.0) -> Turn:
        """The outbox's sends, then the last Progress mark applied, when new, to every identity
        registry partition (streams.worker.registry: after the identity requests before it, a
        partition's records keep their order); the state writes; the outbox, emptied, as the report,
        with the clients the writes changed."""
        outbox = self.outbox.take()
        sends = outbox.sends
        mark = self.progress
        if mark is not None and mark.offset != self.progress_sent:
            self.progress_sent = mark.offset
            report = wire.encode(mark)
            sends = sends + [Send(self.topics.identity, None, report, registry, [(wire.H_KIND, wire.KIND_PROGRESS)])
                             for registry in range(self.partitions)]
        outbox.changed, writes = self.store.flush()
        return Turn(sends, writes, self.store.last + 1, outbox)
