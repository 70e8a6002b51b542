"""The ledger partition's store (handlers.engine's ``ClientStore``): its clients' states, their
histories and the shared state, over one table that its compacted changelog recovers. Touch it to
change how state is kept or laid out in the changelog, not what is decided (handlers/) or sent
(streams.worker.ledger).

The changelog's keys, for partition ``n`` (SEP is the unit separator, 0x1f):

- ``s<n>``: the shared state, after the 8-byte stamp of the last sequenced offset applied. It is
  written last in every turn: that record is the turn's commit.
- ``c SEP client``: a client's state, after the stamp of the last offset of the turn that wrote it.
- ``h client SEP kind id``: a history entry (``kind id``: handlers.history's kinds; the parked queue
  is ``p``), a tombstone once the sweep drops it. Read out of the table into the clients' stores
  when the partition is recovered.
- ``v<n>``: the stamp through which the clients' views are known to be in Redis (``unpublished``).

A turn's writes and its outputs are one Kafka transaction, read ``read_committed``: a recovered
table never holds part of a turn.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

import msgspec

from handlers.history import DEPOSIT, FILL, PARKED, SEEN, SEP, ClientHistory, Journal, fill_ts, seen_ts
from handlers.rules import Rules
from handlers.clientstate import ClientState
from handlers.sharedstate import Shared
from handlers.state import Parked

CLIENT: Final = b"c" + SEP
_encode = msgspec.msgpack.Encoder().encode
_client_dec = msgspec.msgpack.Decoder(ClientState)
_shared_dec = msgspec.msgpack.Decoder(Shared)
_parked_dec = msgspec.msgpack.Decoder(list[Parked])

Writes = list[tuple[bytes, bytes | None]]


def shared_key(partition: int) -> bytes:
    """The key of partition ``partition``'s shared state: its commit record."""
    return b"s" + str(partition).encode()


def stamp_of(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "big", signed=True)


def _stamp(offset: int) -> bytes:
    return offset.to_bytes(8, "big", signed=True)


def entry_value(entries: ClientHistory, kind: bytes, key: str) -> bytes | None:
    """An entry as the changelog holds it (None: it is gone, a tombstone)."""
    value: Any
    if kind == SEEN:
        return entries.seen_ids.get(key)  # kept encoded (handlers.history)
    elif kind == FILL:
        return entries.fills.get(key)
    elif kind == DEPOSIT:
        ts_us = entries.deposits.get(key)
        return None if ts_us is None else str(ts_us).encode()
    else:
        value = entries.queue or None
    return None if value is None else _encode(value)


def load_histories(table: MutableMapping[bytes, bytes], journal: Journal) -> dict[str, ClientHistory]:
    """Every client's history, read out of a recovered table (the ``h`` keys, which leave it),
    each noting its changes in ``journal``. Entries go into each client's store oldest first,
    the order its sweep expects."""
    found: dict[str, dict[bytes, list[tuple[int, str, Any]]]] = {}
    for key in [key for key in table if key[:1] == b"h"]:
        value = table.pop(key)
        cut = key.index(SEP)
        client_id, kind, ident = key[1:cut].decode(), key[cut + 1:cut + 2], key[cut + 2:].decode()
        kinds = found.setdefault(client_id, {})
        if kind == SEEN:  # kept encoded (handlers.history)
            kinds.setdefault(kind, []).append((seen_ts(value), ident, value))
        elif kind == FILL:
            kinds.setdefault(kind, []).append((fill_ts(value), ident, value))
        elif kind == DEPOSIT:
            kinds.setdefault(kind, []).append((int(value), ident, int(value)))
        elif kind == PARKED:
            kinds[kind] = [(0, "", _parked_dec.decode(value))]
    histories = {}
    for client_id, kinds in found.items():
        entries = histories[client_id] = ClientHistory(journal, client_id)
        for kind, target in ((SEEN, entries.seen_ids), (FILL, entries.fills), (DEPOSIT, entries.deposits)):
            for _, ident, value in sorted(kinds.get(kind, []), key=lambda item: item[0]):
                target[ident] = value
        if PARKED in kinds:
            entries.queue = kinds[PARKED][0][2]
    return histories


