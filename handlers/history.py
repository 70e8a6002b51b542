"""Exactly one effect per event id, within bounded windows of event time.

An id seen before with the same payload is a redelivery (`duplicate`: no effect); with
another payload, a `conflicting_duplicate`. Ids are remembered for the dedupe window behind the
client's newest event; an event older than that is `stale_event`, because it could no longer be
told apart from a redelivery.

One store serves both the offline engine and the worker: ``ClientHistory``, a client's entries
in dicts, swept by ``maybe_prune`` with the rules below, driven by the client's event time
(never the wall clock). The worker journals its changes to its changelog, a dropped entry as a
tombstone (streams.worker.ledger). Answers never depend on when entries are dropped: every
lookup ignores an entry that has left its window, so a store pruned early, late or never gives
the same outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

import msgspec

from handlers.rules import Rules
from handlers.state import ClientState, FillRecord, Parked, Seen
from handlers.verdict import Refusal
from schemas.codec import canonical_bytes
from schemas.inputs import InputEvent

V = TypeVar("V")
PRUNE_EVERY_US: Final = 3_600_000_000  # prune a client at most once an hour of its event time
# The kinds of entry, as the worker's changelog keys name them (streams.worker.ledger)
SEEN: Final = b"s"
FILL: Final = b"f"
DEPOSIT: Final = b"d"
PARKED: Final = b"p"


class History(Protocol):
    """A client's remembered event ids, fills (for busts) and deposit ids."""

    def seen(self, event_id: str) -> Seen | None: ...
    def remember(self, event_id: str, entry: Seen) -> None: ...
    def fill(self, fill_id: str) -> FillRecord | None: ...
    def put_fill(self, fill_id: str, record: FillRecord) -> None: ...
    def deposit(self, deposit_id: str) -> int | None: ...
    def put_deposit(self, deposit_id: str, ts_us: int) -> None: ...
    def parked(self) -> list[Parked]:
        """The client's inputs waiting for a prerequisite, oldest ts first (handlers.parking)."""
    def put_parked(self, queue: list[Parked]) -> None: ...


def digest(event: InputEvent) -> bytes:
    return hashlib.blake2b(canonical_bytes(event), digest_size=10).digest()


def admit(history: History, latest_ts_us: int, event: InputEvent, event_digest: bytes, ts_us: int,
          rules: Rules, source: str = "") -> Refusal | None:
    """None when the event may be applied. ``source`` (the worker's input position) tells a
    second copy of the same input, which is skipped silently, from a redelivery by the
    producer, which is a `duplicate`."""
    horizon = latest_ts_us - rules.dedupe_window_us
    if ts_us < horizon:
        return Refusal("stale_event", "event is older than the dedupe window behind this "
                                      "client's newest event; it cannot be told from a redelivery")
    seen = history.seen(event.id)
    if seen is None or seen.ts_us < horizon:
        return None
    if source and (seen.source == source or source in seen.redeliveries):
        return Refusal("recopy", f"event {event.id!r} copied twice from {source}")
    # Counted, so that each redelivery's rejection has an id of its own, apart from the original's
    # (which may have been rejected too) and from each other's (the same bytes read at two places
    # are two payloads: their `source` differs).
    repeat = len(seen.redeliveries) + 1
    history.remember(event.id, Seen(seen.digest, seen.ts_us, seen.source, (*seen.redeliveries, source)))
    if seen.digest == event_digest:
        return Refusal("duplicate", f"event {event.id!r} was already applied; no second effect", repeat)
    return Refusal("conflicting_duplicate", f"event id {event.id!r} was already applied with a "
                                            "different payload", repeat)


def remember(history: History, client: ClientState | None, event: InputEvent, event_digest: bytes,
             ts_us: int, source: str = "") -> None:
    history.remember(event.id, Seen(event_digest, ts_us, source))
    if client is not None and ts_us > client.latest_ts_us:
        client.latest_ts_us = ts_us


def live_fill(history: History, fill_id: str, now_us: int, rules: Rules) -> FillRecord | None:
    """A fill record a bust may still name: up to twice the bust window old (past the window a
    bust is `bust_window_expired`; past twice the window the fill is forgotten)."""
    record = history.fill(fill_id)
    if record is None or record.ts_us < now_us - 2 * rules.bust_window_us:
        return None
    return record


def live_deposit(history: History, deposit_id: str, latest_ts_us: int, rules: Rules) -> bool:
    ts_us = history.deposit(deposit_id)
    return ts_us is not None and ts_us >= latest_ts_us - rules.dedupe_window_us


