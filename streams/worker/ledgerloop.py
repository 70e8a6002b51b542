"""The ledger's job on the partition runtime: the sequenced log applied by streams.worker.ledger, then
metrics and the clients' views in the Redis read model after each turn's commit. Touch it for what
the worker observes of the ledger; the decisions are not here.

Its own consumer group, ``<app>-ledger``, on ``<app>.sequenced``; its state in the compacted
``<app>-state-changelog`` (same partition number); its position in its state (streams.worker.processor
says how a turn commits). Touch it for what the worker observes of the ledger; the decisions are not here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from handlers import terms
from handlers.rules import Rules
from streams.worker.ledger import PartitionLedger
from streams.worker.ledgerstore import shared_key, stamp_of
from streams.worker.ports import Topics
from streams.ops.metrics import Metrics
from streams.worker.processor import ProcessorJob, Turn
from streams.ops.readmodel import ReadModel, View
from streams.settings import Settings

CACHE_MAX = 100_000  # clients kept decoded per partition


class LedgerJob(ProcessorJob[PartitionLedger]):
    name = "ledger"
    kind = "ledger"

    def __init__(self, settings: Settings, metrics: Metrics, rules: Rules, topics: Topics,
                 read_model: ReadModel) -> None:
        super().__init__(settings, metrics, topic=settings.sequenced_topic, group=settings.ledger_group,
                         changelog=settings.state_changelog, max_partition_fetch_bytes=4 * 1024 * 1024)
        self.rules, self.addresses, self.read_model = rules, topics, read_model
        self.applied = 0  # records applied by this worker
        self.skipped = 0  # records whose effects the state already had

    def make(self, partition: int, table: dict[bytes, bytes]) -> PartitionLedger:
        return PartitionLedger(partition, self.settings.partitions, self.rules, self.addresses, table)

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        return stamp_of(value) if key == shared_key(partition) else None

    async def recovered(self, processor: PartitionLedger) -> None:
        # views of the last batches before a crash may not have reached Redis: again (guarded by version)
        await self.read_model.write(self.read_model.render(processor.store.unpublished(), processor.shared.terms))
        # The version in force as recovered: a partition with nothing left to apply has no turn to
        # show it. (Added: the next turn's observation redraws every partition held.)
        self._show_terms(processor.partition, processor)

    def _observe_terms(self) -> None:
        metrics = self.metrics
        metrics.terms_version.clear()
        for partition, ledger in self.processors.items():
            self._show_terms(partition, ledger)
        metrics.terms_late.set(sum(ledger.shared.terms_late for ledger in self.processors.values()))

    def _show_terms(self, partition: int, ledger: PartitionLedger) -> None:
        in_force = terms.version_at(ledger.shared.terms, ledger.shared.clock_us)
        self.metrics.terms_version.labels(str(partition), "rules-file" if in_force is None else in_force.version).set(1)
        self.read_model.timeline = ledger.shared.terms

    def terms(self) -> dict[str, Any]:
        """The terms in force at the newest event time of the partitions held, and the next change."""
        if not self.processors:
            return {"in_force": None, "next": None, "versions": 0, "late": 0, "event_time": None}
        ledger = max(self.processors.values(), key=lambda held: held.shared.clock_us)
        clock = ledger.shared.clock_us
        in_force = terms.version_at(ledger.shared.terms, clock)
        upcoming = [v for v in ledger.shared.terms if v.effective_us > clock]
        return {"in_force": None if in_force is None else {"version": in_force.version, "effective": in_force.effective,
                                                           "digest": in_force.digest},
                "next": None if not upcoming else {"version": upcoming[0].version, "effective": upcoming[0].effective},
                "versions": len(ledger.shared.terms), "late": sum(held.shared.terms_late
                                                                  for held in self.processors.values()),
                "event_time": clock}

    def assigned(self, count: int) -> None:
        self.metrics.rebalanced(count)

    def assignment(self) -> list[int]:
        """The partitions of the sequenced log held now (for the status page)."""
        return sorted(self.units)

    def observed(self, turns: list[tuple[PartitionLedger, Turn]]) -> Callable[[], Awaitable[None]]:
        """The changed clients' views are rendered as the turn ends (the next turn changes the
        clients in place while it commits), with how far each partition had flushed."""
        views: dict[str, View] = {}
        through = []
        for ledger, turn in turns:
            store = ledger.store
            views.update(self.read_model.render([(store.cache[c], version) for c, version in turn.report.changed.items()],
                                                ledger.shared.terms))
            through.append((ledger, store.durable))
            if len(store.cache) > CACHE_MAX:
                store.forget_cache()
        return lambda: self.observe_committed(turns, views, through)

    async def observe_committed(self, turns: list[tuple[PartitionLedger, Turn]], views: dict[str, View],
                                through: list[tuple[PartitionLedger, int]]) -> None:
        metrics = self.metrics
        types: Counter[str] = Counter()
        event_ts: list[int] = []
        appended: list[float] = []
        outputs = []
        for _, turn in turns:
            outbox = turn.report
            outputs += outbox.outputs
            types.update(outbox.applied)
            event_ts += outbox.event_ts
            appended += outbox.appended
            self.skipped += outbox.skipped
            metrics.redeliveries.inc(outbox.skipped)
            metrics.parked_total.inc(outbox.parked)
            metrics.parked_expired.inc(outbox.expired)
        metrics.parked.set(sum(ledger.shared.parked_events for ledger in self.processors.values()))
        self._observe_terms()
        self.applied += len(appended)
        metrics.observe_outputs(outputs)
        metrics.observe_applied(types, event_ts, appended)
        if await self.read_model.write(views):
            for ledger, stamp in through:
                ledger.store.views_published(stamp)
