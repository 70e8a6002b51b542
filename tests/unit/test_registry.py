"""The identity registry deciding welcome claims in ts order (streams.worker.registry), fed by hand:
claims of one person from two ledger partitions reaching it in either order, the ledger
partitions' progress, and restarts between its writes."""

from __future__ import annotations

import itertools

import orjson

from schemas.timefmt import parse_ts_us
from streams.worker import wire
from streams.worker.partitioning import partition_for
from streams.worker.registry import STATE_KEY, RegistryPartition

SETTLE_MS = 2500


def claim(client: str, ts: str, identity: str = "id-1") -> bytes:
    event = {"type": "welcome.claim", "id": f"claim-{client}", "ts": f"2026-11-23T{ts}Z", "client_id": client,
             "account_id": f"{client}-a0"}
    return wire.encode(wire.IdentityRequest(identity, client, orjson.dumps(event)))


_marks = itertools.count()


def progress(partition: int, ts: str, caught_up: bool = False, offset: int | None = None) -> bytes:
    """A partition's Progress mark, as its ledger partition sends it on (``offset``: of the mark
    in the sequenced log; each new one comes later)."""
    offset = next(_marks) if offset is None else offset
    return wire.encode(wire.Progress(partition, parse_ts_us(f"2026-11-23T{ts}Z"), caught_up, offset))


class Feed:
    """The identity topic of one registry partition: requests and progress reports in order."""

    def __init__(self, registry: RegistryPartition) -> None:
        self.registry, self.offset = registry, 0

    def request(self, value: bytes, now_ms: float = 0) -> None:
        self.registry.accept(self.offset, None, value, now_ms)
        self.offset += 1

    def report(self, value: bytes, now_ms: float = 0) -> None:
        self.registry.accept(self.offset, wire.KIND_PROGRESS, value, now_ms)
        self.offset += 1

    def all_past(self, ts: str) -> None:
        """Both ledger partitions report having passed ``ts``."""
        self.report(progress(0, ts))
        self.report(progress(1, ts))


def answers(verdicts: list[bytes]) -> list[tuple[str, bool]]:
    return [(v.client_id, v.identity_free) for v in map(wire.verdicts.decode, verdicts)]


def fresh(table: dict[bytes, bytes] | None = None) -> RegistryPartition:
    return RegistryPartition(0, 2, SETTLE_MS, {} if table is None else table)


def test_the_earlier_claim_wins_though_it_comes_second() -> None:
    registry = fresh()
    feed = Feed(registry)
    feed.request(claim("c-late", "10:00:05"))  # partition 1's client, later in ts, but first to arrive
    feed.report(progress(1, "10:00:06"))
    assert registry.decide(0) == []  # partition 0 has not passed 10:00:05: an earlier claim may come
    feed.request(claim("c-early", "10:00:01"))
    feed.report(progress(0, "10:00:07"))
    assert answers(registry.decide(0)) == [("c-early", True), ("c-late", False)]


def test_a_claim_waits_for_every_partition_to_pass_its_ts() -> None:
    registry = fresh()
    feed = Feed(registry)
    feed.request(claim("c1", "10:00:05"))
    feed.report(progress(0, "10:00:05"))
    feed.report(progress(1, "10:00:04"))
    assert registry.decide(0) == [] and registry.committed_offset() == 0  # waiting: counted as lag
    feed.report(progress(1, "10:00:09"))
    assert answers(registry.decide(0)) == [("c1", True)]
    assert registry.committed_offset() == feed.offset


def test_a_partition_that_has_applied_its_log_is_waited_for_the_settle_time_only() -> None:
    registry = fresh()
    feed = Feed(registry)
    feed.report(progress(1, "09:00:00", caught_up=True))  # nothing more to apply; its clock stays behind
    feed.request(claim("c1", "10:00:05"), now_ms=1000)
    feed.report(progress(0, "10:00:05"))
    assert registry.decide(1000 + SETTLE_MS - 1) == []
    assert answers(registry.decide(1000 + SETTLE_MS)) == [("c1", True)]


