"""Consumer lag of the worker's groups, from the broker: end offset - committed offset, per
topic and partition (each topic's from the group that reads it: <app>-sequencer for the inputs,
<app>-ledger for the sequenced log, <app>-identity for the identity topic, <app>-commissions
for the commission topic)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorNotAvailableError, GroupCoordinatorNotAvailableError

from streams import connect
from streams.bus import task_places
from streams.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


async def group_lag(settings: Settings, topics: list[str] | None = None, group: str | None = None) -> list[PartitionLag]:
    """Lag on every partition of the topics the worker consumes (inputs and internal ones); with
    ``group``, that one group's on ``topics``."""
    topics = topics or list(settings.input_topics) + [settings.sequenced_topic, settings.identity_topic,
                                                      settings.commission_topic]
    admin = connect.admin(settings)
    await connect.start(admin)
    consumer = connect.consumer(settings, enable_auto_commit=False)
    try:
        await connect.start(consumer)
        # the inputs are read by the sequencer's own group, the sequenced log by the ledger's
        # (streams.worker.sequencer, streams.worker.ledgerloop), the others by the registry's and the commission book's
        readers = ([(group, set(topics))] if group else
                   [(settings.commission_group, {settings.commission_topic}),
                    (settings.identity_group, {settings.identity_topic}),
                    (settings.sequencer_group, set(settings.input_topics)),
                    (settings.ledger_group, {settings.sequenced_topic})])
        committed: dict[TopicPartition, int] = {}
        for reader, topics_read in readers:
            found = await _committed(admin, reader)
            committed.update({tp: o.offset for tp, o in found.items() if tp.topic in topics_read and o.offset >= 0})
            if reader == settings.sequencer_group and not group:
                committed.update(broadcast_positions(settings, found))
        partitions = []
        for description in await admin.describe_topics(topics):
            if description.get("error_code", 0) == 0:
                partitions += [TopicPartition(description["topic"], p["partition"])
                               for p in description["partitions"]]
        partitions.sort()
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return [PartitionLag(tp.topic, tp.partition, committed.get(tp), ends[tp]) for tp in partitions]
    finally:
        await consumer.stop()
        await admin.close()


def broadcast_positions(settings: Settings, committed: dict[TopicPartition, Any]) -> dict[TopicPartition, int]:
    """The sequencer group's position on each broadcast partition: the least of its tasks'."""
    by_task = task_places(settings, committed)
    if len(by_task) < settings.partitions:
        return {}  # a task that never committed has copied nothing yet
    shared = set.intersection(*(set(places) for places in by_task.values()))
    return {tp: min(places[tp] for places in by_task.values()) for tp in shared}


async def _committed(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, Any]:
    try:
        return dict(await admin.list_consumer_group_offsets(group))
    except (GroupCoordinatorNotAvailableError, CoordinatorNotAvailableError):
        return {}  # no group yet (or no offsets topic yet): nothing committed


async def wait_caught_up(settings: Settings, timeout_s: float = 180, quiet_s: float = 2.0,
                         progress: Callable[[list[PartitionLag]], None] | None = None) -> list[PartitionLag]:
    """Until the worker's group has committed everything on every topic it reads, and stays so
    for ``quiet_s`` (a processor may still be sending the last messages to another topic).
    ``progress`` sees every reading."""
    deadline = time.monotonic() + timeout_s
    settled_since = None
    while True:
        lags = await group_lag(settings)
        if progress is not None:
            progress(lags)
        if lags and all(p.lag == 0 for p in lags):
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= quiet_s:
                return lags
        else:
            settled_since = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not catch up in {timeout_s} s: "
                               f"{[(p.topic, p.partition, p.lag) for p in lags if p.lag]}")
        await asyncio.sleep(0.3)
