"""The identity registry (streams.registry) on the identity topic, with its own Kafka consumer.

Like the ledger (streams.ledgerloop): its own group, ``<app>-identity``; its own state, one table
per partition held, recovered on assignment from the compacted ``<app>-identities-changelog``;
its own position, the last offset its state has applied. A turn, every batch and every
REWARDS_BATCH_WITHIN_MS while nothing comes (claims wait on time too): take the records, decide
what can be decided, write the changelog (the partition's state last), send the verdicts into
the claimants' sequenced partitions, commit. The commits are for lag only: each partition's is
its first claim still waiting, so that the lag counts claims not answered yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams import wire
from streams.ledger import Send
from streams.ledgerloop import consume_batches, group_consumer, recover
from streams.partitioning import partition_for
from streams.registry import RegistryPartition
from streams.sequencerloop import PROGRESS_EVERY_S

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger("rewards.identity")


class RegistryLoop(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.registries: dict[int, RegistryPartition] = {}
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer = None  # made in the worker's event loop, by run
        self.started = False

    @property
    def settle_ms(self) -> float:
        """How long after a claim came every earlier claim of the same person has reached the
        registry, once the partitions had copied and applied all their inputs: published up to a
        grace late, held by the merge up to a grace, a progress mark up to PROGRESS_EVERY_S old
        twice over, and a batch or two."""
        return 2 * self.settings.order_grace_ms + 2 * PROGRESS_EVERY_S * 1000 + 500

    async def run(self) -> None:
        self.consumer = consumer = group_consumer(self.settings, self.settings.identity_group)
        await consumer.start()
        self.started = True
        consumer.subscribe([self.settings.identity_topic], listener=self)
        try:
            await consume_batches(consumer, self.settings, self._turn, self.lock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.registries.clear()
            log.critical("identity registry turn failed; stopping so the worker restarts from its changelog",
                         exc_info=exc)
            await self.worker.app.crash(exc)
            raise
        finally:
            self.started = False
            await consumer.stop()

    async def _turn(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now_ms = time.time() * 1000
        for tp, messages in batch.items():
            registry = self.registries.get(tp.partition)
            if registry is None:
                continue  # revoked since it was fetched, or still being recovered (it seeks then)
            for message in messages:
                kind = dict(message.headers or ()).get(wire.H_KIND)
                if not registry.take(message.offset, kind, message.value, now_ms):
                    log.info("the registry of %s needs offset %s but was handed %s: re-reading from it",
                             tp, registry.last + 1, message.offset)
                    self.consumer.seek(tp, registry.last + 1)
                    break
        verdicts: list[bytes] = []
        changelog: list[Send] = []
        for partition, registry in self.registries.items():
            verdicts += registry.decide(now_ms)
            changelog += [Send(self.settings.identities_changelog, key, value, partition)
                          for key, value in registry.flush(now_ms)]
        if not changelog:
            return
        await self.worker.send_all(changelog)  # the decisions are durable before they are told
        await self._send(verdicts)
        for registry in self.registries.values():
            registry.sent()
        positions = {TopicPartition(self.settings.identity_topic, p): r.committed_offset()
                     for p, r in self.registries.items() if r.last >= 0}
        try:
            if positions:
                await self.consumer.commit(positions)
        except KafkaError as exc:  # a rebalance under way, mostly: the next turn commits again
            log.info("commit of the registry's offsets failed (%r); its positions are in its state", exc)

    async def _send(self, verdicts: list[bytes]) -> None:
        n, sends = self.settings.partitions, []
        for value in verdicts:
            client_key = wire.verdicts.decode(value).client_id.encode()
            sends.append(Send(self.settings.sequenced_topic, client_key, value, partition_for(client_key, n),
                              [(wire.H_KIND, wire.KIND_VERDICT)]))
        await self.worker.send_all(sends)

    # -- partitions coming and going -----------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:  # the turn under way reaches Kafka whole first
            for tp in revoked:
                self.registries.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._assigned(assigned)
        except Exception as exc:
            log.critical("identity partitions %s could not be recovered; stopping", assigned, exc_info=exc)
            await self.worker.app.crash(exc)
            raise

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        new = sorted(tp.partition for tp in assigned if tp.partition not in self.registries)
        settings = self.settings
        registries, recovered = await recover(
            settings, self.consumer, settings.identities_changelog, settings.identity_topic, new,
            lambda p, table: RegistryPartition(p, settings.partitions, self.settle_ms, table))
        for tp, registry in registries:
            # the verdicts of its last commit may not have been sent: again (the ledger knows a second one)
            await self._send(registry.state.unsent)
            registry.sent()
            self.registries[tp.partition] = registry
        if new:
            log.info("identity partitions %s recovered (%s state records)", new, recovered)

    def offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, first claim waiting or next offset, end offset) of each partition held."""
        if not self.started:
            return []
        return [(self.settings.identity_topic, p, r.committed_offset(),
                 self.consumer.highwater(TopicPartition(self.settings.identity_topic, p)))
                for p, r in sorted(self.registries.items())]
