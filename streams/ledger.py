"""One partition of the sequenced log applied to its clients: the worker's ledger.

Pure of Kafka and Faust: it reads and writes table-like mappings and returns what must be sent.
The agent in ``streams.app`` feeds it batches and carries out the effects, in an order that
makes the whole thing effectively-once on top of at-least-once delivery:

1. apply every record of the batch (state changes stay in this object);
2. send the outputs, dead letters and agent messages, and wait until Kafka has them;
3. only then write the changed state to the tables, and (the worker) append those writes to the
   tables' changelogs, again waiting until Kafka has them: history entries, then client
   states, then the partition's shared state (TableHistory says why in this order);
4. let Faust commit the input offsets (it flushes the producer first).

A crash before 3 replays the batch: the same outputs are sent again with the same ids. A crash
after 3 replays records whose effects the state already holds: each client remembers the offset
of the last sequenced record applied to it (``ClientState.applied_offset``; all of a client's
records sit in one partition, in order), and skips them. A record the sequencer copied twice
(it crashed between copying and committing) has a new offset but the same source position,
remembered with the event id: it is skipped too, without a dead letter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
import orjson

from handlers import cashback, welcome
from handlers.engine import Shared, apply, refused, rejection_id
from handlers.history import History
from handlers.rules import Rules
from handlers.state import ClientState, FillRecord, Seen
from handlers.step import Step
from handlers.verdict import Refusal
from schemas.codec import BadInput, canonical_bytes, decode, rejection
from schemas.inputs import ClientEvent, DayClosed, WelcomeClaim
from schemas.outputs import CommissionPayout, EventRejected, OutputEvent
from schemas.timefmt import day_of
from streams import wire
from streams.partitioning import partition_for

SEP: Final = b"\x1f"
_client_codec_enc = msgspec.msgpack.Encoder()
_client_dec = msgspec.msgpack.Decoder(ClientState)
_shared_dec = msgspec.msgpack.Decoder(Shared)
_seen_dec = msgspec.msgpack.Decoder(Seen)
_fill_dec = msgspec.msgpack.Decoder(FillRecord)


@dataclass(slots=True)
class Send:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


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


class TableHistory:
    """A client's History as keys of the history table: ``client SEP kind id``.

    Each value starts with the sequenced offset of the record that wrote it (8 bytes), and an
    entry in the table counts only when the client's state has applied that record (entries
    written by the batch under way always count). A batch's writes reach the changelogs history first, client state
    last: when a worker dies between the two, the entries without their client state are
    ignored after recovery, and the record that wrote them is applied again, as if they had
    never been written."""

    __slots__ = ("ledger", "client_id", "prefix")

    def __init__(self, ledger: PartitionLedger, client_id: str) -> None:
        self.ledger = ledger
        self.client_id = client_id
        self.prefix = client_id.encode() + SEP

    def _get(self, key: bytes) -> bytes | None:
        ledger = self.ledger
        raw = ledger.history_writes.get(key)
        if raw is not None:  # written by this batch, in step with the client state in memory
            return raw[8:]
        raw = ledger.history_table.get(key)
        if raw is None:
            return None
        client = ledger.get(self.client_id)
        if client is None or int.from_bytes(raw[:8], "big", signed=True) > client.applied_offset:
            return None  # its record's effects never reached the client state
        return raw[8:]

    def _put(self, key: bytes, value: bytes) -> None:
        self.ledger.history_writes[key] = self.ledger._offset.to_bytes(8, "big", signed=True) + value

    def seen(self, event_id: str) -> Seen | None:
        raw = self._get(self.prefix + b"s" + event_id.encode())
        return None if raw is None else _seen_dec.decode(raw)

    def remember(self, event_id: str, entry: Seen) -> None:
        self._put(self.prefix + b"s" + event_id.encode(), _client_codec_enc.encode(entry))

    def fill(self, fill_id: str) -> FillRecord | None:
        raw = self._get(self.prefix + b"f" + fill_id.encode())
        return None if raw is None else _fill_dec.decode(raw)

    def put_fill(self, fill_id: str, record: FillRecord) -> None:
        self._put(self.prefix + b"f" + fill_id.encode(), _client_codec_enc.encode(record))

    def deposit(self, deposit_id: str) -> int | None:
        raw = self._get(self.prefix + b"d" + deposit_id.encode())
        return None if raw is None else int(raw)

    def put_deposit(self, deposit_id: str, ts_us: int) -> None:
        self._put(self.prefix + b"d" + deposit_id.encode(), str(ts_us).encode())


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

    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal]) -> None:
        ledger = self.ledger
        shares: list[dict[str, str]] = [{} for _ in range(ledger.partitions)]
        for partner_id, amount in due.items():
            shares[partition_for(partner_id.encode(), ledger.partitions)][partner_id] = str(amount)
        for target, share in enumerate(shares):  # every aggregator partition hears from every partition
            report = wire.CommissionReport(event.id, event.ts, event.date, ledger.partition, share)
            ledger.outbox.sends.append(Send(ledger.topics.commissions, event.id.encode(),
                                            wire.encode(report), partition=target))


class PartitionLedger:
    def __init__(self, partition: int, partitions: int, rules: Rules, topics: Topics,
                 clients: MutableMapping[bytes, bytes], history: MutableMapping[bytes, bytes],
                 shared: MutableMapping[bytes, bytes], replay: bool = False, log_writes: bool = False) -> None:
        self.partition, self.partitions, self.rules, self.topics = partition, partitions, rules, topics
        self.clients_table, self.history_table, self.shared_table = clients, history, shared
        self.replay = replay
        # With log_writes, flush_state also returns every write, for the caller to append to the
        # tables' changelogs itself (the worker: see Worker._ledger_batch).
        self.log_writes = log_writes
        self.shared_key = b"shared" + SEP + str(partition).encode()
        raw_shared = shared.get(self.shared_key)
        self.shared = Shared() if raw_shared is None else _shared_dec.decode(raw_shared)
        self.cache: dict[str, ClientState] = {}
        self.dirty: dict[str, int] = {}  # client id -> offset of the last record that changed it
        self.history_writes: dict[bytes, bytes] = {}
        self.shared_dirty = False
        self.identities = DeferredIdentities(self)
        self.commissions = RemoteCommissions(self)
        self.outbox = Outbox()
        self._offset = -1

    # -- the ClientStore of handlers.engine ---------------------------------------------------
    def get(self, client_id: str) -> ClientState | None:
        client = self.cache.get(client_id)
        if client is None:
            raw = self.clients_table.get(client_id.encode())
            if raw is not None:
                client = self.cache[client_id] = _client_dec.decode(raw)
        return client

    def put(self, client: ClientState) -> None:
        self.cache[client.client_id] = client
        self.dirty[client.client_id] = self._offset

    def history(self, client_id: str) -> History:
        return TableHistory(self, client_id)

    # -- applying records ----------------------------------------------------------------------
    def take_outbox(self) -> Outbox:
        outbox, self.outbox = self.outbox, Outbox()
        return outbox

    def handle(self, record: Record) -> None:
        self._offset = record.offset
        kind = record.headers.get(wire.H_KIND, wire.KIND_INPUT)
        if kind == wire.KIND_VERDICT:
            self._verdict(wire.verdicts.decode(record.value))
            return
        source = wire.Source.parse(record.headers[wire.H_SOURCE])
        decoded = decode(record.value)
        if isinstance(decoded, BadInput):
            if kind == wire.KIND_BROADCAST and self.partition != 0:
                return  # one dead letter for a bad broadcast, not one per partition
            self._dead_letter(decoded, record.value, source)
            return
        event = decoded.event
        if isinstance(event, ClientEvent):
            if kind == wire.KIND_BROADCAST:
                # A client's event published to a broadcast topic: only its own partition applies it.
                if partition_for(event.client_id.encode(), self.partitions) != self.partition:
                    return
            elif record.key != event.client_id.encode():
                self._refuse(event, "invalid_field", f"the message key {record.key!r} is not the "
                             f"event's client_id {event.client_id!r}", record.value, source)
                return
            client = self.get(event.client_id)
            if client is not None and client.applied_offset >= record.offset:
                self.outbox.skipped += 1
                return
        else:
            if kind != wire.KIND_BROADCAST:
                self._refuse(event, "invalid_field", f"{event.__struct_config__.tag} must be published "
                             "to its broadcast topic, so that every partition sees it", record.value, source)
                return
            if self.shared.applied_offset >= record.offset:
                self.outbox.skipped += 1
                return
        step, refusal = apply(self, self.shared, event, decoded.ts_us, self.rules, self.identities,
                              self.commissions, record.headers[wire.H_SOURCE].decode())
        self.outbox.applied[event.__struct_config__.tag] += 1
        self.outbox.event_ts.append(decoded.ts_us)
        if isinstance(event, ClientEvent):
            client = self.get(event.client_id)
            if client is not None:
                client.applied_offset = record.offset
                self.put(client)
        else:
            self.shared.applied_offset = record.offset
            self.shared_dirty = True
        if refusal is not None and refusal.reason == "recopy":
            self.outbox.skipped += 1
            return
        if refusal is not None and (kind != wire.KIND_BROADCAST or self.partition == 0):
            # Every partition refuses a bad broadcast alike; one dead letter tells it.
            self._emit(refused(event, refusal, record.value, source.as_dict()))
        for output in step.outputs:
            self._emit(output)
        if step.commissions:
            self.shared_dirty = True

    def _verdict(self, verdict: wire.Verdict) -> None:
        client = self.get(verdict.client_id)
        decoded = decode(verdict.claim)
        assert not isinstance(decoded, BadInput) and isinstance(decoded.event, WelcomeClaim)
        claim = decoded.event
        if client is None or claim.id not in client.pending_claims:
            self.outbox.skipped += 1  # a verdict delivered twice
            return
        client.pending_claims.remove(claim.id)
        client.applied_offset = max(client.applied_offset, self._offset)
        step = Step(event=claim, ts_us=decoded.ts_us, date=day_of(decoded.ts_us), rules=self.rules)
        welcome.finalize(client, claim, verdict.identity_free, step)
        cashback.assert_conserved(client)
        self.put(client)
        for output in step.outputs:
            self._emit(output)

    def _refuse(self, event: Any, reason: Any, error: str, raw: bytes, source: wire.Source) -> None:
        self._emit(refused(event, Refusal(reason, error), raw, source.as_dict()))

    def _dead_letter(self, bad: BadInput, raw: bytes, source: wire.Source) -> None:
        self._emit(rejection(bad, raw, source.as_dict(), rejection_id(bad.cause_id, raw)))

    def _emit(self, output: OutputEvent) -> None:
        self.outbox.outputs.append(output)
        if isinstance(output, EventRejected):
            topic = self.topics.deadletter
            key = output.client_id
        elif isinstance(output, CommissionPayout):
            topic, key = self.topics.ledger, output.partner_id
        else:
            topic, key = self.topics.ledger, getattr(output, "client_id", None)
        self.outbox.sends.append(Send(topic, key.encode() if key else None, orjson.dumps(output)))

    # -- after the outbox is safely sent -----------------------------------------------------------
    def flush_state(self) -> tuple[dict[str, int], list[tuple[str, bytes, bytes]]]:
        """Write what changed to the tables. Returns the changed clients with their versions,
        and (with ``log_writes``) the writes as (table, key, value)."""
        writes: list[tuple[str, bytes, bytes]] = []
        log = writes.append if self.log_writes else None
        # In this order: a client's history entries count only once its state has the record
        # that wrote them (TableHistory), so they go before the client state.
        history = self.history_table
        for key, value in self.history_writes.items():
            history[key] = value
            if log:
                log(("history", key, value))
        clients = self.clients_table
        for client_id in self.dirty:
            key, value = client_id.encode(), _client_codec_enc.encode(self.cache[client_id])
            clients[key] = value
            if log:
                log(("clients", key, value))
        if self.shared_dirty:
            value = _client_codec_enc.encode(self.shared)
            self.shared_table[self.shared_key] = value
            if log:
                log(("shared", self.shared_key, value))
        changed, self.dirty, self.history_writes, self.shared_dirty = self.dirty, {}, {}, False
        return changed, writes

    def forget_cache(self) -> None:
        """Keep the object cache bounded: state is always in the tables."""
        assert not self.dirty and not self.history_writes
        self.cache.clear()

