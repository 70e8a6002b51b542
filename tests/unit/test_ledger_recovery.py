"""The worker's ledger recovering from its changelog: after a batch whose transaction committed or
was aborted, and across holes in the offsets."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from handlers.rules import Rules
from streams.worker import wire
from handlers.state import Seen
from schemas.codec import RAW_KEPT_BYTES
from streams.worker.ledger import PartitionLedger, Record
from streams.worker.ledgerstore import CLIENT
from streams.devtools.sample_day import SampleDay
from tests.support import TOPICS, apply_writes

def records(lines: list[bytes]) -> list[Record]:
    """One partition's log (one partition in all), as the sequencer would have copied it.
    Welcome claims are left out: their verdicts come from another agent."""
    found = []
    for offset, line in enumerate(lines):
        doc = orjson.loads(line)
        broadcast = "client_id" not in doc
        headers = {wire.H_SOURCE: wire.Source("in", 0, offset).header(),
                   wire.H_KIND: wire.KIND_BROADCAST if broadcast else wire.KIND_INPUT}
        found.append(Record(offset, None if broadcast else doc["client_id"].encode(), line, headers))
    return found

def run(ledger: PartitionLedger, batch: list[Record]) -> list[tuple[str, bytes]]:
    for record in batch:
        ledger.handle(record)
    return [(send.topic, send.value) for send in ledger.outbox.take().sends]

def state_of(changelog: dict[bytes, bytes]) -> tuple[bytes, dict[str, bytes]]:
    """What a ledger recovered from ``changelog`` counts: the shared state and every client's state."""
    fresh = PartitionLedger(0, 1, Rules.default(), TOPICS, dict(changelog))
    clients = {key[2:].decode() for key in changelog if key[:2] == CLIENT}
    states = {c: msgspec.json.encode(fresh.store.get(c)) for c in sorted(clients)}
    return msgspec.json.encode(fresh.shared) + str(fresh.store.durable).encode(), states

@pytest.fixture(scope="module")
def log() -> list[Record]:
    """A sample day, with busts early in the second batch of fills from the first: a bust
    rewrites its fill's history entry."""
    lines = [line for line in SampleDay(clients=30, fills=600, seed=11, bad_share=0).lines()
             if b'"welcome.claim"' not in line]
    third = len(lines) // 3
    fills = [orjson.loads(line) for line in lines[:third] if b'"trade.fill"' in line][-8:]
    ts = orjson.loads(lines[third])["ts"]
    busts = [orjson.dumps({"type": "trade.bust", "id": f"bust-{i}", "ts": ts, "client_id": fill["client_id"],
                           "fill_id": fill["fill_id"]}) for i, fill in enumerate(fills)]
    return records(lines[:third + 1] + busts + lines[third + 1:])

def batches(log: list[Record]) -> tuple[list[Record], list[Record], list[Record]]:
    a, b = len(log) // 3, len(log) * 2 // 3
    return log[:a], log[a:b], log[b:]

def reference(log: list[Record]) -> tuple[list[tuple[str, bytes]], dict[bytes, bytes]]:
    """The outputs of the log applied in three batches, and the changelog they leave."""
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    sent, changelog = [], {}
    for batch in batches(log):
        sent += run(ledger, batch)
        apply_writes(changelog, ledger.store.flush()[1])
    return sent, changelog

@pytest.mark.parametrize("committed", [False, True])
def test_a_batch_committed_or_aborted_gives_the_same_outputs_and_state(log: list[Record], committed: bool) -> None:
    """A batch's state writes go to the changelog in the transaction of its outputs: a worker
    killed at the commit leaves them all (committed) or none (aborted, never read)."""
    expected, done = reference(log)
    first, second, third = batches(log)
    changelog: dict[bytes, bytes] = {}
    worker = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    sent_first = run(worker, first)
    apply_writes(changelog, worker.store.flush()[1])
    sent_second = run(worker, second)
    _, writes = worker.store.flush()
    assert len(writes) > 100 and writes[-1][0] == b"s0"  # the partition's own state, the commit, last
    if committed:
        apply_writes(changelog, writes)

    restarted = PartitionLedger(0, 1, Rules.default(), TOPICS, dict(changelog))
    again = run(restarted, second)  # read again from the state's own position
    apply_writes(changelog, restarted.store.flush()[1])
    after = run(restarted, third)
    apply_writes(changelog, restarted.store.flush()[1])

    assert again == ([] if committed else sent_second)
    assert sent_first + sent_second + after == expected
    assert state_of(changelog) == state_of(done)


def test_holes_in_the_offsets_are_transaction_markers_and_change_nothing(log: list[Record]) -> None:
    """The identity registry writes its verdicts into the sequenced log in transactions: each
    leaves a marker that takes an offset, and an aborted one leaves records a read_committed
    reader never sees. A batch read across a rebalance (it may start anywhere) is the loop's
    to drop (streams.worker.processor), so the ledger takes any offset after its last."""
    expected, done = reference(log)
    spaced = [Record(r.offset * 3 + 1, r.key, r.value, r.headers) for r in log]
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    ledger.start_at(0)
    first, second, third = batches(spaced)
    sent, changelog = [], {}
    for batch in (first, second, first[-3:] + third):  # with a redelivery of what it had already
        sent += run(ledger, batch)
        apply_writes(changelog, ledger.store.flush()[1])
    assert sent == expected
    assert state_of(changelog)[1] == state_of(done)[1]  # the same clients (the stamps differ)


