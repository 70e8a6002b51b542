"""``rewards reset``: take a deployment back to nothing, so that its workers rebuild every
state from the input topics' history (as Kafka Streams' application reset tool and ``faust
reset`` do). A dry run unless told to execute.

What it removes, for one REWARDS_APP_ID:
1. the internal topics: the sequenced log, the identity and commission topics, the state
   changelogs, Faust's leader topic (and the changelogs of earlier versions, where present);
2. the sequencer's place in the input topics: its group's offsets go back to each partition's
   start, and the broadcast places kept in their metadata with them; the other groups' offsets
   were on the internal topics and go with them;
3. the read model's client views in Redis (``<app>:client:*``).

What it keeps: the input topics (they are the history) and the output topics (downstream reads
them: a rebuild writes its outputs again, with the same ids, which consumers drop as repeats).
It refuses while a worker of the deployment runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams import connect
from streams.ops.topics import changelog_topics
from streams.settings import Settings

REDIS_BATCH = 1000


@dataclass
class Plan:
    topics: list[str] = field(default_factory=list)       # internal topics that exist
    rewinds: dict[TopicPartition, int] = field(default_factory=dict)  # sequencer group: partition -> its start
    groups_running: dict[str, int] = field(default_factory=dict)     # group -> members now
    redis_keys: int = 0

    def lines(self, settings: Settings, done: bool) -> list[str]:
        def verb(did: str, would: str) -> str:
            return did if done else would

        out = [f"{verb('deleted', 'would delete')} topic {name}" for name in self.topics]
        topics = sorted({tp.topic for tp in self.rewinds})
        if topics:
            out.append(f"{verb('moved', 'would move')} group {settings.sequencer_group} to the start of "
                       f"{len(self.rewinds)} partitions of {', '.join(topics)} (and its broadcast places to 0)")
        out.append(f"{verb('deleted', 'would delete')} {self.redis_keys:,} Redis keys {settings.redis_prefix}client:*")
        out.append(f"kept: the input topics {', '.join(settings.input_topics)} and the output topics "
                   f"{settings.ledger_topic}, {settings.deadletter_topic} (a rebuild writes its outputs again, "
                   "with the same ids)")
        return out


def internal_topics(settings: Settings) -> list[str]:
    return [settings.sequenced_topic, settings.identity_topic, settings.commission_topic, settings.terms_acks_topic,
            *changelog_topics(settings), settings.leader_topic,
            *(f"{settings.app_id}-{old}-changelog" for old in ("partners", "closes"))]


def groups(settings: Settings) -> list[str]:
    return [settings.sequencer_group, settings.ledger_group, settings.identity_group, settings.commission_group,
            settings.group]


async def plan(settings: Settings) -> Plan:
    found = Plan()
    admin: Any = connect.admin(settings)  # aiokafka's admin API is untyped
    await connect.start(admin)
    try:
        existing = set(await admin.list_topics())
        found.topics = [name for name in internal_topics(settings) if name in existing]
        # One group per request, with include_authorized_operations: aiokafka 0.14 against
        # Kafka 4 otherwise sends a version the broker drops, or misreads a reply of several groups.
        for group in groups(settings):
            for response in await admin.describe_consumer_groups([group], include_authorized_operations=True):
                for _error, name, _state, _protocol_type, _protocol, members, *_ in response.groups:
                    if members:
                        found.groups_running[name] = len(members)
        committed = await admin.list_consumer_group_offsets(settings.sequencer_group)
    finally:
        await admin.close()
    inputs = [tp for tp in committed if tp.topic in settings.client_topics]  # the broadcast places: metadata
    if inputs:
        reader = connect.consumer(settings, group_id=None, enable_auto_commit=False)
        await connect.start(reader)
        try:
            found.rewinds = dict(await reader.beginning_offsets(inputs))
        finally:
            await reader.stop()
    found.redis_keys = await _redis_keys(settings, delete=False)
    return found


async def execute(settings: Settings, found: Plan) -> None:
    if found.rewinds:  # an empty group takes a commit from a consumer outside any generation
        member = connect.consumer(settings, group_id=settings.sequencer_group, enable_auto_commit=False)
        await connect.start(member)
        try:
            member.assign(list(found.rewinds))
            await member.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in found.rewinds.items()})
        finally:
            await member.stop()
    if found.topics:
        admin = connect.admin(settings)
        await connect.start(admin)
        try:
            await admin.delete_topics(found.topics)
        finally:
            await admin.close()
    found.redis_keys = await _redis_keys(settings, delete=True)


async def _redis_keys(settings: Settings, delete: bool) -> int:
    client: Any = redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    count = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{settings.redis_prefix}client:*", count=REDIS_BATCH):
            count += 1
            if delete:
                batch.append(key)
                if len(batch) >= REDIS_BATCH:
                    await client.unlink(*batch)
                    batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()
    return count
