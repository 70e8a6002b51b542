"""One partition of the sequenced log applied to its clients: the worker's ledger.

Pure of Kafka and Faust: it reads and writes table-like mappings and returns what must be sent.
It runs on the processor loop (streams.worker.processor, through streams.worker.ledgerloop),
whose turn makes every record's effect exactly-once: the batch's records are taken (``take``),
and its outputs, dead letters and messages to the other processors (``effects``) go in one
Kafka transaction with its state writes to the changelog, the partition's shared state last,
as the batch's commit (``commit``).

A crash before the transaction commits aborts it: the batch is taken again from the state
before it, and gives the same outputs with the same ids (read_committed readers saw none of
the first). Records the shared state's offset covers are skipped. A record the sequencer
copied twice (possible only in a log written before its copies were transactional) has a new
offset but the same source position, remembered with the event id: it is skipped too, without
a dead letter. PartitionLedger says how state writes without their commit (left by versions
before transactions) are ignored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec

from handlers import cashback, terms, welcome
from handlers.engine import conclude_terms, process
from handlers.shared import Shared
from handlers.history import DEPOSIT, FILL, PARKED, SEEN, ClientHistory, fill_ts
from handlers.rules import Rules
from handlers.state import ClientState, FillRecord, Parked, Seen
from handlers.step import Step
from handlers.verdict import Refusal
from schemas.codec import BadInput, canonical_bytes, decode, encode_output, rejection
from schemas.inputs import ClientEvent, DayClosed, InputEvent, WelcomeClaim
from schemas.outputs import CommissionPayout, EventRejected, OutputEvent
from schemas.timefmt import day_of
from streams.worker import wire
from streams.worker.partitioning import partition_for
from streams.worker.wire import Send

SEP: Final = b"\x1f"
_SLOTS: Final = (b"c0" + SEP, b"c1" + SEP)
_NO_PREVIOUS: Final = bytes(4)  # a history entry's prev_len (see load_histories)
_client_codec_enc = msgspec.msgpack.Encoder()
_client_dec = msgspec.msgpack.Decoder(ClientState)
_shared_dec = msgspec.msgpack.Decoder(Shared)
_seen_dec = msgspec.msgpack.Decoder(Seen)
_parked_dec = msgspec.msgpack.Decoder(list[Parked])


@dataclass
class Record:
    """One record of the sequenced log, as the ledger needs it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


@dataclass
class Topics:
    ledger: str
    deadletter: str
    identity: str
    commissions: str
    sequenced: str


@dataclass
class Outbox:
    sends: list[Send] = field(default_factory=list)
    outputs: list[OutputEvent] = field(default_factory=list)  # also in sends; for metrics and tests
    skipped: int = 0  # records whose effects the state already had
    applied: Counter[str] = field(default_factory=Counter)  # input events applied, by type
    event_ts: list[int] = field(default_factory=list)  # their ts, in µs
    parked: int = 0    # inputs that had to wait for a prerequisite (handlers.parking)
    expired: int = 0   # parked inputs applied as they stood after the parking window
    appended: list[float] = field(default_factory=list)  # when the records taken were appended to the log, s


def output_send(output: OutputEvent, topics: Topics) -> Send:
    """Where an output goes: a rejection to the dead-letter topic, keyed by its client; the
    rest to the ledger topic, keyed by its client or partner."""
    if isinstance(output, EventRejected):
        topic, key = topics.deadletter, output.client_id
    elif isinstance(output, CommissionPayout):
        topic, key = topics.ledger, output.partner_id
    else:
        topic, key = topics.ledger, getattr(output, "client_id", None)
    return Send(topic, key.encode() if key else None, encode_output(output))


def _offset(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "big", signed=True)


def _stamp(offset: int) -> bytes:
    return offset.to_bytes(8, "big", signed=True)


