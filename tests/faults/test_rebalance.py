"""Two workers in one group split the partitions; stopping one moves its partitions to the
other, and the final state is the same as an uninterrupted run's."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from handlers.rules import Rules
from streams.devtools.localservices import free_port
from streams.offline.logreplay import replay_log
from streams.devtools.publish import publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.settings import Settings
from tests.faults.test_kill_restart import assert_views_equal, by_id, count_outputs, payouts
from tests.integration.conftest import ensure, read_all, wait_caught_up
from tests.integration.test_client_api import get

pytestmark = pytest.mark.integration


async def partitions_of(worker: Any) -> list[int]:
    status, health = await get(worker.port, "/health")
    return health["partitions"] if status == 200 else []


async def test_two_workers_split_and_one_takes_over(settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    lines = list(SampleDay(clients=400, fills=30_000, seed=33).lines())
    await ensure(settings)
    a = start_worker(web_port=free_port(), name="a")
    b = start_worker(web_port=free_port(), name="b")
    deadline = time.monotonic() + 120
    while True:  # both hold partitions, together all of them
        held_a, held_b = await partitions_of(a), await partitions_of(b)
        if held_a and held_b and sorted(held_a + held_b) == list(range(settings.partitions)):
            break
        assert time.monotonic() < deadline, (held_a, held_b, a.tail(), b.tail())
        await asyncio.sleep(0.5)
    # One producer per source topic, the day played at a pace with the topics lagging each other
    # by up to 50 ms (within the grace): all at once, the day close would be published a day
    # ahead of the fills and merged before most of them.
    await publish_per_topic(lines, settings, skew_ms=50, rate=5000, seed=4)
    while await count_outputs(settings) < 5_000:
        assert time.monotonic() < deadline + 120, b.tail()
        await asyncio.sleep(0.2)
    b.stop()  # a graceful stop: B leaves the group, A takes its partitions
    try:
        await wait_caught_up(settings, timeout_s=300)
        assert await partitions_of(a) == list(range(settings.partitions))
    except TimeoutError:
        pytest.fail(a.tail())

    sent = by_id(await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic))
    truth_file = tmp_path / "truth.jsonl"
    namespace = f"truth-{settings.app_id}"  # this run's: a Redis kept from an earlier run has its own
    await replay_log(settings, Rules.default(), truth_file, namespace, settings.redis_url)
    truth = by_id([orjson.loads(line) for line in truth_file.read_bytes().splitlines()])
    assert sent == truth
    assert payouts(sent) == payouts(truth) and payouts(truth)
    await assert_views_equal(settings, truth, namespace)
