"""Issue 10, property (a): the sequencer's merge, as a pure function of per-source streams and
their arrival times, yields ts order whenever every source's skew stays within the grace."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.worker.merge import EventTimeMerge

SOURCES = ("clients", "payments", "commands", "trades", "settlement")
POLL_MS = 20


@st.composite
def published(draw: st.DrawFn) -> tuple[float, dict[str, list[tuple[int, float]]]]:
    """(grace, per source its events as (ts, arrival ms), in the source's own order): one
    history in ts order, each source publishing its share at the history's pace plus a lag of
    its own, drawn anew for every event, of at most ``skew`` <= grace."""
    grace = draw(st.sampled_from([100.0, 500.0, 1000.0]))
    skew = draw(st.floats(0, grace - 2 * POLL_MS))
    streams: dict[str, list[tuple[int, float]]] = {s: [] for s in SOURCES}
    ts = 0
    for _ in range(draw(st.integers(0, 60))):
        ts += draw(st.integers(0, 2000))  # equal ts happen
        source = draw(st.sampled_from(SOURCES))
        pace = ts / 1000  # event time runs at the pace of wall time, in ms
        arrival = pace + draw(st.floats(0, skew))
        previous = streams[source][-1][1] if streams[source] else 0.0
        streams[source].append((ts, max(arrival, previous)))  # a source publishes in its own order
    return grace, streams


def merged(grace: float, streams: dict[str, list[tuple[int, float]]]) -> list[tuple[int, int]]:
    """Poll every POLL_MS: what has arrived is fetched, every source is heard from."""
    merge: EventTimeMerge[str] = EventTimeMerge(grace)
    delivered = {s: 0 for s in SOURCES}
    out: list[tuple[int, int]] = []
    end = max((a for events in streams.values() for _, a in events), default=0.0) + 2 * grace + POLL_MS
    now = 0.0
    while now <= end:
        for precedence, source in enumerate(SOURCES):
            events = streams[source]
            while delivered[source] < len(events) and events[delivered[source]][1] <= now:
                ts, _ = events[delivered[source]]
                merge.add(source, ts, precedence, now, (ts, precedence))
                delivered[source] += 1
        out += merge.ready(SOURCES, lambda source: now)
        now += POLL_MS
    assert merge.buffered() == 0
    return out


@given(published())
def test_skew_within_the_grace_gives_ts_order(case: tuple[float, dict[str, list[tuple[int, float]]]]) -> None:
    grace, streams = case
    out = merged(grace, streams)
    assert sorted(out) == sorted((ts, SOURCES.index(s)) for s, events in streams.items() for ts, _ in events)
    assert out == sorted(out), "ts order, ties by topic precedence"


def test_a_source_behind_its_end_is_waited_for_without_limit() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(10)
    merge.add("trades", 5, 1, 0.0, "fill")
    assert merge.ready(["clients", "trades"], lambda s: None if s == "clients" else 1e9) == []
    merge.add("clients", 3, 0, 1e9, "registration")
    assert merge.ready(["clients", "trades"], lambda s: 1e9) == ["registration", "fill"]


def test_a_source_late_beyond_the_grace_comes_after() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(100)
    merge.add("trades", 5, 1, 0.0, "fill")
    assert merge.ready(["clients", "trades"], lambda s: 50.0) == [], "waits within the grace"
    assert merge.ready(["clients", "trades"], lambda s: 150.0) == ["fill"]
    merge.add("clients", 3, 0, 200.0, "registration")
    assert merge.ready(["clients", "trades"], lambda s: 400.0) == ["registration"]


@given(st.lists(st.tuples(st.sampled_from(SOURCES), st.integers(0, 100)), max_size=40),
       st.integers(0, 100), st.integers(1, 50))
def test_a_barrier_holds_back_what_is_at_or_past_it_until_lifted(events: list[tuple[str, int]], at: int,
                                                                 gap: int) -> None:
    """A version of the terms (an item whose barrier_of is its effective) lets nothing at or past
    its effective out until the barrier is lifted; then the rest comes, in ts order."""
    merge: EventTimeMerge[str] = EventTimeMerge(0.0)
    for source, ts in sorted(events, key=lambda e: e[1]):
        merge.add(source, ts, 0, 0.0, ("input", ts))
    merge.add("terms", at, 0, 0.0, ("version", at))
    effective = at + gap

    def barrier_of(item: tuple[str, int]) -> float | None:
        return effective if item[0] == "version" else None

    every = (*SOURCES, "terms")
    first = merge.ready(every, lambda s: 1.0, barrier_of)
    assert ("version", at) in first and all(ts < effective for _, ts in first)
    assert merge.ready(every, lambda s: 1.0, barrier_of) == []  # still held
    merge.barrier_us = float("inf")
    rest = merge.ready(every, lambda s: 1.0, barrier_of)
    assert all(ts >= effective for _, ts in rest) and len(first) + len(rest) == len(events) + 1
    assert [ts for _, ts in first + rest] == sorted(ts for _, ts in first + rest)
