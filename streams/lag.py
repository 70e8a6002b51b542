"""Consumer lag of the worker's groups, from the broker: end offset - committed offset, per
topic and partition (the sequenced log's from the ledger's group, the others' from Faust's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorNotAvailableError, GroupCoordinatorNotAvailableError

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


async def group_lag(settings: Settings, topics: list[str] | None = None) -> list[PartitionLag]:
    """Lag on every partition of the topics the worker consumes (inputs and internal ones)."""
    topics = topics or list(settings.input_topics) + [settings.sequenced_topic, settings.identity_topic,
                                                      settings.commission_topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        committed = await _committed(admin, settings.group)
        # the sequenced log is read by the ledger's own group (streams.ledgerloop)
        committed = {tp: o for tp, o in committed.items() if tp.topic != settings.sequenced_topic}
        committed.update({tp: o for tp, o in (await _committed(admin, settings.ledger_group)).items()
                          if tp.topic == settings.sequenced_topic})
        partitions = []
        for description in await admin.describe_topics(topics):
            if description.get("error_code", 0) == 0:
                partitions += [TopicPartition(description["topic"], p["partition"])
                               for p in description["partitions"]]
        partitions.sort()
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return [PartitionLag(tp.topic, tp.partition,
                             committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None,
                             ends[tp]) for tp in partitions]
    finally:
        await consumer.stop()
        await admin.close()


async def _committed(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, Any]:
    try:
        return dict(await admin.list_consumer_group_offsets(group))
    except (GroupCoordinatorNotAvailableError, CoordinatorNotAvailableError):
        return {}  # no group yet (or no offsets topic yet): nothing committed


async def wait_caught_up(settings: Settings, timeout_s: float = 180, quiet_s: float = 2.0,
                         progress: Callable[[list[PartitionLag]], None] | None = None) -> list[PartitionLag]:
    """Until the worker's group has committed everything on every topic it reads, and stays so
    for ``quiet_s`` (an agent may still be sending the last messages to another topic).
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
