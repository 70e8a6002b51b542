"""A client's history in memory: ``ClientHistory``, the store of what handlers.dedupe remembers (event
ids, fills for busts, deposit ids, parked inputs). Touch it for how entries are kept and swept; the
rules that read them are handlers.dedupe's.

One store serves both the offline engine and the worker: a client's entries in dicts, swept by
``maybe_prune`` with handlers.dedupe's expiry rules, driven by the client's event time
(never the wall clock). The worker journals its changes to its changelog, a dropped entry as a
tombstone (streams.worker.ledgerstore). Answers never depend on when entries are dropped: every
lookup ignores an entry that has left its window, so a store pruned early, late or never gives
the same outputs.

A plain class, compiled (streams.devtools.compile), and the one type of a client's history: the
engine calls it several times for every input, and compiled code calls a compiled class's methods
directly, where a call through a protocol, or into a method left as source, is a Python call. It
is never encoded whole: the worker writes its entries one by one, each change noted in the
``Journal`` it gives the history (streams.worker.ledgerstore). (The shared inputs' ids are
``handlers.shared``'s ``SharedHistory``, a Struct inside the encoded shared state, swept by
``drop_expired_seen`` here.)
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar

import msgspec

from handlers.dedupe import fill_expired, seen_expired
from handlers.money import ZERO
from handlers.rules import Rules
from handlers.state import FillRecord, FillStamp, Parked, Seen, SeenStamp

V = TypeVar("V")
PRUNE_EVERY_US: Final = 3_600_000_000  # prune a client at most once an hour of its event time
# The kinds of entry, as the worker's changelog keys name them (streams.worker.ledgerstore)
SEEN: Final = b"s"
FILL: Final = b"f"
DEPOSIT: Final = b"d"
PARKED: Final = b"p"


_encoder: Final = msgspec.msgpack.Encoder()
_fill_decoder: Final = msgspec.msgpack.Decoder(FillRecord)
_stamp_decoder: Final = msgspec.msgpack.Decoder(FillStamp)
_seen_decoder: Final = msgspec.msgpack.Decoder(Seen)
_seen_stamp_decoder: Final = msgspec.msgpack.Decoder(SeenStamp)


# The worker's journal of changed entries, by changelog key (streams.worker.ledgerstore): each
# with the history that holds it, its kind and its id; read and cleared at every flush.
Journal = dict[bytes, tuple["ClientHistory", bytes, str]]
SEP: Final = b"\x1f"  # in a changelog key: after a client's id (streams.worker.ledgerstore)


def _amount(value: Decimal) -> Decimal | str:
    return "0" if value is ZERO else value


def fill_ts(raw: bytes) -> int:
    """When an encoded fill record's fill happened."""
    return _stamp_decoder.decode(raw).ts_us


def seen_ts(raw: bytes) -> int:
    """When an encoded seen id's event happened."""
    return _seen_stamp_decoder.decode(raw).ts_us


def hashed_dict() -> dict[str, bytes]:
    """An empty dict that keeps each key's hash in its table, as CPython does once a dict has held a
    key that is not a str (and keeps doing through every resize). One whose keys were all str
    reads a key's hash from the key itself: looking up a new id, or growing the table, then
    touches the key string of every entry it passes, and a client's ids are cold memory by its
    next event. Kept in the table, 8 bytes more an entry, a miss reads the table alone."""
    table: dict[Any, bytes] = {0: b""}
    del table[0]
    return table


