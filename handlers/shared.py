"""The ids of the shared inputs seen, in the partition's shared state (handlers.sharedstate).

A msgspec Struct, like a client's history entries (``handlers.state``): the worker keeps it in
its changelog, encoded by msgspec, and decoding needs the declared field types, which mypyc erases
from a compiled class (``str | None`` becomes ``type``, ``dict[str, Seen]`` becomes ``dict``).
So the modules that define Structs are not compiled (streams.devtools.compile). The client state
and the shared state around this, read and written on every input, are compiled all the same,
their types declared again for the decoder (handlers.clientstate).
"""

from __future__ import annotations

from typing import Any

import msgspec

from handlers.history import drop_expired_seen, next_prune, seen_due
from handlers.rules import Rules
from handlers.state import Seen


class SharedHistory(msgspec.Struct, kw_only=True):
    """The ids of the shared inputs seen (plans, parent links, day closes, terms), for their dedupe
    (handlers.dedupe's ``admit``), swept as a client's are. It encodes as a client's history
    did when the shared state held one (tests/unit/test_state_codec pins the bytes): the fields
    a client's history has besides stay, always empty."""

    seen_ids: dict[str, Seen] = msgspec.field(default_factory=dict)
    fills: dict[str, bytes] = msgspec.field(default_factory=dict)
    deposits: dict[str, int] = msgspec.field(default_factory=dict)
    queue: list[Any] = msgspec.field(default_factory=list)
    next_prune_us: int = 0

    def seen(self, event_id: str) -> Seen | None:
        return self.seen_ids.get(event_id)

    def remember(self, event_id: str, entry: Seen) -> None:
        self.seen_ids[event_id] = entry

    def remember_new(self, event_id: str, event_digest: bytes, ts_us: int, source: str) -> None:
        self.seen_ids[event_id] = Seen(event_digest, ts_us, source)

    def maybe_prune(self, latest_ts_us: int, rules: Rules) -> None:
        if latest_ts_us >= self.next_prune_us:
            drop_expired_seen(self.seen_ids, latest_ts_us, rules)
            self.next_prune_us = next_prune(seen_due(self.seen_ids, latest_ts_us, rules), latest_ts_us)
