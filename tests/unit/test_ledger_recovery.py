"""The worker's ledger recovering from its changelog: after a batch whose transaction committed or
was aborted, from a changelog an older version left half-written, across holes in the offsets."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from handlers.rules import Rules
from streams.worker import wire
from handlers.state import Seen
from schemas.codec import RAW_KEPT_BYTES
from streams.worker.ledger import SEP, PartitionLedger, Record
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
        found.append(Record(0, offset, None if broadcast else doc["client_id"].encode(), line, headers))
    return found

def run(ledger: PartitionLedger, batch: list[Record]) -> list[tuple[str, bytes]]:
    for record in batch:
        ledger.handle(record)
    return [(send.topic, send.value) for send in ledger.take_outbox().sends]

def state_of(changelog: dict[bytes, bytes]) -> tuple[bytes, dict[str, bytes]]:
    """What a ledger recovered from ``changelog`` counts: the shared state and every client's state."""
    fresh = PartitionLedger(0, 1, Rules.default(), TOPICS, dict(changelog))
    clients = {key[3:].decode() for key in changelog if key[:1] == b"c"}
    states = {c: msgspec.json.encode(fresh.get(c)) for c in sorted(clients)}
    return msgspec.json.encode(fresh.shared) + str(fresh.durable).encode(), states

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
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {}, log_writes=True)
    sent, changelog = [], {}
    for batch in batches(log):
        sent += run(ledger, batch)
        apply_writes(changelog, ledger.flush_state()[1])
    return sent, changelog

@pytest.mark.parametrize("committed", [False, True])
def test_a_batch_committed_or_aborted_gives_the_same_outputs_and_state(log: list[Record], committed: bool) -> None:
    """A batch's state writes go to the changelog in the transaction of its outputs: a worker
    killed at the commit leaves them all (committed) or none (aborted, never read)."""
    expected, done = reference(log)
    first, second, third = batches(log)
    changelog: dict[bytes, bytes] = {}
    worker = PartitionLedger(0, 1, Rules.default(), TOPICS, {}, log_writes=True)
    sent_first = run(worker, first)
    apply_writes(changelog, worker.flush_state()[1])
    sent_second = run(worker, second)
    _, writes = worker.flush_state()
    assert len(writes) > 100 and writes[-1][0] == b"s0"  # the partition's own state, the commit, last
    if committed:
        apply_writes(changelog, writes)

    restarted = PartitionLedger(0, 1, Rules.default(), TOPICS, dict(changelog), log_writes=True)
    again = run(restarted, second)  # read again from the state's own position
    apply_writes(changelog, restarted.flush_state()[1])
    after = run(restarted, third)
    apply_writes(changelog, restarted.flush_state()[1])

    assert again == ([] if committed else sent_second)
    assert sent_first + sent_second + after == expected
    assert state_of(changelog) == state_of(done)


def test_a_batch_an_older_version_left_half_written_does_not_count() -> None:
    """Before transactions a worker killed between its state writes left part of a batch in the
    changelog, each history entry with the value it replaced: an entry stamped after the
    partition's commit counts as that value, or as nothing, and neither does a client slot."""
    def stamped(offset: int, previous: bytes, value: bytes) -> bytes:
        return offset.to_bytes(8, "big", signed=True) + len(previous).to_bytes(4, "big") + previous + value

    old, new = (msgspec.msgpack.encode(Seen(bytes([n]), n, f"in:0:{n}")) for n in (1, 2))
    empty = PartitionLedger(0, 1, Rules.default(), TOPICS, {}, log_writes=True)
    empty.start_at(0)
    empty.handle(records([b'{"type": "settlement.day_closed", "id": "x", "ts": "2026-11-24T00:00:00Z", '
                          b'"date": "2026-11-23"}'])[0])
    _, writes = empty.flush_state()
    changelog = dict((key, value) for key, value in writes if value is not None)  # committed through offset 0
    changelog[b"hc1" + SEP + b"se1"] = stamped(0, b"", old)      # written by the committed batch
    changelog[b"hc1" + SEP + b"se2"] = stamped(5, b"", new)      # by the half-written one: new then
    changelog[b"hc2" + SEP + b"se1"] = stamped(5, old, new)      # by the half-written one: replaced
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, changelog)
    assert ledger.durable == 0
    assert ledger.history("c1").seen("e1") == Seen(b"\x01", 1, "in:0:1")
    assert ledger.history("c1").seen("e2") is None
    assert ledger.history("c2").seen("e1") == Seen(b"\x01", 1, "in:0:1")

