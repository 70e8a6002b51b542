"""The sequencer's event-time merge: several sources, each in its own order, into one order
that follows the events' ``ts``. Pure: no Kafka here, so that it is tested as a function of
what arrives when (tests/property/test_merge.py).

Modelled on Kafka Streams' timestamp synchronisation across co-partitioned inputs: take the
head with the earliest ``ts`` among the sources that have one (ties: a fixed topic precedence,
then the source's order). While a source has nothing buffered, its next event could still be
earlier, so the head waits, at most ``grace_ms`` after it arrived, for every empty source to be
heard from (a fetch that came back after that moment with nothing). A source still behind its
end (records not fetched yet) is waited for without a limit: with a backlog every head is
present and the merge is exact. Events of a source that publishes more than ``grace_ms`` late
are copied when they come, after what was merged before them; the ledger's parking
(handlers.parking) takes up the ones whose prerequisite that leaves behind.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

S = TypeVar("S", bound=Hashable)


@dataclass(slots=True)
class _Head:
    key: tuple[int, int, int]  # (ts_us, precedence, arrival sequence)
    arrived_ms: float
    item: Any


@dataclass
class EventTimeMerge(Generic[S]):
    grace_ms: float
    queues: dict[S, deque[_Head]] = field(default_factory=dict)
    _sequence: int = 0
    # Nothing at or past it goes out: a version of the program terms waits for its verdict there
    # (streams.worker.sequencer). ``ready``'s ``barrier_of`` sets it as the version goes out.
    barrier_us: float = math.inf

    def add(self, source: S, ts_us: int, precedence: int, arrived_ms: float, item: Any) -> None:
        self._sequence += 1
        queue = self.queues.get(source)
        if queue is None:
            queue = self.queues[source] = deque()
        queue.append(_Head((ts_us, precedence, self._sequence), arrived_ms, item))

    def buffered(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def ready(self, sources: Iterable[S], heard_at: Callable[[S], float | None],
              barrier_of: Callable[[Any], float | None] | None = None) -> list[Any]:
        """Pop what may go out now, in order. ``heard_at(source)`` is the time of the last fetch
        that found the source with nothing more to read, or None while it has records not
        fetched yet. ``barrier_of(item)``, of each item let out: a barrier it sets, or None."""
        out: list[Any] = []
        queues = self.queues
        # The earliest hearing among the empty sources bounds every head (None: wait for good).
        floor = math.inf
        for source in sources:
            if not queues.get(source):
                at = heard_at(source)
                floor = -math.inf if at is None else min(floor, at)
        fronts = [(queue[0].key, i, source) for i, (source, queue) in enumerate(queues.items()) if queue]
        heapq.heapify(fronts)
        while fronts:
            _, i, source = fronts[0]
            queue = queues[source]
            head = queue[0]
            if head.key[0] >= self.barrier_us or floor < head.arrived_ms + self.grace_ms:
                return out
            queue.popleft()
            out.append(head.item)
            barrier = None if barrier_of is None else barrier_of(head.item)
            if barrier is not None:
                self.barrier_us = min(self.barrier_us, barrier)
            if queue:
                heapq.heapreplace(fronts, (queue[0].key, i, source))
            else:
                heapq.heappop(fronts)
                at = heard_at(source)
                floor = -math.inf if at is None else min(floor, at)
        return out