class JournaledHistory:
    """A client's history in the worker: the offline engine's store (handlers.history
    ClientHistory), with every entry it changes noted for the changelog, where each is a key
    ``h client SEP kind id`` (``kind id``: handlers.history's kinds; the parked queue is ``p``)."""

    __slots__ = ("entries", "noted", "prefix")

    def __init__(self, entries: ClientHistory, noted: dict[bytes, tuple[ClientHistory, bytes, str]],
                 client_id: str) -> None:
        self.entries, self.noted, self.prefix = entries, noted, b"h" + client_id.encode() + SEP

    def _note(self, kind: bytes, key: str) -> None:
        self.noted[self.prefix + kind + key.encode()] = (self.entries, kind, key)

    def seen(self, event_id: str) -> Seen | None:
        return self.entries.seen(event_id)

    def remember(self, event_id: str, entry: Seen) -> None:
        self.entries.remember(event_id, entry)
        self._note(SEEN, event_id)

    def fill(self, fill_id: str) -> FillRecord | None:
        return self.entries.fill(fill_id)

    def put_fill(self, fill_id: str, record: FillRecord) -> None:
        self.entries.put_fill(fill_id, record)
        self._note(FILL, fill_id)

    def deposit(self, deposit_id: str) -> int | None:
        return self.entries.deposit(deposit_id)

    def put_deposit(self, deposit_id: str, ts_us: int) -> None:
        self.entries.put_deposit(deposit_id, ts_us)
        self._note(DEPOSIT, deposit_id)

    def parked(self) -> list[Parked]:
        return self.entries.parked()

    def put_parked(self, queue: list[Parked]) -> None:
        self.entries.put_parked(queue)
        self._note(PARKED, "")

    def prune(self, latest_ts_us: int, rules: Rules) -> None:
        """handlers.history's sweep; what it drops goes to the changelog as tombstones."""
        for kind, key in self.entries.maybe_prune(latest_ts_us, rules):
            self._note(kind, key)


def entry_value(entries: ClientHistory, kind: bytes, key: str) -> bytes | None:
    """An entry as the changelog holds it (None: it is gone, a tombstone)."""
    value: Any
    if kind == SEEN:
        value = entries.seen_ids.get(key)
    elif kind == FILL:
        return entries.fills.get(key)  # kept encoded
    elif kind == DEPOSIT:
        ts_us = entries.deposits.get(key)
        return None if ts_us is None else str(ts_us).encode()
    else:
        value = entries.queue or None
    return None if value is None else _client_codec_enc.encode(value)


def load_histories(table: MutableMapping[bytes, bytes], durable: int) -> dict[str, ClientHistory]:
    """Every client's history, read out of a recovered table (the ``h`` keys, which leave it).

    A value is ``offset(8) prev_len(4) prev new``. Versions before transactions could leave a
    batch half-written at the end of the changelog: an entry stamped after the last commit
    (``durable``) counts as the value it replaced. Today ``prev`` is always empty. Entries go
    into each client's store oldest first, the order its sweep expects."""
    found: dict[str, dict[bytes, list[tuple[int, str, Any]]]] = {}
    for key in [key for key in table if key[:1] == b"h"]:
        raw = table.pop(key)
        cut = key.index(SEP)
        client_id, kind, ident = key[1:cut].decode(), key[cut + 1:cut + 2], key[cut + 2:].decode()
        previous = int.from_bytes(raw[8:12], "big")
        value = raw[12:12 + previous] if _offset(raw) > durable else raw[12 + previous:]
        if not value:
            continue
        kinds = found.setdefault(client_id, {})
        if kind == SEEN:
            seen = _seen_dec.decode(value)
            kinds.setdefault(kind, []).append((seen.ts_us, ident, seen))
        elif kind == FILL:  # kept encoded (handlers.history)
            kinds.setdefault(kind, []).append((fill_ts(value), ident, value))
        elif kind == DEPOSIT:
            kinds.setdefault(kind, []).append((int(value), ident, int(value)))
        elif kind == PARKED:
            kinds[kind] = [(0, "", _parked_dec.decode(value))]
    histories = {}
    for client_id, kinds in found.items():
        entries = histories[client_id] = ClientHistory()
        for kind, target in ((SEEN, entries.seen_ids), (FILL, entries.fills), (DEPOSIT, entries.deposits)):
            for _, ident, value in sorted(kinds.get(kind, []), key=lambda item: item[0]):
                target[ident] = value
        if PARKED in kinds:
            entries.queue = kinds[PARKED][0][2]
    return histories


def too_large(head: bytes, oversize: bytes, origin: dict[str, Any]) -> OutputEvent:
    """The rejection of an input too large to carry (the sequencer's stand-in: its first bytes,
    and ``size:digest`` of the whole). Its id is the one its whole bytes would give."""
    size, digest = oversize.decode().split(":")
    bad = BadInput("too_large", f"the input is {int(size):,} bytes, over the largest the worker carries "
                   f"(REWARDS_MAX_INPUT_BYTES); raw holds its first {len(head):,} bytes", None, None, None)
    return rejection(bad, head, origin, f"event.rejected:-:{digest}", int(size), digest)


