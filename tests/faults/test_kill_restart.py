"""SIGKILL the worker in the middle of a 100,000-event run, start it again, and find that no
credit was lost and none doubled: every output the worker sent (re-sent ones carry the same id)
equals what the recorded log gives replayed in one uninterrupted run, and so does every
client's wallet, bonus and rebate view in Redis."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis

from handlers.rules import Rules
from streams.offline.logreplay import replay_log
from streams.devtools.publish import publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.settings import Settings
from tests.integration.conftest import ensure, read_all, wait_caught_up

pytestmark = pytest.mark.integration


async def count_outputs(settings: Settings) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.ledger_topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def by_id(outputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for output in outputs:
        previous = found.setdefault(output["id"], output)
        assert previous == output, f"one id, two contents: {previous} != {output}"
    return found


async def assert_views_equal(settings: Settings, truth: dict[str, dict[str, Any]], namespace: str) -> None:
    """Every client's wallet, bonus and rebate views in Redis: the worker's equal the replay's
    (written under ``rewards:<namespace>:``)."""
    store = redis.from_url(settings.redis_url)
    clients = {o["client_id"] for o in truth.values() if o.get("client_id") and o["type"] != "event.rejected"}
    try:
        for client_id in clients:
            worker_view = await store.hmget(f"{settings.redis_prefix}client:{client_id}", "wallet", "bonuses", "rebates")
            truth_view = await store.hmget(f"rewards:{namespace}:client:{client_id}", "wallet", "bonuses", "rebates")
            assert worker_view == truth_view, client_id
    finally:
        await store.aclose()


def payouts(outputs: dict[str, dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for o in outputs.values():
        if o["type"] in ("rebate.payout", "commission.payout"):
            totals[f'{o["type"]}:{o.get("client_id")}:{o["partner_id"]}'] += Decimal(o["amount"])
    return dict(totals)


async def test_sigkill_mid_run_loses_nothing_and_doubles_nothing(
        settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    lines = list(SampleDay(clients=1500, fills=92_000, days=2, seed=21).lines())
    assert len(lines) >= 100_000
    await ensure(settings)
    # As a bus has it: one producer per source topic, independently (the day closes on theirs
    # too: the sequencer merges them by ts).
    await publish_per_topic(lines, settings, skew_ms=300, seed=3)
    first = start_worker(name="before-kill")
    deadline = time.monotonic() + 300
    while await count_outputs(settings) < 30_000:  # well into the run
        assert time.monotonic() < deadline, first.tail()
        await asyncio.sleep(0.2)
    first.kill()
    killed_at = await count_outputs(settings)
    second = start_worker(name="after-restart")
    try:
        await wait_caught_up(settings, timeout_s=600)
    except TimeoutError:
        pytest.fail(second.tail())

    sent_raw = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    sent = by_id(sent_raw)
    truth_file = tmp_path / "truth.jsonl"
    namespace = f"truth-{settings.app_id}"  # this run's: a Redis kept from an earlier run has its own
    await replay_log(settings, Rules.default(), truth_file, namespace, settings.redis_url)
    truth = by_id([orjson.loads(line) for line in truth_file.read_bytes().splitlines()])
    assert 30_000 <= killed_at < len(truth), "the kill happened mid-run"
    assert sent.keys() == truth.keys(), (sorted(truth.keys() - sent.keys())[:10], sorted(sent.keys() - truth.keys())[:10])
    assert sent == truth
    assert payouts(sent) == payouts(truth) and payouts(truth)

    await assert_views_equal(settings, truth, namespace)