# -- when entries may be dropped: the same rule for every store -------------------------------
def seen_expired(entry_ts_us: int, latest_ts_us: int, rules: Rules) -> bool:
    return entry_ts_us < latest_ts_us - rules.dedupe_window_us


def fill_expired(entry_ts_us: int, latest_ts_us: int, rules: Rules) -> bool:
    # No admissible event (ts >= latest - dedupe window) can still see it as live.
    return entry_ts_us < latest_ts_us - rules.dedupe_window_us - 2 * rules.bust_window_us


class _Stamped(msgspec.Struct, array_like=True):
    """The first two fields of an encoded FillRecord: enough to sweep it."""

    cause_id: str
    ts_us: int


_fill_encoder = msgspec.msgpack.Encoder()
_fill_decoder = msgspec.msgpack.Decoder(FillRecord)
_stamp_decoder = msgspec.msgpack.Decoder(_Stamped)


def fill_ts(raw: bytes) -> int:
    """When an encoded fill record's fill happened."""
    return _stamp_decoder.decode(raw).ts_us


class ClientHistory(msgspec.Struct, kw_only=True):
    """A client's History, in memory: the offline engine's, and the worker's (which journals it
    to its changelog, streams.worker.ledger). Fills are kept encoded (about 90 bytes, against
    about 800 as objects) and decoded when a bust asks for one."""

    seen_ids: dict[str, Seen] = msgspec.field(default_factory=dict)
    fills: dict[str, bytes] = msgspec.field(default_factory=dict)  # msgpack of FillRecord
    deposits: dict[str, int] = msgspec.field(default_factory=dict)
    queue: list[Parked] = msgspec.field(default_factory=list)
    next_prune_us: int = 0

    def seen(self, event_id: str) -> Seen | None:
        return self.seen_ids.get(event_id)

    def remember(self, event_id: str, entry: Seen) -> None:
        self.seen_ids[event_id] = entry

    def fill(self, fill_id: str) -> FillRecord | None:
        raw = self.fills.get(fill_id)
        return None if raw is None else _fill_decoder.decode(raw)

    def put_fill(self, fill_id: str, record: FillRecord) -> None:
        self.fills[fill_id] = _fill_encoder.encode(record)

    def deposit(self, deposit_id: str) -> int | None:
        return self.deposits.get(deposit_id)

    def put_deposit(self, deposit_id: str, ts_us: int) -> None:
        self.deposits[deposit_id] = ts_us

    def parked(self) -> list[Parked]:
        return self.queue

    def put_parked(self, queue: list[Parked]) -> None:
        self.queue = queue

    def maybe_prune(self, latest_ts_us: int, rules: Rules) -> list[tuple[bytes, str]]:
        """Entries are inserted in (nearly) event-time order, so pruning pops from the front
        and stops at the first entry still inside its window: the cost is what is removed.
        Returns what was dropped, as (kind, id): ``s`` an event id, ``f`` a fill, ``d`` a deposit."""
        if latest_ts_us < self.next_prune_us:
            return []
        seen = _drop_front(self.seen_ids, lambda e: seen_expired(e.ts_us, latest_ts_us, rules))
        fills = _drop_front(self.fills, lambda raw: fill_expired(fill_ts(raw), latest_ts_us, rules))
        deposits = _drop_front(self.deposits, lambda ts: seen_expired(ts, latest_ts_us, rules))
        dropped = [(SEEN, k) for k in seen] + [(FILL, k) for k in fills] + [(DEPOSIT, k) for k in deposits]
        # Next time anything can expire. Most clients trade less than hourly, so pruning "every
        # hour" would mean pruning on every event.
        due = [latest_ts_us + rules.dedupe_window_us]
        if self.seen_ids:
            due.append(next(iter(self.seen_ids.values())).ts_us + rules.dedupe_window_us)
        if self.fills:
            due.append(fill_ts(next(iter(self.fills.values()))) + rules.dedupe_window_us + 2 * rules.bust_window_us)
        if self.deposits:
            due.append(next(iter(self.deposits.values())) + rules.dedupe_window_us)
        self.next_prune_us = max(min(due), latest_ts_us + PRUNE_EVERY_US)
        return dropped


def _drop_front(entries: dict[str, V], expired: Callable[[V], bool]) -> list[str]:
    doomed = []
    for key, value in entries.items():
        if not expired(value):
            break
        doomed.append(key)
    for key in doomed:
        del entries[key]
    return doomed
