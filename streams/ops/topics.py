"""Kafka housekeeping: creating the topics and checking their partition counts, publishing a day close."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger("rewards.admin")


TABLES = ("state", "identities", "commissions")  # the processors' changelogs (streams.worker.processor)


def changelog_topics(settings: Settings) -> list[str]:
    return [f"{settings.group}-{table}-changelog" for table in TABLES]


def topic_plan(settings: Settings) -> dict[str, int]:
    """Every topic the worker reads or writes, with its partition count. The internal topics and
    the tables' changelogs must all have ``settings.partitions``."""
    n = settings.partitions
    names = list(settings.input_topics) + [settings.sequenced_topic, settings.identity_topic,
                                           settings.commission_topic, settings.ledger_topic,
                                           settings.deadletter_topic] + changelog_topics(settings)
    return {name: n for name in names}


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        # The changelogs are compacted: each keeps the latest value of every key.
        compacted = set(changelog_topics(settings))
        wanted = [NewTopic(name, partitions, settings.replication,
                           topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
                  for name, partitions in topic_plan(settings).items() if name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def partition_counts(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """How many partitions each of ``topics`` has (0: it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def check_copartitioned(settings: Settings) -> str | None:
    """The sequencer merges partition i of every client topic into sequenced partition i: the
    client topics must have REWARDS_PARTITIONS partitions each (co-partitioned, keyed by client_id
    with Kafka's default partitioner). A description of what is wrong, or None."""
    counts = await partition_counts(settings, settings.client_topics)
    wrong = {topic: n for topic, n in counts.items() if n != settings.partitions}
    if not wrong:
        return None
    listed = ", ".join(f"{topic} has {n}" for topic, n in sorted(wrong.items()))
    return (f"the client topics must each have REWARDS_PARTITIONS={settings.partitions} partitions "
            f"(co-partitioned by client_id, so that one task sees all of a client's inputs): {listed}. "
            "Set REWARDS_PARTITIONS to their count on a fresh app id, or repartition the topics.")


def day_close_event(day: date, event_id: str | None = None) -> dict[str, str]:
    """The close of ``day``: stamped at the first instant of the next day, with an id derived
    from the date, so publishing the same close twice is a redelivery, not a second close."""
    return {"type": "settlement.day_closed", "id": event_id or f"settlement.day_closed:{day.isoformat()}",
            "ts": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z", "date": day.isoformat()}


async def publish_day_close(settings: Settings, day: date, event_id: str | None = None) -> dict[str, str]:
    event = day_close_event(day, event_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_settlement, orjson.dumps(event), key=day.isoformat().encode())
    finally:
        await producer.stop()
    return event
