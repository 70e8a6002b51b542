"""`rewards reset` on a real broker and Redis: refused while a worker runs; a dry run changes
nothing; executed, it removes the internal topics, the sequencer's place and the Redis views,
and the next worker rebuilds from the input topics the same outputs and the same views."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as redis

from streams.ops.reset import internal_topics
from streams.ops.topics import partition_counts
from streams.settings import Settings
from streams.bus import in_ts_order
from streams.devtools.publish import publish_per_topic
from tests.integration.conftest import ensure, read_all, settings_env, wait_caught_up
from tests.integration.test_contract import SCENARIOS, comparable, offline

pytestmark = pytest.mark.integration


def reset(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "reset", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120)


async def views(settings: Settings) -> dict[bytes, dict[bytes, bytes]]:
    client: Any = redis.from_url(settings.redis_url)
    try:
        return {key: await client.hgetall(key) async for key in client.scan_iter(match=f"{settings.redis_prefix}client:*")}
    finally:
        await client.aclose()


def without_versions(found: dict[bytes, dict[bytes, bytes]]) -> dict[bytes, dict[bytes, bytes]]:
    return {key: {f: v for f, v in fields.items() if f != b"version"} for key, fields in found.items()}


async def existing(settings: Settings) -> set[str]:
    return {topic for topic, n in (await partition_counts(settings, internal_topics(settings))).items() if n}


async def test_reset_then_rebuild_gives_the_same_outputs_and_views(settings: Settings, start_worker: Any) -> None:
    lines = (SCENARIOS / "programs.jsonl").read_bytes().splitlines()
    await ensure(settings)
    await publish_per_topic(lines, settings, skew_ms=200, seed=9)  # the sources' history, one producer per topic
    worker = start_worker()
    await wait_caught_up(settings)
    first = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    first_views = await views(settings)
    assert comparable(first) == comparable(offline(in_ts_order(lines, settings)))
    assert first_views

    running = reset(settings, "--execute")
    assert running.returncode == 1 and "Stop every worker first" in running.stderr, running.stderr
    worker.stop()

    dry = reset(settings)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("dry run: nothing changed")
    assert f"would delete {len(first_views):,} Redis keys" in dry.stdout
    assert f"would delete topic {settings.sequenced_topic}" in dry.stdout
    assert settings.sequenced_topic in await existing(settings) and await views(settings) == first_views

    done = reset(settings, "--execute")
    assert done.returncode == 0, done.stderr
    assert f"deleted {len(first_views):,} Redis keys" in done.stdout
    assert await existing(settings) == set() and await views(settings) == {}

    start_worker()
    await wait_caught_up(settings)
    both = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    assert Counter(Counter(o["id"] for o in both).values()) == {2: len(comparable(first))}  # each output again
    assert comparable(both) == comparable(first)  # the same content under each id
    # the same views; their `version` (the write guard: a place in the rebuilt sequenced log) aside
    assert without_versions(await views(settings)) == without_versions(first_views)