class ClientHistory:
    """A client's remembered event ids, fills (for busts), deposit ids and parked inputs: the
    offline engine's, and the worker's, which gives it a ``journal`` to note each change in
    (keyed ``h client SEP kind id``, its changelog's key). Its entries are kept encoded, as the
    changelog holds them, and decoded when asked for: a fill (about 90 bytes, against about 800 as
    objects) when a bust names it, a seen id (57 bytes, against three objects of 48, 43 and 32
    bytes) when its id comes back. Kept as objects, they made the heap that a client's next
    event touches grow with the history, and a replay slower the longer it ran."""

    def __init__(self, journal: Journal | None = None, client_id: str = "") -> None:
        self.seen_ids: dict[str, bytes] = hashed_dict()  # msgpack of Seen
        self.fills: dict[str, bytes] = hashed_dict()  # msgpack of FillRecord
        self.deposits: dict[str, int] = {}
        self.queue: list[Parked] = []
        self.next_prune_us = 0
        self.journal = journal
        self.prefix = b"h" + client_id.encode() + SEP

    def _note(self, kind: bytes, key: str) -> None:
        if self.journal is not None:
            self.journal[self.prefix + kind + key.encode()] = (self, kind, key)

    def seen(self, event_id: str) -> Seen | None:
        raw = self.seen_ids.get(event_id)
        return None if raw is None else _seen_decoder.decode(raw)

    def remember(self, event_id: str, entry: Seen) -> None:
        self.seen_ids[event_id] = _encoder.encode(entry)
        self._note(SEEN, event_id)

    def remember_new(self, event_id: str, event_digest: bytes, ts_us: int, source: str) -> None:
        """``remember`` of a first sighting, the same bytes, without making the Seen: its fields
        in order, as array_like encodes it (tests/unit/test_state_codec checks the bytes)."""
        self.seen_ids[event_id] = _encoder.encode((event_digest, ts_us, source, ()))
        self._note(SEEN, event_id)

    def fill(self, fill_id: str) -> FillRecord | None:
        raw = self.fills.get(fill_id)
        return None if raw is None else _fill_decoder.decode(raw)

    def put_fill(self, fill_id: str, record: FillRecord) -> None:
        self.fills[fill_id] = _encoder.encode(record)
        self._note(FILL, fill_id)

    def record_fill(self, fill_id: str, cause_id: str, ts_us: int, account_id: str, cashback: Decimal,
                    covered: Decimal, turnover: list[tuple[str, Decimal]], rebate: Decimal,
                    commission: Decimal, partner_id: str | None, pnl: Decimal) -> None:
        """``put_fill`` of a new fill's FillRecord with these fields, the same bytes, without
        making the record: its fields in order, as array_like encodes it, and each amount that is
        the ZERO constant itself as its text "0" (msgspec writes a Decimal as its text): most fills
        leave four of the five at ZERO, and converting a Decimal to text was most of the encoding
        (callgrind). tests/unit/test_state_codec checks the bytes against put_fill's."""
        self.fills[fill_id] = _encoder.encode((
            cause_id, ts_us, account_id, _amount(cashback), _amount(covered), turnover, _amount(rebate),
            _amount(commission), partner_id, _amount(pnl), None))
        self._note(FILL, fill_id)

    def deposit(self, deposit_id: str) -> int | None:
        return self.deposits.get(deposit_id)

    def put_deposit(self, deposit_id: str, ts_us: int) -> None:
        self.deposits[deposit_id] = ts_us
        self._note(DEPOSIT, deposit_id)

    def parked(self) -> list[Parked]:
        return self.queue

    def put_parked(self, queue: list[Parked]) -> None:
        self.queue = queue
        self._note(PARKED, "")

    def maybe_prune(self, latest_ts_us: int, rules: Rules) -> None:
        """Entries are inserted in (nearly) event-time order, so pruning pops from the front
        and stops at the first entry still inside its window: the cost is what is removed.
        Each entry dropped is noted in the journal (a tombstone in the worker's changelog)."""
        if latest_ts_us < self.next_prune_us:
            return
        for key in _drop_front(self.seen_ids, lambda raw: seen_expired(seen_ts(raw), latest_ts_us, rules)):
            self._note(SEEN, key)
        for key in _drop_front(self.fills, lambda raw: fill_expired(fill_ts(raw), latest_ts_us, rules)):
            self._note(FILL, key)
        for key in _drop_front(self.deposits, lambda ts: seen_expired(ts, latest_ts_us, rules)):
            self._note(DEPOSIT, key)
        due = [(seen_ts(next(iter(self.seen_ids.values()))) if self.seen_ids else latest_ts_us)
               + rules.dedupe_window_us]
        if self.fills:
            due.append(fill_ts(next(iter(self.fills.values()))) + rules.dedupe_window_us + 2 * rules.bust_window_us)
        if self.deposits:
            due.append(next(iter(self.deposits.values())) + rules.dedupe_window_us)
        self.next_prune_us = next_prune(min(due), latest_ts_us)


def drop_expired_seen(seen_ids: dict[str, Seen], latest_ts_us: int, rules: Rules) -> list[str]:
    """Drop the ids past the dedupe window behind ``latest_ts_us``; returns them."""
    return _drop_front(seen_ids, lambda e: seen_expired(e.ts_us, latest_ts_us, rules))


def seen_due(seen_ids: dict[str, Seen], latest_ts_us: int, rules: Rules) -> int:
    """When the oldest id kept can next expire (none kept: a window from now)."""
    oldest = next(iter(seen_ids.values())).ts_us if seen_ids else latest_ts_us
    return oldest + rules.dedupe_window_us


def next_prune(due_us: int, latest_ts_us: int) -> int:
    """Next time to sweep: when anything can expire, at most once an hour of event time (most
    clients trade less than hourly, so sweeping "every hour" would mean sweeping on every event)."""
    return max(due_us, latest_ts_us + PRUNE_EVERY_US)


def _drop_front(entries: dict[str, V], expired: Callable[[V], bool]) -> list[str]:
    doomed = []
    for key, value in entries.items():
        if not expired(value):
            break
        doomed.append(key)
    for key in doomed:
        del entries[key]
    return doomed