class DeferredIdentities:
    """The worker's IdentityPort: the claim waits on the client; the registry's partition is
    asked with a message, and its verdict comes back through the client's sequenced log."""

    def __init__(self, ledger: PartitionLedger) -> None:
        self.ledger = ledger

    def claim(self, client: ClientState, event: WelcomeClaim, step: Step) -> None:
        assert client.identity_hash is not None
        client.pending_claims.append(event.id)
        if self.ledger.replay:
            return  # a replay reads the verdicts already recorded in the log
        request = wire.IdentityRequest(client.identity_hash, client.client_id, canonical_bytes(event))
        self.ledger.outbox.sends.append(Send(self.ledger.topics.identity, client.identity_hash.encode(),
                                             wire.encode(request)))


class RemoteCommissions:
    """The worker's CommissionBook: a partition's share of a day's commissions goes, per
    partner, to the aggregator partition that partner's key lands in."""

    def __init__(self, ledger: PartitionLedger) -> None:
        self.ledger = ledger

    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal], overrides: dict[str, Decimal]) -> None:
        ledger = self.ledger
        shares: list[dict[str, str]] = [{} for _ in range(ledger.partitions)]
        override_shares: list[dict[str, str]] = [{} for _ in range(ledger.partitions)]
        for partner_id, amount in due.items():
            shares[partition_for(partner_id.encode(), ledger.partitions)][partner_id] = str(amount)
        for partner_id, amount in overrides.items():
            override_shares[partition_for(partner_id.encode(), ledger.partitions)][partner_id] = str(amount)
        for target, share in enumerate(shares):  # every aggregator partition hears from every partition
            report = wire.CommissionReport(event.id, event.ts, event.date, ledger.partition, share,
                                           override_shares[target])
            ledger.outbox.sends.append(Send(ledger.topics.commissions, event.id.encode(),
                                            wire.encode(report), partition=target))


