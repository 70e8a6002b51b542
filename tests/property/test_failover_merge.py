"""Issue 26: the merge through a broker failover, as a pure function of what each source's leader
answers when (streams.worker.merge.Sources). Source A's partition leader is killed: nothing is
answered for it until another replica leads, and A's producer, which wrote to the same leader,
holds what it publishes meanwhile and sends it a little after the new leader first answers.
Source B is led elsewhere and keeps publishing. The merge must still give ts order; taking A's
first empty answer from the new leader as "heard" (what it did before) does not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.merge import EventTimeMerge, Sources

POLL_MS = 20
GRACE_MS = 1000.0
SETTLE_MS = 5000.0
KILL_AT, ELECTED_AT = 2000.0, 14000.0  # ms: A's leader (node 1) dies; node 2 leads A from then


def run(a_events: list[float], b_events: list[float], producer_delay: float, settle_ms: float,
        wait_max_ms: float = 300_000.0, elected_at: float = ELECTED_AT,
        until: float | None = None, leader_seen: bool = True) -> tuple[list[tuple[float, str]], Sources[str]]:
    """Each event's ts is its creation time (ms). A's created during the outage reach Kafka
    ``producer_delay`` after the new leader is elected; B's when created. ``leader_seen``: the
    sequencer's metadata shows A's leader change (else it shows node 1 throughout, as when the
    consumer learns of the new leader before the sequencer's own metadata does)."""
    def arrival(source: str, ts: float) -> float:
        return max(ts, elected_at + producer_delay) if source == "A" and ts >= KILL_AT else ts

    pending = sorted([(arrival("A", ts), ts, "A") for ts in a_events] + [(ts, ts, "B") for ts in b_events])
    merge: EventTimeMerge[str] = EventTimeMerge(GRACE_MS)
    sources: Sources[str] = Sources(settle_ms, wait_max_ms)
    answered = {"A": 0.0, "B": 0.0}
    out: list[tuple[float, str]] = []
    end = until if until is not None else max([p[0] for p in pending] + [elected_at]) + settle_ms + 3 * GRACE_MS
    now, i = 0.0, 0
    while now <= end:
        a_leader = 1 if now < KILL_AT else -1 if now < elected_at else 2
        if a_leader > 0:
            answered["A"] = now
        answered["B"] = now
        while i < len(pending) and pending[i][0] <= now and (pending[i][2] == "B" or a_leader > 0):
            _, ts, source = pending[i]
            merge.add(source, int(ts * 1000), 0 if source == "A" else 1, now, (ts, source))
            i += 1
        leaders = {"A": a_leader if leader_seen else 1, "B": 3}
        heard = {s: sources.heard_at(s, leaders[s], answered[s], True, now) for s in ("A", "B")}  # each turn, all
        out += merge.ready(["A", "B"], heard.__getitem__)
        now += POLL_MS
    return out, sources


def events(draw: st.DrawFn, upto: float) -> list[float]:
    return sorted(float(ms) for ms in draw(st.lists(st.integers(0, int(upto)), max_size=40, unique=True)))


@st.composite
def failovers(draw: st.DrawFn) -> tuple[list[float], list[float], float]:
    a = events(draw, 20_000)
    b = events(draw, 20_000)
    return a, b, draw(st.floats(0, SETTLE_MS - 2 * POLL_MS))


@settings(max_examples=150, deadline=None)
@given(failovers(), st.booleans())
def test_a_source_whose_leader_fails_over_keeps_ts_order(case: tuple[list[float], list[float], float],
                                                         leader_seen: bool) -> None:
    a, b, producer_delay = case
    out, _ = run(a, b, producer_delay, SETTLE_MS, leader_seen=leader_seen)
    assert sorted(out) == sorted([(ts, "A") for ts in a] + [(ts, "B") for ts in b]), "every event once"
    assert out == sorted(out), "ts order, ties by topic precedence (A's first)"


def test_taking_the_new_leaders_first_answer_as_heard_breaks_the_order() -> None:
    """The merge before issue 26 (no settling): A's first empty answer from its new leader lets
    out B's inputs held during the outage, before what A's producer held comes."""
    a, b = [1000.0, 5000.0], [1500.0, 6000.0, 9000.0]
    out, _ = run(a, b, producer_delay=800, settle_ms=0)
    assert [ts for ts, _ in out] != sorted(ts for ts, _ in out)
    out, _ = run(a, b, producer_delay=800, settle_ms=SETTLE_MS)
    assert [ts for ts, _ in out] == [1000.0, 1500.0, 5000.0, 6000.0, 9000.0]


def test_an_unanswered_source_is_waited_for_up_to_the_bound_and_reported() -> None:
    """A's leader never comes back: B's inputs wait, A is reported unanswered, and once the bound
    has passed the merge goes on without A (and says so once)."""
    b = [3000.0, 4000.0]
    out, sources = run([1000.0], b, 0, SETTLE_MS, wait_max_ms=30_000, elected_at=10**9, until=20_000)
    assert out == [(1000.0, "A")]
    waiting = sources.waiting(20_000)
    assert [(s, state) for s, state, _ in waiting] == [("A", "unanswered")] and 17 < waiting[0][2] < 19
    assert sources.given_up == []
    out, sources = run([1000.0], b, 0, SETTLE_MS, wait_max_ms=30_000, elected_at=10**9, until=40_000)
    assert out == [(1000.0, "A"), (3000.0, "B"), (4000.0, "B")]
    assert sources.given_up == ["A"]


def test_the_first_leader_the_client_learns_is_not_a_change() -> None:
    sources: Sources[str] = Sources(SETTLE_MS, 300_000)
    assert sources.heard_at("A", None, None, False, 0) is None
    assert sources.heard_at("A", 2, 100.0, True, 120) == 100.0
    assert sources.waiting(120) == []
