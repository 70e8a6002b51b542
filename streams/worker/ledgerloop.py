"""The ledger on the processor loop: the sequenced log applied by streams.worker.ledger.

Its own consumer group, ``<app>-ledger``, on ``<app>.sequenced``; its state in the compacted
``<app>-state-changelog`` (same partition number); its position in its state (streams.worker.processor
says how a turn goes). After each turn's commit it updates the metrics and writes the clients'
views to the Redis read model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from handlers import terms
from handlers.rules import Rules
from streams.worker.kafkaio import Sender
from streams.worker.ledger import PartitionLedger, Topics
from streams.ops.metrics import Metrics
from streams.worker.processor import Crash, ProcessorLoop
from streams.ops.readmodel import ReadModel
from streams.settings import Settings

CACHE_MAX = 100_000  # clients kept decoded per partition


class LedgerLoop(ProcessorLoop[PartitionLedger]):
    name = "ledger"
    kind = "ledger"

    def __init__(self, settings: Settings, sender: Sender, metrics: Metrics, crash: Crash, rules: Rules,
                 topics: Topics, read_model: ReadModel) -> None:
        super().__init__(settings, sender, metrics, crash, topic=settings.sequenced_topic, group=settings.ledger_group,
                         changelog=settings.state_changelog, max_partition_fetch_bytes=4 * 1024 * 1024)
        self.rules, self.topics, self.read_model = rules, topics, read_model
        self.applied = 0  # records applied by this worker
        self.skipped = 0  # records whose effects the state already had

    def make(self, partition: int, table: dict[bytes, bytes]) -> PartitionLedger:
        return PartitionLedger(partition, self.settings.partitions, self.rules, self.topics, table, log_writes=True)

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        return int.from_bytes(value[:8], "big", signed=True) if key == b"s%d" % partition else None

    async def recovered(self, processor: PartitionLedger) -> None:
        # views of the last batches before a crash may not have reached Redis: again (guarded by version)
        await self.read_model.publish(processor.unpublished())

    def _observe_terms(self) -> None:
        metrics = self.metrics
        metrics.terms_version.clear()
        for partition, ledger in self.processors.items():
            in_force = terms.version_at(ledger.shared.terms, ledger.shared.clock_us)
            metrics.terms_version.labels(str(partition), "rules-file" if in_force is None else in_force.version).set(1)
            self.read_model.timeline = ledger.shared.terms
        metrics.terms_late.set(sum(ledger.shared.terms_late for ledger in self.processors.values()))

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

    async def on_partitions_assigned(self, assigned: list[Any]) -> None:
        await super().on_partitions_assigned(assigned)
        self.metrics.rebalanced(len(assigned))

    async def after_turn(self, touched: list[PartitionLedger]) -> None:
        metrics = self.metrics
        types: Counter[str] = Counter()
        event_ts: list[int] = []
        appended: list[float] = []
        outputs = []
        views = []
        for ledger in self.processors.values():
            outbox = ledger.take_outbox()
            outputs += outbox.outputs
            types.update(outbox.applied)
            event_ts += outbox.event_ts
            appended += outbox.appended
            self.skipped += outbox.skipped
            metrics.redeliveries.inc(outbox.skipped)
            metrics.parked_total.inc(outbox.parked)
            metrics.parked_expired.inc(outbox.expired)
            views += [(ledger.cache[c], version) for c, version in ledger.changed.items()]
            ledger.changed = {}
            if len(ledger.cache) > CACHE_MAX:
                ledger.forget_cache()
        metrics.parked.set(sum(ledger.shared.parked_events for ledger in self.processors.values()))
        self._observe_terms()
        self.applied += len(appended)
        metrics.observe_outputs(outputs)
        metrics.observe_applied(types, event_ts, appended)
        if await self.read_model.publish(views):
            for ledger in self.processors.values():
                ledger.views_published()
