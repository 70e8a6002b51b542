"""The topic contract on a real broker: the topics the worker creates carry the documented
settings, and a worker finding a topic made otherwise stops with a message naming it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.ops.topics import changelog_topics, ensure_topics, topic_plan
from streams.settings import Settings
from tests.integration.conftest import settings_env

pytestmark = pytest.mark.integration


async def configs(settings: Settings, *topics: str) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    return {name: {entry[0]: entry[1] for entry in entries} for _, _, _, name, entries, *_ in response.resources}


async def test_created_topics_carry_the_documented_settings(settings: Settings) -> None:
    await ensure_topics(settings)
    history = (settings.sequenced_topic, settings.ledger_topic, settings.deadletter_topic)
    found = await configs(settings, *history, *changelog_topics(settings), settings.identity_topic)
    for topic in history:  # the history is kept: a replay from Kafka replays all of it
        assert (found[topic]["cleanup.policy"], found[topic]["retention.ms"]) == ("delete", "-1"), topic
    for topic in changelog_topics(settings):  # compacted soon after a write is superseded
        assert found[topic]["cleanup.policy"] == "compact", topic
        assert found[topic]["segment.ms"] == found[topic]["max.compaction.lag.ms"] == "3600000", topic
        assert found[topic]["min.cleanable.dirty.ratio"] == "0.1", topic
    assert found[settings.identity_topic]["retention.ms"] == str(7 * 86_400_000)
    assert {found[topic]["min.insync.replicas"] for topic in found} == {"1"}  # one broker: replication 1


def start(settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    """``rewards worker`` as a deployment starts it, until it stops (or 60 s)."""
    return subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env={**settings_env(settings), **env},
                          capture_output=True, text=True, timeout=60)


async def test_a_topic_made_otherwise_stops_the_worker_with_a_message_naming_it(settings: Settings) -> None:
    settings = replace(settings, retention_ms=30 * 86_400_000)
    changelog = f"{settings.app_id}-state-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:  # a changelog someone made without compaction, and a sequenced log with other partitions
        await admin.create_topics([
            NewTopic(changelog, settings.partitions, 1, topic_configs={"cleanup.policy": "delete"}),
            NewTopic(settings.sequenced_topic, settings.partitions + 2, 1)])
    finally:
        await admin.close()
    stopped = start(settings)
    assert stopped.returncode == 2, stopped.stderr
    assert f"topic {changelog} has cleanup.policy=delete, the worker needs cleanup.policy=compact" in stopped.stderr
    assert (f"topic {settings.sequenced_topic} has {settings.partitions + 2} partitions, the worker needs "
            f"REWARDS_PARTITIONS={settings.partitions}") in stopped.stderr
    assert f"topic {settings.sequenced_topic} has retention.ms=604800000" in stopped.stderr  # the broker's default
    assert "REWARDS_TOPIC_CHECK=warn" in stopped.stderr and "Traceback" not in stopped.stderr


def test_topics_reports_what_kafka_refused_and_fails(settings: Settings) -> None:
    """A replication factor no cluster here has: Kafka refuses every topic, and `rewards topics`
    says so (it printed "(created)" for them once), exits 1, and so does a worker, with exit 2."""
    impossible = replace(settings, replication=1000)
    env = {**settings_env(impossible), "REWARDS_MIN_INSYNC_REPLICAS": "1"}
    topics = subprocess.run([sys.executable, "-m", "streams.cli", "topics"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert topics.returncode == 1, topics.stderr
    assert "(created)" not in topics.stdout
    every = len(topic_plan(settings))  # 17: seven inputs (the terms topic among them), nine of its own, Faust's leader
    assert topics.stdout.count("(REFUSED by Kafka)") == len(topics.stdout.strip().splitlines()) == every == 17
    assert topics.stderr.startswith(f"rewards: Kafka refused to create {every} topics ")
    assert "Unable to replicate the partition 1000 time(s)" in topics.stderr
    worker = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert worker.returncode == 2 and "Traceback" not in worker.stderr
    assert worker.stderr.strip().splitlines()[-1].startswith("rewards: not starting without its topics")
