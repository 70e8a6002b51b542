"""The kill loop: the worker SIGKILLed at random moments, twenty times, each time while it has
work (a history published at a pace, with poison), a new one started at once. Nothing lost,
nothing doubled, nothing sent twice (tests.faults.harness), and a cold restart after it
recovers the same state. The history spans 24 days, so the clients' histories are swept (their
entries tombstoned) while the kills land."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.devtools.localservices import free_port
from streams.devtools.publish import publish_per_topic
from streams.settings import Settings
from streams.worker.kafkaio import read_to_end, reader
from tests.faults.harness import a_poisoned_day, assert_running, partitions_of, settle_and_check, wait_until

pytestmark = pytest.mark.integration

KILLS = 20


async def test_twenty_sigkills_lose_nothing_and_send_nothing_twice(
        settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    settings = replace(settings, session_timeout_ms=6_000)  # a killed worker's partitions move on sooner
    history, lines, poison = await a_poisoned_day(settings, seed=21, poison_seed=3, days=24)
    # Each life gets a share of the history published while it lives, at a pace that lasts
    # longer than a life (~8 s: the killed one's session timeout, the start, a moment of work),
    # so that it always has work when it is killed. Shares may overlap in time: the truth is the
    # recorded log, whatever order it was recorded in.
    bounds = [len(lines) * i // KILLS for i in range(KILLS)] + [len(lines)]
    poisoned = set(poison)
    for i in range(1, KILLS):  # a poison stays in its original's share (an id used again must come second)
        while lines[bounds[i]] in poisoned:
            bounds[i] += 1
    shares = [lines[bounds[i]:bounds[i + 1]] for i in range(KILLS)]
    rng = random.Random(9)
    publishing: list[asyncio.Task[Any]] = []
    for life in range(KILLS):
        worker = start_worker(settings=settings, web_port=free_port(), name=f"life{life}")
        share = asyncio.create_task(publish_per_topic(shares[life], settings, skew_ms=200,
                                                      rate=len(shares[life]) / 15, seed=life))
        publishing.append(share)

        async def working(worker: Any = worker) -> bool:
            return bool(await partitions_of(worker))

        await wait_until(working, 120, worker.tail)
        await asyncio.sleep(rng.uniform(0.2, 2.5))  # in the middle of whatever it is doing
        assert_running(worker)
        assert not share.done(), f"kill {life + 1}: its share was all published, the worker may have had no work left"
        worker.kill()
    await asyncio.gather(*publishing)
    last = start_worker(settings=settings, name="last")
    await settle_and_check(settings, start_worker, tmp_path, history, poison, "kills", last)
    assert await tombstones(settings) > 1_000, "no history was swept: the test proves nothing about sweeping"


async def tombstones(settings: Settings) -> int:
    """Tombstones in the ledger's changelog (read_committed): the history entries swept."""
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.state_changelog, p) for p in range(settings.partitions)]
        return sum([sum(r.value is None for r in records) async for _, records in read_to_end(consumer, partitions)])
    finally:
        await consumer.stop()