def test_holes_in_the_offsets_are_transaction_markers_and_change_nothing(log: list[Record]) -> None:
    """The identity registry writes its verdicts into the sequenced log in transactions: each
    leaves a marker that takes an offset, and an aborted one leaves records a read_committed
    reader never sees. A batch read across a rebalance (it may start anywhere) is the loop's
    to drop (streams.worker.processor), so the ledger takes any offset after its last."""
    expected, done = reference(log)
    spaced = [Record(r.partition, r.offset * 3 + 1, r.key, r.value, r.headers) for r in log]
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {}, log_writes=True)
    ledger.start_at(0)
    first, second, third = batches(spaced)
    sent, changelog = [], {}
    for batch in (first, second, first[-3:] + third):  # with a redelivery of what it had already
        sent += run(ledger, batch)
        apply_writes(changelog, ledger.flush_state()[1])
    assert sent == expected
    assert state_of(changelog)[1] == state_of(done)[1]  # the same clients (the stamps differ)


def test_a_log_whose_start_was_deleted_starts_at_its_first_offset(log: list[Record]) -> None:
    shifted = [Record(r.partition, r.offset + 1000, r.key, r.value, r.headers) for r in log]
    expected, _ = reference(log)
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {}, log_writes=True)
    ledger.start_at(1000)
    assert run(ledger, shifted) == expected


def test_a_malformed_broadcast_is_one_dead_letter_and_no_hole() -> None:
    """Every partition reads a bad broadcast; partition 0 alone tells it, and no partition
    takes it for a missing record."""
    headers = {wire.H_SOURCE: wire.Source("partners.plans", 0, 0).header(), wire.H_KIND: wire.KIND_BROADCAST}
    told = {}
    for partition in (0, 1):
        ledger = PartitionLedger(partition, 2, Rules.default(), TOPICS, {})
        ledger.handle(Record(partition, 0, None, b"{not json", headers))
        assert ledger.last == 0
        told[partition] = [s.topic for s in ledger.take_outbox().sends]
    assert told == {0: [TOPICS.deadletter], 1: []}


def test_a_broadcast_copied_twice_is_skipped_without_a_dead_letter() -> None:
    """The sequencer may copy a plan or a day close twice (it crashed between copying and
    committing): the same source position is a second copy, not a redelivery."""
    plan = orjson.dumps({"type": "partner.plan", "id": "plan-1", "ts": "2026-11-24T09:00:00Z", "partner_id": "P",
                         "rebate_per_lot": {"standard": "1"}, "commission_per_lot": {"standard": "2"}})
    first, = records([plan])
    again = Record(0, 1, None, plan, first.headers)
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    assert run(ledger, [first, again]) == []
    redelivered = Record(0, 2, None, plan, {**first.headers, wire.H_SOURCE: wire.Source("in", 0, 9).header()})
    ledger.handle(redelivered)
    assert [orjson.loads(s.value)["reason"] for s in ledger.take_outbox().sends] == ["duplicate"]


def test_views_not_known_to_be_in_redis_are_sent_again_after_a_restart(log: list[Record]) -> None:
    """The read model is written after the batch's state: a worker killed in between leaves
    those views unwritten, and the partition does not apply that batch again. It keeps the offset
    through which its views are in Redis, and a restarted partition sends the later ones again."""
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, {}, log_writes=True)
    first, second, third = batches(log)
    run(ledger, first)
    ledger.flush_state()
    ledger.views_published()  # Redis took the first batch's views
    run(ledger, second)
    changed, _ = ledger.flush_state()  # killed before its views reached Redis
    restarted = PartitionLedger(0, 1, Rules.default(), TOPICS, ledger.table, log_writes=True)
    again = restarted.unpublished()
    assert {c.client_id for c, _ in again} == set(changed)
    assert all(version == restarted.durable and client == ledger.cache[client.client_id] for client, version in again)
    restarted.views_published()  # kept with its next flush
    run(restarted, third)
    changed_third, _ = restarted.flush_state()
    later = PartitionLedger(0, 1, Rules.default(), TOPICS, restarted.table).unpublished()
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
        return Record(partition, 0, b"c1", head, {wire.H_SOURCE: wire.Source("trades", 0, 7).header(),
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


def test_a_client_in_an_older_versions_second_slot_moves_to_the_first(log: list[Record]) -> None:
    """Versions before transactions alternated each client's state between two slots: the newer
    slot counts, and the client's next write goes to the first with a tombstone for the second."""
    _, changelog = reference(log)
    first = next(key for key in changelog if key[:3] == b"c0" + SEP)
    second, client, counted = b"c1" + SEP + first[3:], first[3:].decode(), changelog[first]
    older = (int.from_bytes(counted[:8], "big") - 1).to_bytes(8, "big") + b"\x90"  # an older write, in slot 0
    changelog[first], changelog[second] = older, counted
    ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, dict(changelog), log_writes=True)
    state = ledger.get(client)
    assert state is not None and msgspec.msgpack.encode(state) == counted[8:]
    ledger.last += 1  # a record that changed it
    ledger.put(state)
    _, writes = ledger.flush_state()
    assert (first, ledger.table[first]) in writes and (second, None) in writes
    assert second not in ledger.table
