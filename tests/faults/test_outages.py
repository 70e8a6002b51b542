"""Outages of what the worker stands on, each on a Kafka or a Redis of the test's own (the
shared ones serve every other test): the broker stopped (SIGTERM) mid-run and started again on
the same data and address; Redis killed mid-run and started again about ten seconds later. The
worker rides both out without stopping, and the outputs and views are exactly the replay's
(tests.faults.harness); a cold restart then recovers the same state."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streams.devtools.localservices import LocalKafka, LocalRedis, free_port
from streams.devtools.publish import publish_per_topic
from streams.settings import Settings
from tests.faults.harness import a_poisoned_day, count_outputs, partitions_of, settle_and_check, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def own_kafka() -> Iterator[LocalKafka]:
    with tempfile.TemporaryDirectory(prefix="rewards-kafka-") as folder:
        kafka = LocalKafka(Path(folder))
        kafka.start()
        try:
            yield kafka
        finally:
            kafka.stop()


@pytest.fixture
def own_redis() -> Iterator[LocalRedis]:
    redis = LocalRedis(append_only=True)  # a Redis that keeps what it acknowledged across a kill
    redis.start()
    try:
        yield redis
    finally:
        redis.remove()


async def test_a_broker_restart_mid_run(settings: Settings, start_worker: Any, tmp_path: Path,
                                        own_kafka: LocalKafka) -> None:
    settings = replace(settings, kafka_bootstrap=own_kafka.bootstrap)
    history, lines, poison = await a_poisoned_day(settings, seed=51, poison_seed=6)
    await publish_per_topic(lines, settings, skew_ms=200, seed=6)
    worker = start_worker(settings=settings, web_port=free_port(), name="worker")

    async def midway() -> bool:
        return await count_outputs(settings) >= 8_000

    await wait_until(midway, 180, worker.tail)
    await asyncio.to_thread(own_kafka.stop)
    await asyncio.sleep(3)
    await asyncio.to_thread(own_kafka.start)
    await settle_and_check(settings, start_worker, tmp_path, history, poison, "broker-restart", worker)


async def test_a_redis_outage_mid_run(settings: Settings, start_worker: Any, tmp_path: Path,
                                      own_redis: LocalRedis) -> None:
    settings = replace(settings, redis_url=own_redis.url)
    history, lines, poison = await a_poisoned_day(settings, seed=52, poison_seed=7)
    worker = start_worker(settings=settings, web_port=free_port(), name="worker")

    async def working() -> bool:
        return bool(await partitions_of(worker))

    await wait_until(working, 120, worker.tail)
    publishing = asyncio.create_task(publish_per_topic(lines, settings, skew_ms=100, rate=len(lines) / 40, seed=7))
    await asyncio.sleep(10)
    own_redis.kill()
    await asyncio.sleep(10)
    assert not publishing.done(), "the history was all published during the outage"
    await asyncio.to_thread(own_redis.start)
    await publishing
    await settle_and_check(settings, start_worker, tmp_path, history, poison, "redis-outage", worker)
