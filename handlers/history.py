"""Exactly one effect per event id, within a bounded window of event time.

An id seen before with the same payload is a redelivery (`duplicate`: no effect); with
another payload, a `conflicting_duplicate`. Ids are remembered for the dedupe window behind the
newest event of the same history; an event older than that is `stale_event`, because it could
no longer be told apart from a redelivery. Whether old entries are already pruned never changes
an answer: the staleness check comes first.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Final, TypeVar

from handlers.rules import Rules
from handlers.state import ClientHistory, Seen
from handlers.verdict import Refusal
from schemas.codec import canonical_bytes
from schemas.inputs import InputEvent

V = TypeVar("V")
PRUNE_EVERY_US: Final = 3_600_000_000  # prune at most once an hour of event time


def digest(event: InputEvent) -> bytes:
    return hashlib.blake2b(canonical_bytes(event), digest_size=10).digest()


def admit(history: ClientHistory, event: InputEvent, event_digest: bytes, ts_us: int, rules: Rules) -> Refusal | None:
    if ts_us < history.latest_ts_us - rules.dedupe_window_us:
        return Refusal("stale_event", "event is older than the dedupe window behind this "
                                      "client's newest event; it cannot be told from a redelivery")
    seen = history.seen.get(event.id)
    if seen is None:
        return None
    if seen.digest == event_digest:
        return Refusal("duplicate", f"event {event.id!r} was already applied; no second effect")
    return Refusal("conflicting_duplicate", f"event id {event.id!r} was already applied with a "
                                            "different payload")


def remember(history: ClientHistory, event: InputEvent, event_digest: bytes, ts_us: int, rules: Rules) -> None:
    history.seen[event.id] = Seen(event_digest, ts_us)
    if ts_us > history.latest_ts_us:
        history.latest_ts_us = ts_us
    if history.latest_ts_us >= history.next_prune_us:
        prune(history, rules)


def prune(history: ClientHistory, rules: Rules) -> None:
    """Forget what the windows no longer need. Fill records are kept for twice the bust window,
    so that a late bust is told `bust_window_expired` rather than `unknown_fill`.

    Entries are inserted in (nearly) event-time order, so pruning pops from the front and
    stops at the first entry still inside the window: the cost is what is removed, not what is
    kept. An entry that arrived out of order may outlive its window a little; that changes no
    answer, because staleness is checked before the entries are."""
    latest = history.latest_ts_us
    seen_horizon = latest - rules.dedupe_window_us
    _drop_front(history.seen, lambda seen: seen.ts_us < seen_horizon)
    fill_horizon = latest - 2 * rules.bust_window_us
    _drop_front(history.fills, lambda record: record.ts_us < fill_horizon)
    _drop_front(history.deposits, lambda ts_us: ts_us < seen_horizon)
    # Next time anything can expire: when the oldest entry left leaves its window. Most clients
    # trade less than hourly, so pruning "every hour" would mean pruning on every event.
    due = [latest + rules.dedupe_window_us]
    if history.seen:
        due.append(next(iter(history.seen.values())).ts_us + rules.dedupe_window_us)
    if history.fills:
        due.append(next(iter(history.fills.values())).ts_us + 2 * rules.bust_window_us)
    if history.deposits:
        due.append(next(iter(history.deposits.values())) + rules.dedupe_window_us)
    history.next_prune_us = max(min(due), latest + PRUNE_EVERY_US)


def _drop_front(entries: dict[str, V], expired: Callable[[V], bool]) -> None:
    doomed = []
    for key, value in entries.items():
        if not expired(value):
            break
        doomed.append(key)
    for key in doomed:
        del entries[key]