def test_a_log_whose_start_was_deleted_starts_at_its_first_offset(log: list[Record]) -> None:
    shifted = [Record(r.offset + 1000, r.key, r.value, r.headers) for r in log]
    expected, _ = reference(log)
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    ledger.start_at(1000)
    assert run(ledger, shifted) == expected


def test_a_malformed_broadcast_is_one_dead_letter_and_no_hole() -> None:
    """Every partition reads a bad broadcast; partition 0 alone tells it, and no partition
    takes it for a missing record."""
    headers = {wire.H_SOURCE: wire.Source("partners.plans", 0, 0).header(), wire.H_KIND: wire.KIND_BROADCAST}
    told = {}
    for partition in (0, 1):
        ledger = PartitionLedger(partition, 2, Rules.default(), TOPICS, {})
        ledger.handle(Record(0, None, b"{not json", headers))
        assert ledger.last == 0
        told[partition] = [s.topic for s in ledger.outbox.take().sends]
    assert told == {0: [TOPICS.deadletter], 1: []}


def test_a_broadcast_copied_twice_is_skipped_without_a_dead_letter() -> None:
    """The sequencer may copy a plan or a day close twice (it crashed between copying and
    committing): the same source position is a second copy, not a redelivery."""
    plan = orjson.dumps({"type": "partner.plan", "id": "plan-1", "ts": "2026-11-24T09:00:00Z", "partner_id": "P",
                         "rebate_per_lot": {"standard": "1"}, "commission_per_lot": {"standard": "2"}})
    first, = records([plan])
    again = Record(1, None, plan, first.headers)
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    assert run(ledger, [first, again]) == []
    redelivered = Record(2, None, plan, {**first.headers, wire.H_SOURCE: wire.Source("in", 0, 9).header()})
    ledger.handle(redelivered)
    assert [orjson.loads(s.value)["reason"] for s in ledger.outbox.take().sends] == ["duplicate"]


def test_views_not_known_to_be_in_redis_are_sent_again_after_a_restart(log: list[Record]) -> None:
    """The read model is written after the batch's state: a worker killed in between leaves
    those views unwritten, and the partition does not apply that batch again. It keeps the offset
    through which its views are in Redis, and a restarted partition sends the later ones again."""
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    first, second, third = batches(log)
    run(ledger, first)
    ledger.store.flush()
    ledger.store.views_published()  # Redis took the first batch's views
    run(ledger, second)
    changed, _ = ledger.store.flush()  # killed before its views reached Redis
    restarted = PartitionLedger(0, 1, Rules.default(), TOPICS, ledger.store.table)
    again = restarted.store.unpublished()
    assert {c.client_id for c, _ in again} == set(changed)
    assert all(version == restarted.store.durable and client == ledger.store.cache[client.client_id] for client, version in again)
    restarted.store.views_published()  # kept with its next flush
    run(restarted, third)
    changed_third, _ = restarted.store.flush()
    later = PartitionLedger(0, 1, Rules.default(), TOPICS, restarted.store.table).store.unpublished()
    assert {c.client_id for c, _ in later} == set(changed_third) != set(changed)


def test_an_input_too_large_to_carry_is_rejected_from_its_stand_in() -> None:
    """The sequencer copies an input over REWARDS_MAX_INPUT_BYTES as its first bytes with its
    size and digest: one ``too_large`` dead letter, with the id its whole bytes would give; a
    broadcast one is dead-lettered by partition 0 only."""
    from handlers.engine import rejection_digest, rejection_id

    whole = orjson.dumps({"type": "trade.fill", "id": "big", "client_id": "c1", "note": "x" * 70_000})
    head = whole[:RAW_KEPT_BYTES]
    oversize = f"{len(whole)}:{rejection_digest(whole)}".encode()

    def stand_in(kind: bytes, partition: int) -> Record:
        return Record(0, b"c1", head, {wire.H_SOURCE: wire.Source("trades", 0, 7).header(),
                                                   wire.H_KIND: kind, wire.H_OVERSIZE: oversize})

    ledger = PartitionLedger(0, 2, Rules.default(), TOPICS, {})
    ledger.start_at(0)
    [(topic, value)] = run(ledger, [stand_in(wire.KIND_INPUT, 0)])
    rejected = orjson.loads(value)
    assert topic == "dead" and rejected["reason"] == "too_large"
    assert rejected["id"] == rejection_id(None, whole) and rejected["raw"].encode() == head
    assert f"{len(whole):,} bytes" in rejected["error"]
    assert rejected["source"] == {"topic": "trades", "partition": 0, "offset": 7}
    other = PartitionLedger(1, 2, Rules.default(), TOPICS, {})
    other.start_at(0)
    assert run(other, [stand_in(wire.KIND_BROADCAST, 1)]) == []
