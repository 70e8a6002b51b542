"""The identity registry's job (streams.worker.registry) on the partition runtime: how its partitions
are made and where their commit is. Touch it for those; how claims are decided is streams.worker.registry's.

Its own group, ``<app>-identity``, on the identity topic; its state in the compacted
``<app>-identities-changelog``. It turns every REWARDS_BATCH_WITHIN_MS while nothing comes too:
claims wait on time. Its group commits are each partition's first claim still waiting, so that
the lag counts claims not answered yet.
"""

from __future__ import annotations

from streams.ops.metrics import Metrics
from streams.worker.processor import ProcessorJob
from streams.worker import wire
from streams.worker.registry import STATE_KEY, RegistryPartition
from streams.settings import Settings


class RegistryJob(ProcessorJob[RegistryPartition]):
    name = "identity registry"
    kind = "identity"

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        super().__init__(settings, metrics, topic=settings.identity_topic, group=settings.identity_group,
                         changelog=settings.identities_changelog)

    @property
    def settle_ms(self) -> float:
        """How long after a claim came every earlier claim of the same person has reached the
        registry, once the partitions had copied and applied all their inputs: published up to a
        grace late, held by the merge up to a grace, a progress mark up to PROGRESS_EVERY_S old
        twice over, and a batch or two."""
        return 2 * self.settings.order_grace_ms + 2 * wire.PROGRESS_EVERY_S * 1000 + 500

    def stamp(self, partition: int, key: bytes, value: bytes) -> int | None:
        return wire.registry_states.decode(value).last if key == STATE_KEY else None

    def make(self, partition: int, table: dict[bytes, bytes]) -> RegistryPartition:
        settings = self.settings
        return RegistryPartition(partition, settings.partitions, self.settle_ms, table,
                                 changelog=settings.identities_changelog, sequenced=settings.sequenced_topic)