class PartitionLedger:
    """The ledger of one partition of the sequenced log, over the worker's one state table.

    The table holds, for this partition: ``s<partition>``, its shared state, stamped with the
    last sequenced offset applied (8 bytes first); every client's state, ``c0 SEP client``,
    stamped with the last offset of the batch that wrote it; and the clients' history entries
    (JournaledHistory), which are read out of the table into the clients' stores when the
    partition is recovered, swept by event time, and written back as they change, a swept one as
    a tombstone. A batch's writes go to the table's changelog in one partition, in order, with the
    shared state last: that record is the batch's commit.

    Versions before transactions could leave a batch half-written at the end of the changelog,
    so they kept each client's state in two slots, ``c0`` and ``c1``, and never wrote the one
    holding its counted state. Such a changelog is still read: a slot or history entry stamped
    beyond the shared state's offset does not count, the newer slot counts, and a client's first
    write moves it to ``c0`` with a tombstone for ``c1``.

    Records are applied in offset order: one already applied (offset at or below ``last``) is
    skipped. The offsets of this log have holes where a transaction's marker or an aborted
    transaction's records stand (the identity registry writes verdicts into it transactionally);
    a batch fetched before the consumer was sought to ``last + 1`` (at an assignment: it could
    start in the middle of the log and skip a client's registration for good) is dropped by the
    loop, which counts rebalances (streams.worker.processor)."""

    def __init__(self, partition: int, partitions: int, rules: Rules, topics: Topics,
                 table: MutableMapping[bytes, bytes], replay: bool = False, log_writes: bool = False) -> None:
        self.partition, self.partitions, self.rules, self.topics = partition, partitions, rules, topics
        self.table = table
        self.replay = replay
        # With log_writes, flush_state also returns every write, for the caller to append to the
        # table's changelog itself (the worker: ``commit``, whose writes the processor loop sends
        # in the turn's transaction, streams.worker.processor).
        self.log_writes = log_writes
        self.shared_key = b"s" + str(partition).encode()
        # The read model: views are written to Redis after the batch's state, so a worker killed
        # in between leaves them unwritten. The partition keeps the offset through which its
        # views are known to be in Redis; on recovery the clients written after it are sent again.
        self.views_key = b"v" + str(partition).encode()
        raw_views = table.get(self.views_key)
        self.views_through = self.views_written = -1 if raw_views is None else _offset(raw_views)
        raw_shared = table.get(self.shared_key)
        self.shared = Shared() if raw_shared is None else _shared_dec.decode(raw_shared[8:])
        # the last offset whose effects are in the table, and the last one applied in memory
        self.durable = self.last = -1 if raw_shared is None else _offset(raw_shared)
        self.cache: dict[str, ClientState] = {}
        self.dirty: dict[str, int] = {}  # client id -> offset of the last record that changed it
        self.histories = load_histories(table, self.durable)
        self.noted: dict[bytes, tuple[ClientHistory, bytes, str]] = {}  # history entries changed since the flush
        self.progress: wire.Progress | None = None  # the last Progress mark applied
        self.progress_sent = -1  # the offset of the last mark sent on to the identity registry
        self.changed: dict[str, int] = {}  # clients written since the last turn, with their versions
        self.identities = DeferredIdentities(self)
        self.commissions = RemoteCommissions(self)
        self.outbox = Outbox()

    def start_at(self, offset: int) -> None:
        """A partition with nothing applied: its first record is at ``offset`` (the log's first
        one; more than 0 once the log's start has been deleted)."""
        assert self.last == self.durable == -1
        self.last = self.durable = offset - 1

    # -- the ClientStore of handlers.engine ---------------------------------------------------
    def get(self, client_id: str) -> ClientState | None:
        client = self.cache.get(client_id)
        if client is None:
            found, stamp = None, -1
            for slot in (0, 1):
                raw = self.table.get(_SLOTS[slot] + client_id.encode())
                if raw is not None and stamp < _offset(raw) <= self.durable:
                    found, stamp = raw, _offset(raw)
            if found is not None:
                client = self.cache[client_id] = _client_dec.decode(found[8:])
        return client

    def put(self, client: ClientState) -> None:
        self.cache[client.client_id] = client
        self.dirty[client.client_id] = self.last
        self.history(client.client_id).prune(client.latest_ts_us, self.rules)  # as the offline engine's store does

    def history(self, client_id: str) -> JournaledHistory:
        entries = self.histories.get(client_id)
        if entries is None:
            entries = self.histories[client_id] = ClientHistory()
        return JournaledHistory(entries, self.noted, client_id)

    # -- applying records ----------------------------------------------------------------------
    def take_outbox(self) -> Outbox:
        outbox, self.outbox = self.outbox, Outbox()
        return outbox

    def handle(self, record: Record) -> None:
        """Apply one record (see the class). The offsets after ``last`` may have holes
        (transaction markers, aborted records); a batch read before the consumer was sought to
        ``last + 1`` is the loop's to drop (streams.worker.processor)."""
        if record.offset <= self.last:
            self.outbox.skipped += 1
            return
        self.last = record.offset
        kind = record.headers.get(wire.H_KIND, wire.KIND_INPUT)
        if kind == wire.KIND_VERDICT:
            self._verdict(wire.verdicts.decode(record.value))
            return
        if kind == wire.KIND_TERMS:  # the sequencer's verdict on a version: the same on every partition
            verdict = wire.terms_verdicts.decode(record.value)
            for output in conclude_terms(self.shared, verdict.event_id, verdict.in_time, self.partition == 0):
                self._emit(output)
            return
        if kind == wire.KIND_PROGRESS:  # for the identity registry, once what came before is applied
            mark = wire.progress_reports.decode(record.value)
            self.progress = wire.Progress(mark.partition, mark.clock_us, mark.caught_up, record.offset)
            return
        source = record.headers[wire.H_SOURCE]
        broadcast = kind == wire.KIND_BROADCAST
        oversize = record.headers.get(wire.H_OVERSIZE)
        if oversize is not None:  # an input too large to carry: its first bytes stand in for it
            if not broadcast or self.partition == 0:  # one dead letter for a broadcast
                self._emit(too_large(record.value, oversize, wire.Source.parse(source).as_dict()))
            return
        key = record.key

        def placement(event: InputEvent) -> Refusal | bool:
            if isinstance(event, ClientEvent):
                if broadcast:  # a client's event published to a broadcast topic: only its own partition applies it
                    return partition_for(event.client_id.encode(), self.partitions) == self.partition
                if key != event.client_id.encode():
                    return Refusal("invalid_field", f"the message key {key!r} is not the event's client_id "
                                   f"{event.client_id!r}")
                return True
            if not broadcast:
                return Refusal("invalid_field", f"{event.__struct_config__.tag} must be published to its "
                               "broadcast topic, so that every partition sees it")
            return True

        # one dead letter for a bad broadcast, not one per partition
        applied = process(self, self.shared, self.rules, self.identities, self.commissions, record.value,
                          wire.Source.parse(source).as_dict(), source.decode(), not broadcast or self.partition == 0,
                          placement)
        outbox = self.outbox
        if applied.refusal is not None and applied.refusal.reason == "recopy":
            outbox.skipped += 1
            return
        if applied.event is not None:
            if not broadcast or self.partition == 0:  # every partition applies a broadcast; one counts it
                outbox.applied[str(applied.event.__struct_config__.tag)] += 1
                outbox.event_ts.append(applied.ts_us)
            outbox.parked += applied.parked
            outbox.expired += applied.expired
        for output in applied.outputs:
            self._emit(output)

    def _verdict(self, verdict: wire.Verdict) -> None:
        client = self.get(verdict.client_id)
        decoded = decode(verdict.claim)
        assert not isinstance(decoded, BadInput) and isinstance(decoded.event, WelcomeClaim)
        claim = decoded.event
        if client is None or claim.id not in client.pending_claims:
            self.outbox.skipped += 1  # a verdict delivered twice
            return
        client.pending_claims.remove(claim.id)
        step = Step(event=claim, ts_us=decoded.ts_us, date=day_of(decoded.ts_us),
                    rules=terms.rules_at(self.shared.terms, self.rules, decoded.ts_us))
        welcome.finalize(client, claim, verdict.identity_free, step)
        cashback.assert_conserved(client)
        self.put(client)
        for output in step.outputs:
            self._emit(output)

    def _emit(self, output: OutputEvent) -> None:
        self.outbox.outputs.append(output)
        self.outbox.sends.append(output_send(output, self.topics))

    # -- on the processor loop (streams.worker.processor) ------------------------------------------------
    def take(self, record: Any, now_ms: float = 0.0) -> None:
        """One record of the sequenced log (aiokafka's ConsumerRecord)."""
        self.outbox.appended.append(record.timestamp / 1000)
        self.handle(Record(self.partition, record.offset, record.key, record.value, dict(record.headers or ())))

    def effects(self, now_ms: float = 0.0) -> list[Send]:
        """The outbox's sends, then the last Progress mark applied, when new, to every identity
        registry partition (streams.worker.registry): after the identity requests before it (a
        partition's records keep their order)."""
        sends = self.outbox.sends
        mark = self.progress
        if mark is not None and mark.offset != self.progress_sent:
            self.progress_sent = mark.offset
            report = wire.encode(mark)
            sends = sends + [Send(self.topics.identity, None, report, registry, [(wire.H_KIND, wire.KIND_PROGRESS)])
                             for registry in range(self.partitions)]
        return sends

    def commit(self, now_ms: float = 0.0) -> list[tuple[bytes, bytes | None]]:
        changed, writes = self.flush_state()
        self.changed.update(changed)
        return writes

    def lag_offset(self) -> int:
        return self.last + 1

    # -- after the outbox is safely sent -----------------------------------------------------------
    def flush_state(self) -> tuple[dict[str, int], list[tuple[bytes, bytes | None]]]:
        """Write what changed to the table, in the order the changelog must receive it, the
        shared state last. Returns the changed clients with their versions, and (with
        ``log_writes``) the writes as (key, value)."""
        if self.last == self.durable:
            return {}, []
        writes: list[tuple[bytes, bytes | None]] = []
        log = writes.append if self.log_writes else None
        table, stamp = self.table, _stamp(self.last)
        if log:  # the entries live in the clients' stores, not in the table
            for key, (entries, kind, ident) in self.noted.items():
                value = entry_value(entries, kind, ident)
                log((key, None if value is None else stamp + _NO_PREVIOUS + value))
        for client_id in self.dirty:
            key, value = _SLOTS[0] + client_id.encode(), stamp + _client_codec_enc.encode(self.cache[client_id])
            table[key] = value
            if log:
                log((key, value))
            second = _SLOTS[1] + client_id.encode()
            if table.pop(second, None) is not None and log:  # an older version's second slot: gone
                log((second, None))
        if self.views_through != self.views_written:
            key, value = self.views_key, _stamp(self.views_through)
            table[key] = value
            self.views_written = self.views_through
            if log:
                log((key, value))
        value = stamp + _client_codec_enc.encode(self.shared)
        table[self.shared_key] = value
        if log:
            log((self.shared_key, value))
        self.durable = self.last
        changed, self.dirty, self.noted = self.dirty, {}, {}
        return changed, writes

    def views_published(self) -> None:
        """Every view of what this partition has flushed is in Redis (kept with the next flush)."""
        self.views_through = self.durable

    def unpublished(self) -> list[tuple[ClientState, int]]:
        """The clients whose counted state was written after ``views_through``, with that state's
        stamp as the view's version: their views may not have reached Redis."""
        stamps: dict[bytes, int] = {}
        for key, raw in self.table.items():
            if key[:3] in _SLOTS and self.views_through < _offset(raw) <= self.durable:
                stamps[key[3:]] = max(stamps.get(key[3:], -1), _offset(raw))
        found = []
        for client_key in sorted(stamps):
            client = self.get(client_key.decode())
            if client is not None:
                found.append((client, stamps[client_key]))
        return found

    def forget_cache(self) -> None:
        """Keep the object cache bounded: state is always in the table."""
        assert not self.dirty and not self.noted
        self.cache.clear()
