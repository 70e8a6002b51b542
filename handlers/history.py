"""A client's history in memory: ``ClientHistory``, the store of what handlers.dedupe remembers (event
ids, fills for busts, deposit ids, parked inputs). Touch it for how entries are kept and swept; the
rules that read them are handlers.dedupe's (compiled; this module's Structs are not).

One store serves both the offline engine and the worker: a client's entries in dicts, swept by
``maybe_prune`` with handlers.dedupe's expiry rules, driven by the client's event time
(never the wall clock). The worker journals its changes to its changelog, a dropped entry as a
tombstone (streams.worker.ledgerstore). Answers never depend on when entries are dropped: every
lookup ignores an entry that has left its window, so a store pruned early, late or never gives
the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

import msgspec

from handlers.dedupe import fill_expired, seen_expired
from handlers.rules import Rules
from handlers.state import FillRecord, Parked, Seen

V = TypeVar("V")
PRUNE_EVERY_US: Final = 3_600_000_000  # prune a client at most once an hour of its event time
# The kinds of entry, as the worker's changelog keys name them (streams.worker.ledgerstore)
SEEN: Final = b"s"
FILL: Final = b"f"
DEPOSIT: Final = b"d"
PARKED: Final = b"p"


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
    to its changelog, streams.worker.ledgerstore). Fills are kept encoded (about 90 bytes, against
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