def test_a_request_sent_twice_waits_once_and_gets_the_same_answer() -> None:
    registry = fresh()
    feed = Feed(registry)
    feed.request(claim("c1", "10:00:05"))
    feed.request(claim("c1", "10:00:05"))
    feed.all_past("11:00:00")
    assert answers(registry.decide(0)) == [("c1", True)]
    feed.request(claim("c1", "10:00:05"))  # again, after its verdict (the ledger skips a second one)
    assert answers(registry.decide(0)) == [("c1", True)]


def sequenced_answers(sends: list[wire.Send]) -> list[tuple[str, bool]]:
    return answers([send.value for send in sends])


def test_a_restart_after_the_verdicts_before_the_commit_decides_the_same() -> None:
    """The owners reached the changelog and the verdicts the sequenced log; the commit did not.
    The claims are read and decided again, against those owners: the same verdicts (the ledger
    recognises the second copy), and each goes to its claimant's sequenced partition."""
    registry = RegistryPartition(0, 2, SETTLE_MS, {}, changelog="identities", sequenced="sequenced")
    feed = Feed(registry)
    feed.request(claim("c2", "10:00:02"))
    feed.request(claim("c1", "10:00:01"))
    feed.all_past("11:00:00")
    sends = registry.turn(0).sends
    owners = [s for s in sends if s.topic == "identities"]
    verdicts = [s for s in sends if s.topic != "identities"]
    assert [(s.topic, s.key, s.partition) for s in owners] == [("identities", b"id-1", 0)]
    assert {s.topic for s in verdicts} == {"sequenced"}
    assert all(s.partition == partition_for(s.key, 2) for s in verdicts)
    restarted = RegistryPartition(0, 2, SETTLE_MS, {s.key: s.value for s in owners},
                                  changelog="identities", sequenced="sequenced")
    replay = Feed(restarted)
    replay.request(claim("c2", "10:00:02"))
    replay.request(claim("c1", "10:00:01"))
    replay.all_past("11:00:00")
    assert sequenced_answers(restarted.turn(0).sends) == sequenced_answers(verdicts) == [("c1", True), ("c2", False)]


def test_a_restart_between_the_owners_and_the_commit_decides_the_same() -> None:
    """The owners reached the changelog, the partition's state did not: the claims are decided
    again from the old state, against the new owners, with the same verdicts."""
    registry = fresh()
    feed = Feed(registry)
    feed.request(claim("c2", "10:00:02"))
    feed.request(claim("c1", "10:00:01"))
    feed.all_past("11:00:00")
    before = dict(registry.table)
    decided = answers(registry.decide(0))
    writes = registry.flush(0)
    assert writes[-1][0] == STATE_KEY
    table = {**before, **dict(writes[:-1])}  # all but the commit
    restarted = fresh(table)
    replay = Feed(restarted)
    replay.request(claim("c2", "10:00:02"))
    replay.request(claim("c1", "10:00:01"))
    replay.all_past("11:00:00")
    assert answers(restarted.decide(0)) == decided == [("c1", True), ("c2", False)]


def test_owners_written_by_earlier_versions_count() -> None:
    registry = fresh({b"id-1": b"c-old"})  # the Faust table's record: identity -> client
    feed = Feed(registry)
    feed.request(claim("c1", "10:00:01"))
    feed.all_past("11:00:00")
    assert answers(registry.decide(0)) == [("c1", False)]


def test_a_record_at_or_below_the_position_is_skipped_and_holes_are_markers() -> None:
    registry = fresh()
    registry.start_at(10)
    registry.accept(12, None, claim("c1", "10:00:01"), 0)
    assert registry.last == 12  # 10, 11: a marker
    registry.accept(12, None, claim("c1", "10:00:01"), 0)
    assert len(registry.state.waiting) == 1


def test_an_older_mark_sent_again_is_ignored() -> None:
    """A ledger partition re-applying its log after a restart sends its older marks again: an
    old 'caught up' must not stand for the partition now."""
    registry = fresh()
    feed = Feed(registry)
    feed.report(progress(1, "09:00:00", caught_up=True, offset=10))
    feed.report(progress(1, "09:30:00", caught_up=False, offset=20))
    feed.report(progress(1, "09:00:00", caught_up=True, offset=10))  # again
    feed.request(claim("c1", "10:00:05"), now_ms=0)
    feed.report(progress(0, "10:00:05"))
    assert registry.decide(SETTLE_MS * 10) == []
