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

from handlers.engine import PartnerLedgers, Partition, Received, decide
from handlers.shared import Shared
from handlers.dedupe import History
from handlers.rules import Rules
from handlers.state import ClientState, FillRecord, Parked, Seen
from handlers.welcome import IdentityRegistry, InstantIdentities
from schemas.codec import decode, encode_output
from schemas.inputs import DayClosed

CLIENT, PARKED = "c", "p"
_encode = msgspec.msgpack.Encoder().encode
_client = msgspec.msgpack.Decoder(ClientState).decode
_seen = msgspec.msgpack.Decoder(Seen).decode
_fill = msgspec.msgpack.Decoder(FillRecord).decode
_parked = msgspec.msgpack.Decoder(list[Parked]).decode


class QuixStore:
    """One client's state in Quix state (the message key is the client id): the client under
    one key, each history entry under one of its own, as the worker's changelog keeps them. Not
    pruned: a benchmark's run is shorter than the dedupe window."""

    def __init__(self, state: Any) -> None:
        self.state = state
        raw = state.get(CLIENT)
        self.client: ClientState | None = None if raw is None else _client(raw)

    def get(self, client_id: str) -> ClientState | None:
        return self.client if self.client is not None and self.client.client_id == client_id else None

    def put(self, client: ClientState) -> None:
        self.client = client
        self.state.set(CLIENT, _encode(client))

    def history(self, client_id: str) -> History:
        return self

    def seen(self, event_id: str) -> Seen | None:
        raw = self.state.get("s" + event_id)
        return None if raw is None else _seen(raw)

    def remember(self, event_id: str, entry: Seen) -> None:
        self.state.set("s" + event_id, _encode(entry))

    def fill(self, fill_id: str) -> FillRecord | None:
        raw = self.state.get("f" + fill_id)
        return None if raw is None else _fill(raw)

    def put_fill(self, fill_id: str, record: FillRecord) -> None:
        self.state.set("f" + fill_id, _encode(record))

    def deposit(self, deposit_id: str) -> int | None:
        raw = self.state.get("d" + deposit_id)
        return None if raw is None else int(raw)

    def put_deposit(self, deposit_id: str, ts_us: int) -> None:
        self.state.set("d" + deposit_id, str(ts_us).encode())

    def parked(self) -> list[Parked]:
        raw = self.state.get(PARKED)
        return [] if raw is None else _parked(raw)

    def put_parked(self, queue: list[Parked]) -> None:
        self.state.set(PARKED, _encode(queue))


def build(bootstrap: str, group: str, source: str, output: str, state_dir: str) -> Application:
    rules = Rules.default()
    shared, partners = Shared(), PartnerLedgers()
    identities = InstantIdentities(IdentityRegistry())
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      processing_guarantee="exactly-once", commit_interval=1.0, state_dir=state_dir,
                      rocksdb_options=RocksDBOptions(dumps=_bytes_or_json, loads=lambda raw: raw))

    def on_input(raw: bytes, key: Any, timestamp: int, headers: Any, state: Any) -> list[bytes]:
        if key is None and isinstance(getattr(decode(raw), "event", None), DayClosed):
            return []
        partition = Partition(QuixStore(state), shared, rules, identities, partners)
        applied = decide(partition, Received(raw, {"timestamp": timestamp}))
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
