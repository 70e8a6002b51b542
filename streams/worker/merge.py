"""The sequencer's event-time merge: several sources, each in its own order, into one order
that follows the events' ``ts``, and which sources were heard from. Touch it for the order's
rules; it is pure (no Kafka), tested as a function of what arrives when (tests/property/test_merge.py).

Modelled on Kafka Streams' timestamp synchronisation across co-partitioned inputs: take the
head with the earliest ``ts`` among the sources that have one (ties: a fixed topic precedence,
then the source's order). While a source has nothing buffered, its next event could still be
earlier, so the head waits, at most ``grace_ms`` after it arrived, for every empty source to be
heard from (a fetch that came back after that moment with nothing). A source still behind its
end (records not fetched yet) is waited for without a limit: with a backlog every head is
present and the merge is exact. Events of a source that publishes more than ``grace_ms`` late
are copied when they come, after what was merged before them; the ledger's parking
(handlers.parking) takes up the ones whose prerequisite that leaves behind.

A source is heard from only by an answer from its partition's leader (as Kafka Streams tells a
partition known to be caught up from one whose state is unknown, since KIP-695). While its
leader does not answer (a broker killed, until another replica leads), the source is unknown and
every head waits for it, however long the grace; ``Sources`` bounds that wait (``wait_max_ms``,
minutes) and says which sources are being waited for. A broker failover also stalls the source
systems' producers that wrote to that leader: they send what they held once they find the new
one, a moment after the new leader first answers us. So after its leader changes, a source
counts as heard only from ``settle_ms`` after the new leader's first answer; until then, as of
its last answer before the change.
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


@dataclass(slots=True)
class _Source:
    leader: int | None = None
    seen_at: float | None = None  # the answer last seen
    held_at: float | None = None  # after a leader change, until settled: the last answer before it
    back_at: float | None = None  # after a leader change: the new leader's first answer
    gave_up: bool = False  # waited for past the bound, until it answers again
    caught: bool = False  # at the last look, its last answer had left nothing to fetch


@dataclass
class Sources(Generic[S]):
    """When the merge may take each source to have been heard from (the module doc): the answers
    of its partition's leader, held back after a leader change, and a bound on waiting."""

    settle_ms: float
    wait_max_ms: float
    unanswered_ms: float = 2000.0  # no answer for longer (its fetches come every ~100 ms): unknown
    states: dict[S, _Source] = field(default_factory=dict)
    settled: list[tuple[S, float]] = field(default_factory=list)  # (source, ms from its last answer to settled)
    given_up: list[S] = field(default_factory=list)  # newly waited for past the bound

    def heard_at(self, source: S, leader: int | None, answered_ms: float | None, caught_up: bool,
                 now_ms: float) -> float | None:
        """What the merge's ``heard_at`` gives for ``source``: the time of its last answer that
        left nothing to fetch (None: records to fetch; wait). ``leader``: the node leading its
        partition now, as the client's metadata says (-1 or None: none); ``answered_ms``: the
        time of its last fetch answer; ``caught_up``: that answer reached the partition's end.

        A failover shows either way: the leader changes (a controlled shutdown moves it at once),
        or a source that was caught up, so answered every fetch wait, answers again only after
        more than ``unanswered_ms`` (a killed leader: seconds without an answer, whichever
        client's metadata learns of the new leader first)."""
        state = self.states.get(source)
        if state is None:
            state = self.states[source] = _Source(leader=leader, seen_at=answered_ms)
        silent = (state.caught and state.seen_at is not None and answered_ms is not None
                  and answered_ms - state.seen_at > self.unanswered_ms)
        if leader != state.leader and state.leader is None:  # the client's metadata came: not a change
            state.leader = leader
        elif leader != state.leader or silent:
            if state.held_at is None:
                state.held_at = state.seen_at if state.seen_at is not None else -math.inf
            state.back_at = answered_ms if silent and leader == state.leader else None
            state.leader = leader
        if state.held_at is not None:
            if state.back_at is None and leader is not None and leader >= 0 and answered_ms is not None \
                    and answered_ms > state.held_at:
                state.back_at = answered_ms
            if state.back_at is not None and now_ms >= state.back_at + self.settle_ms:
                self.settled.append((source, state.back_at + self.settle_ms - state.held_at))
                state.held_at = state.back_at = None
        state.seen_at, state.caught = answered_ms, caught_up
        heard = answered_ms if state.held_at is None else None if state.held_at == -math.inf else state.held_at
        if heard is not None and now_ms - heard > self.wait_max_ms:  # waited long enough: on without it
            if not state.gave_up:
                state.gave_up = True
                self.given_up.append(source)
            return now_ms
        state.gave_up = False
        return heard if caught_up else None

    def known(self, source: S, now_ms: float) -> bool:
        """Its leader answered lately, and it is not settling after a leader change."""
        state = self.states.get(source)
        return (state is not None and state.held_at is None and state.seen_at is not None
                and now_ms - state.seen_at <= self.unanswered_ms)

    def waiting(self, now_ms: float) -> list[tuple[S, str, float]]:
        """The sources being waited for: (source, "unanswered" or "settling", seconds since their
        last answer counted as heard)."""
        rows = []
        for source, state in self.states.items():
            if state.held_at is not None:
                since = state.held_at if state.held_at > -math.inf else now_ms
                rows.append((source, "unanswered" if state.back_at is None else "settling", (now_ms - since) / 1000))
            elif state.seen_at is not None and now_ms - state.seen_at > self.unanswered_ms:
                rows.append((source, "unanswered", (now_ms - state.seen_at) / 1000))
        return rows
