"""The commission book's job (streams.worker.commissions) on the partition runtime: how its partitions
are made, where their commit is and what is observed. Touch it for those; what a close pays is
streams.worker.commissions's.

Its own group, ``<app>-commissions``, on the commission topic; its state in the compacted
``<app>-commissions-changelog``.
"""

from __future__ import annotations

from handlers.rules import Rules
from streams.ops.metrics import Metrics
from streams.settings import Settings
from streams.worker.commissions import STATE_KEY, CommissionPartition, commission_state
from streams.worker.ports import Topics
from streams.worker.processor import ProcessorJob, Turn


class CommissionJob(ProcessorJob[CommissionPartition]):
    name = "commission book"
    kind = "commissions"

    def __init__(self, settings: Settings, metrics: Metrics, rules: Rules, topics: Topics) -> None:
        super().__init__(settings, metrics, topic=settings.commission_topic, group=settings.commission_group,
                         changelog=settings.commissions_changelog)
        self.rules, self.addresses = rules, topics

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        return commission_state(value).last if key == STATE_KEY else None

    def make(self, partition: int, table: dict[bytes, bytes]) -> CommissionPartition:
        return CommissionPartition(partition, self.settings.partitions, self.rules, self.addresses, table)

    async def observe(self, turns: list[tuple[CommissionPartition, Turn]]) -> None:
        for _, turn in turns:
            self.metrics.observe_outputs(turn.report)
