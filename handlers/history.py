"""Exactly one effect per event id, within a bounded window of event time.

An id seen before with the same payload is a redelivery (`duplicate`: no effect); with
another payload, a `conflicting_duplicate`. Ids are remembered for the dedupe window behind the
newest event of the same history; an event older than that is `stale_event`, because it could
no longer be told apart from a redelivery. Whether old entries are already pruned never changes
an answer: the staleness check comes first.
"""

from __future__ import annotations

import hashlib
from typing import Final

from handlers.rules import Rules
from handlers.state import ClientHistory, Seen
from handlers.verdict import Refusal
from schemas.codec import canonical_bytes
from schemas.inputs import InputEvent

PRUNE_EVERY_US: Final = 3_600_000_000  # prune at most once an hour of event time


def digest(event: InputEvent) -> str:
    return hashlib.blake2b(canonical_bytes(event), digest_size=10).hexdigest()


def admit(history: ClientHistory, event: InputEvent, event_digest: str, ts_us: int, rules: Rules) -> Refusal | None:
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


def remember(history: ClientHistory, event: InputEvent, event_digest: str, ts_us: int, rules: Rules) -> None:
    history.seen[event.id] = Seen(event_digest, ts_us)
    if ts_us > history.latest_ts_us:
        history.latest_ts_us = ts_us
    if history.latest_ts_us >= history.next_prune_us:
        prune(history, rules)


def prune(history: ClientHistory, rules: Rules) -> None:
    """Forget what the windows no longer need. Fill records are kept for twice the bust window,
    so that a late bust is told `bust_window_expired` rather than `unknown_fill`."""
    latest = history.latest_ts_us
    seen_horizon = latest - rules.dedupe_window_us
    fill_horizon = latest - 2 * rules.bust_window_us
    history.seen = {k: v for k, v in history.seen.items() if v.ts_us >= seen_horizon}
    history.fills = {k: v for k, v in history.fills.items() if v.ts_us >= fill_horizon}
    history.deposits = {k: v for k, v in history.deposits.items() if v >= seen_horizon}
    history.next_prune_us = latest + PRUNE_EVERY_US