class LedgerStore:
    """One ledger partition's state over its table (see the module). ``last`` is the last offset
    applied in memory, ``durable`` the last one whose effects are in the table."""

    def __init__(self, partition: int, rules: Rules, table: MutableMapping[bytes, bytes]) -> None:
        self.rules, self.table = rules, table
        self.shared_key = shared_key(partition)
        # The read model: views are written to Redis after the turn's commit, so a worker killed
        # in between leaves them unwritten; on recovery the clients written after this are sent again.
        self.views_key = b"v" + str(partition).encode()
        raw_views = table.get(self.views_key)
        self.views_through = self.views_written = -1 if raw_views is None else stamp_of(raw_views)
        raw_shared = table.get(self.shared_key)
        self.shared = Shared() if raw_shared is None else _shared_dec.decode(raw_shared[8:])
        self.durable = self.last = -1 if raw_shared is None else stamp_of(raw_shared)
        self.cache: dict[str, ClientState] = {}
        self.dirty: dict[str, int] = {}  # client id -> offset of the last record that changed it
        self.noted: Journal = {}  # history entries changed since the flush: the histories note them
        self.histories = load_histories(table, self.noted)

    def start_at(self, offset: int) -> None:
        """A partition with nothing applied: its first record is at ``offset`` (the log's first
        one; more than 0 once the log's start has been deleted)."""
        assert self.last == self.durable == -1
        self.last = self.durable = offset - 1

    # -- the ClientStore of handlers.engine ---------------------------------------------------
    def get(self, client_id: str) -> ClientState | None:
        client = self.cache.get(client_id)
        if client is None:
            raw = self.table.get(CLIENT + client_id.encode())
            if raw is not None:
                client = self.cache[client_id] = _client_dec.decode(raw[8:])
        return client

    def put(self, client: ClientState) -> None:
        self.cache[client.client_id] = client
        self.dirty[client.client_id] = self.last
        entries = self.histories.get(client.client_id)  # pruned as the offline engine's store does, when due
        if entries is not None:
            entries.maybe_prune(client.latest_ts_us, self.rules)  # what it drops, noted: tombstones

    def history(self, client_id: str) -> ClientHistory:
        entries = self.histories.get(client_id)
        if entries is None:
            entries = self.histories[client_id] = ClientHistory(self.noted, client_id)
        return entries

    # -- the changelog ---------------------------------------------------------------------------
    def flush(self) -> tuple[dict[str, int], Writes]:
        """Write what changed to the table, in the order the changelog must receive it, the
        shared state last. Returns the changed clients with their versions, and the writes."""
        if self.last == self.durable:
            return {}, []
        writes: Writes = []
        table, stamp = self.table, _stamp(self.last)
        for key, (entries, kind, ident) in self.noted.items():  # they live in the clients' stores
            writes.append((key, entry_value(entries, kind, ident)))
        for client_id in self.dirty:
            key, value = CLIENT + client_id.encode(), stamp + _encode(self.cache[client_id])
            table[key] = value
            writes.append((key, value))
        if self.views_through != self.views_written:
            table[self.views_key] = _stamp(self.views_through)
            self.views_written = self.views_through
            writes.append((self.views_key, table[self.views_key]))
        table[self.shared_key] = stamp + _encode(self.shared)
        writes.append((self.shared_key, table[self.shared_key]))
        self.durable = self.last
        changed, self.dirty = self.dirty, {}
        self.noted.clear()  # the histories hold it: cleared, not replaced
        return changed, writes

    # -- the read model ------------------------------------------------------------------------------
    def views_published(self, through: int | None = None) -> None:
        """Every view of what this partition had flushed at stamp ``through`` (by default: all it
        has flushed) is in Redis (kept with the next flush)."""
        self.views_through = max(self.views_through, self.durable if through is None else through)

    def unpublished(self) -> list[tuple[ClientState, int]]:
        """The clients whose state was written after ``views_through``, with that state's stamp as
        the view's version: their views may not have reached Redis."""
        found = []
        for key, raw in sorted(self.table.items()):
            if key[:2] == CLIENT and self.views_through < stamp_of(raw) <= self.durable:
                client = self.get(key[2:].decode())
                if client is not None:
                    found.append((client, stamp_of(raw)))
        return found

    def forget_cache(self) -> None:
        """Keep the object cache bounded: state is always in the table."""
        assert not self.dirty and not self.noted
        self.cache.clear()
