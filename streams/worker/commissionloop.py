"""The commission book (streams.worker.commissions) on the processor loop (streams.worker.processor).

Its own group, ``<app>-commissions``, on the commission topic; its state in the compacted
``<app>-commissions-changelog``. A partition with nothing there yet takes what the Faust tables
of earlier versions (``<app>-partners-changelog``, ``<app>-closes-changelog``) hold, when they
exist, and reads the topic from its start: every close they knew is recognised.
"""

from __future__ import annotations

from handlers.rules import Rules
from streams.worker.commissions import STATE_KEY, CommissionPartition, commission_state
from streams.ops.topics import partition_counts
from streams.worker.kafkaio import Sender, read_changelog
from streams.worker.ledger import Topics
from streams.ops.metrics import Metrics
from streams.worker.processor import Crash, ProcessorLoop
from streams.settings import Settings


class CommissionLoop(ProcessorLoop[CommissionPartition]):
    name = "commission book"
    kind = "commissions"

    def __init__(self, settings: Settings, sender: Sender, metrics: Metrics, crash: Crash, rules: Rules,
                 topics: Topics) -> None:
        super().__init__(settings, sender, metrics, crash, topic=settings.commission_topic,
                         group=settings.commission_group, changelog=settings.commissions_changelog)
        self.rules, self.topics = rules, topics
        self.upgrades: dict[int, CommissionPartition] = {}

    async def read_tables(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        tables = await super().read_tables(partitions)
        fresh = [p for p in partitions if STATE_KEY not in tables[p]]
        old = [f"{self.settings.app_id}-{name}-changelog" for name in ("partners", "closes")]
        if fresh and all(n == self.settings.partitions for n in (await partition_counts(self.settings, old)).values()):
            partners = await read_changelog(self.settings, old[0], fresh)
            closes = await read_changelog(self.settings, old[1], fresh)
            for p in fresh:
                if partners[p] or closes[p]:
                    self.upgrades[p] = CommissionPartition.upgraded(p, self.settings.partitions, self.rules,
                                                               self.topics, partners[p], closes[p])
        return tables

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        return commission_state(value).last if key == STATE_KEY else None

    def make(self, partition: int, table: dict[bytes, bytes]) -> CommissionPartition:
        upgraded = self.upgrades.pop(partition, None)
        if upgraded is not None:
            self.log.info("commission partition %s taken from the Faust tables of an earlier version", partition)
            return upgraded
        return CommissionPartition(partition, self.settings.partitions, self.rules, self.topics, table)

    async def after_turn(self, touched: list[CommissionPartition]) -> None:
        for book in touched:
            self.metrics.observe_outputs(book.take_payouts())
