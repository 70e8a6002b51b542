"""The identity registry: one Welcome Bonus per verified person, decided in ``ts`` order, pure of Kafka.
Touch it for how claims wait and are decided; how it runs and commits is streams.worker.processor's.

A welcome claim that passes its client's own checks is sent by the client's ledger partition to
the registry partition of its identity hash (streams.worker.ledger.DeferredIdentities); the verdict
goes back into the client's sequenced partition. Two clients of one person can sit in different
ledger partitions, which run independently, so the claim that reaches the registry first is not
always the earlier one. A claim therefore waits until no earlier one can still come. Every
sequencer task marks its Progress in its sequenced partition (the ts it has copied up to, and
whether it had copied all its inputs); its ledger partition, having applied the mark and so every
claim before it, sends it on here (streams.worker.ledger, ``PartitionLedger.turn``). A claim of ts T is decided once every
partition has passed T or, ``settle_ms`` after the claim came, had copied and applied all of its
inputs. Claims are
decided in (ts, client, claim id) order and the earliest takes the identity, as in ``rewards
replay --order ts``. A claim that comes later than that (its client's inputs were published more
than the merge's grace late, or it waited for its account in the ledger's parking) is decided
when it comes.

It runs on the partition runtime (streams.worker.processor; streams.worker.registryloop). A
turn's effects, the new owners to the changelog and the verdicts into the claimants' sequenced
partitions, go in one transaction with the partition's own state (its commit): no verdict is
told without the owner it depends on. A claim decided again after a crash (its transaction
aborted) is decided as before.

The table (the compacted changelog ``<app>-identities-changelog``): ``identity hash -> owning client``, and ``STATE_KEY`` -> the
partition's RegistryState.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

import msgspec

from schemas.timefmt import parse_ts_us
from streams.worker import wire
from streams.worker.partitioning import partition_for
from streams.worker.position import OwnPosition
from streams.worker.processor import Turn
from streams.worker.wire import Send

STATE_KEY: Final = b"\x00registry"
PROGRESS_FLUSH_MS: Final = 5000  # progress alone is written this often: a restart reads the marks since again


class _Claim(msgspec.Struct):
    id: str
    ts: str


_claim = msgspec.json.Decoder(_Claim)


class RegistryPartition(OwnPosition):
    state: wire.RegistryState

    def __init__(self, partition: int, ledger_partitions: int, settle_ms: float,
                 table: MutableMapping[bytes, bytes], changelog: str = "", sequenced: str = "") -> None:
        self.partition, self.ledger_partitions, self.settle_ms = partition, ledger_partitions, settle_ms
        self.changelog, self.sequenced = changelog, sequenced  # where its owners and its verdicts go
        self.table = table
        raw = table.get(STATE_KEY)
        self.state = wire.RegistryState() if raw is None else wire.registry_states.decode(raw)
        self.arrived: dict[str, float] = {}  # claim id -> when it came (a restart counts as coming)
        self.owners: dict[bytes, bytes] = {}  # decided since the last flush
        self.dirty = False  # claims came or were decided since the last flush
        self.progressed = False  # only progress marks came
        self.flushed_ms = 0.0

    def accept(self, offset: int, kind: bytes | None, value: bytes, now_ms: float) -> None:
        """Take one record of the identity topic."""
        state = self.state
        if not self.advance(offset):
            return  # applied before this restart
        if kind == wire.KIND_PROGRESS:
            self.progressed = True
            report = wire.progress_reports.decode(value)
            if report.offset <= state.marks.get(report.partition, -1):
                return  # an older mark, sent again by a ledger partition re-applying its log
            state.marks[report.partition] = report.offset
            state.clocks[report.partition] = max(state.clocks.get(report.partition, 0), report.clock_us)
            state.caught_up[report.partition] = report.caught_up
            return
        request = wire.identity_requests.decode(value)
        claim = _claim.decode(request.claim)
        if any(w.claim_id == claim.id for w in state.waiting):
            self.progressed = True
            return  # the same request again (its ledger partition re-applied a batch)
        waiting = wire.WaitingClaim(parse_ts_us(claim.ts), request.client_id, claim.id, request.identity_hash,
                                    request.claim, offset)
        self.dirty = True
        state.waiting.append(waiting)
        state.waiting.sort(key=lambda w: (w.ts_us, w.client_id, w.claim_id))
        self.arrived[claim.id] = now_ms

    def decide(self, now_ms: float) -> list[bytes]:
        """The verdicts that can be given now, in ts order (encoded wire.Verdict)."""
        state, verdicts = self.state, []
        while state.waiting:
            claim = state.waiting[0]
            settled = now_ms >= self.arrived.setdefault(claim.claim_id, now_ms) + self.settle_ms
            if not all(state.clocks.get(p, -1) >= claim.ts_us or (settled and state.caught_up.get(p, False))
                       for p in range(self.ledger_partitions)):
                break
            state.waiting.pop(0)
            self.arrived.pop(claim.claim_id, None)
            key = claim.identity_hash.encode()
            owner = self.owners.get(key) or self.table.get(key)
            if owner is None:
                owner = self.owners[key] = claim.client_id.encode()
            verdicts.append(wire.encode(wire.Verdict(claim.client_id, claim.claim, owner == claim.client_id.encode())))
        if verdicts:
            self.dirty = True
        return verdicts

    def flush(self, now_ms: float) -> list[tuple[bytes, bytes]]:
        """The writes for the changelog, the partition's state last (the commit); applied to the
        table. Empty when no claim came or was decided, and progress alone was written less than
        PROGRESS_FLUSH_MS ago (what was not written is read again after a restart)."""
        if not (self.dirty or (self.progressed and now_ms - self.flushed_ms >= PROGRESS_FLUSH_MS)):
            return []
        writes = list(self.owners.items()) + [(STATE_KEY, wire.encode(self.state))]
        for key, value in writes:
            self.table[key] = value
        self.owners, self.dirty, self.progressed, self.flushed_ms = {}, False, False, now_ms
        return writes

    def committed_offset(self) -> int:
        """For lag: the first request still waiting, else the next offset. A claim waiting shows
        as lag, so 'caught up' means every claim answered."""
        waiting = [w.offset for w in self.state.waiting]
        return min(waiting, default=self.state.last + 1)

    # -- on the partition runtime (streams.worker.processor) ---------------------------------------------
    def take(self, record: Any, now_ms: float) -> None:
        self.accept(record.offset, dict(record.headers or ()).get(wire.H_KIND), record.value, now_ms)

    def effects(self, now_ms: float) -> list[Send]:
        """The owners decided, to the changelog, and the verdicts, into the claimants' sequenced partitions."""
        verdicts = self.decide(now_ms)
        owners = [Send(self.changelog, key, value, self.partition) for key, value in self.owners.items()]
        for key, value in self.owners.items():
            self.table[key] = value
        self.owners = {}
        n, sends = self.ledger_partitions, owners
        for value in verdicts:
            client_key = wire.verdicts.decode(value).client_id.encode()
            sends.append(Send(self.sequenced, client_key, value, partition_for(client_key, n),
                              [(wire.H_KIND, wire.KIND_VERDICT)]))
        return sends

    def turn(self, now_ms: float) -> Turn:
        """The owners and verdicts decided, the state writes, and the first claim still waiting."""
        sends = self.effects(now_ms)
        return Turn(sends, self.flush(now_ms), self.committed_offset())
