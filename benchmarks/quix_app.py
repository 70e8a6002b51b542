"""The contender of bench-worker: the same rules in a Quix Streams app, as a team would write it
with that framework. It reads one topic holding every input, keyed by client, already in order
(bench-worker publishes it so: what the worker's sequencer makes of the source topics), applies
each input with the engine's own ``handlers.engine.decide`` to the client's state kept in Quix
state (RocksDB, with its changelog topics), and writes the outputs to one topic, with exactly-once
processing (Kafka transactions, as the worker).

What it leaves out, and so does not pay for: the sequencer and its event-time merge, the read
model, metrics, and anything across partitions: partner plans go to one in-process ``Shared``,
and day closes are skipped (paying rebates needs every client's state, which keyed Quix state
does not reach). bench-worker times trade fills, which need none of it.

It runs in a virtualenv of its own (bench-worker makes it: quixstreams pins its own versions of
libraries the project locks too), with the repository on PYTHONPATH:

    python -m benchmarks.quix_app BOOTSTRAP GROUP INPUT_TOPIC OUTPUT_TOPIC STATE_DIR
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import orjson
from quixstreams import Application
from quixstreams.state.rocksdb import RocksDBOptions

from handlers.engine import PartnerLedgers, Partition, Received, decide, parked_event
from handlers.sharedstate import Shared
from handlers.history import DEPOSIT, FILL, SEEN, ClientHistory, Journal
from handlers.rules import Rules
from handlers.clientstate import ClientState
from handlers.state import Parked
from handlers.welcome import IdentityRegistry, InstantIdentities
from schemas.codec import BadInput, decode, encode_output
from schemas.inputs import ClientEvent, DayClosed, InputEvent
from streams.worker.ledgerstore import entry_value

CLIENT, PARKED = "c", "p"
_encode = msgspec.msgpack.Encoder().encode
_client = msgspec.msgpack.Decoder(ClientState).decode
_parked = msgspec.msgpack.Decoder(list[Parked]).decode


class QuixStore:
    """One client's state in Quix state (the message key is the client id): the client under
    one key, each history entry under one of its own, as the worker's changelog keeps them. For
    each input, the entries it can read (its id's, its fill's, its deposit's, the parked queue and
    those of the inputs in it) are read into a ``ClientHistory``, the engine's one type of
    history; what the engine changes in it is written back (``save``). Not pruned: a benchmark's
    run is shorter than the dedupe window."""

    def __init__(self, state: Any, event: InputEvent | None, shared: Shared) -> None:
        self.state = state
        raw = state.get(CLIENT)
        self.client: ClientState | None = None if raw is None else _client(raw)
        self.journal: Journal = {}
        self.entries = ClientHistory(self.journal)
        # A client's queue is empty unless the shared state lists it (handlers.parking)
        if isinstance(event, ClientEvent) and event.client_id in shared.parked:
            raw_queue = state.get(PARKED)
            if raw_queue is not None:
                self.entries.queue = _parked(raw_queue)
        for wanted in [event] + [parked_event(parked) for parked in self.entries.queue]:
            self._read(wanted)

    def _read(self, event: InputEvent | None) -> None:
        if event is None:
            return
        entries = self.entries
        raw = self.state.get(SEEN.decode() + event.id)
        if raw is not None:
            entries.seen_ids[event.id] = raw  # kept encoded (handlers.history)
        fill_id = getattr(event, "fill_id", None)
        if fill_id is not None and (raw := self.state.get(FILL.decode() + fill_id)) is not None:
            entries.fills[fill_id] = raw
        deposit_id = getattr(event, "deposit_id", None)
        if deposit_id is not None and (raw := self.state.get(DEPOSIT.decode() + deposit_id)) is not None:
            entries.deposits[deposit_id] = int(raw)

    def get(self, client_id: str) -> ClientState | None:
        return self.client if self.client is not None and self.client.client_id == client_id else None

    def put(self, client: ClientState) -> None:
        self.client = client
        self.state.set(CLIENT, _encode(client))

    def history(self, client_id: str) -> ClientHistory:
        return self.entries

    def save(self) -> None:
        """The history entries the input changed, each to its key."""
        for entries, kind, ident in self.journal.values():
            value = entry_value(entries, kind, ident)
            assert value is not None, "never pruned here"
            self.state.set(kind.decode() + ident, value)


def build(bootstrap: str, group: str, source: str, output: str, state_dir: str) -> Application:
    rules = Rules.default()
    shared, partners = Shared(), PartnerLedgers()
    identities = InstantIdentities(IdentityRegistry())
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      processing_guarantee="exactly-once", commit_interval=1.0, state_dir=state_dir,
                      rocksdb_options=RocksDBOptions(dumps=_bytes_or_json, loads=lambda raw: raw))

    def on_input(raw: bytes, key: Any, timestamp: int, headers: Any, state: Any) -> list[bytes]:
        decoded = decode(raw)
        event = None if isinstance(decoded, BadInput) else decoded.event
        if key is None and isinstance(event, DayClosed):
            return []
        store = QuixStore(state, event, shared)
        applied = decide(Partition(store, shared, rules, identities, partners),
                         Received(raw, {"timestamp": timestamp}), decoded)
        store.save()
        return [encode_output(output) for output in applied.outputs]

    inputs = app.dataframe(app.topic(source, value_deserializer="bytes", key_deserializer="bytes"))
    outputs = inputs.apply(on_input, stateful=True, metadata=True, expand=True)
    outputs.to_topic(app.topic(output, value_serializer="bytes", key_serializer="bytes"))
    return app


def _bytes_or_json(value: Any) -> bytes:
    """State values are the engine's msgpack as they are; Quix's own keys go through JSON."""
    return value if isinstance(value, bytes) else orjson.dumps(value)


if __name__ == "__main__":
    build(*sys.argv[1:6]).run()
