"""A zombie: worker A is paused (SIGSTOP) in the middle of a run, past its session timeout;
worker B takes all its partitions; A is resumed (SIGCONT). Whatever A had under way must never
land: B's transactional producers fenced A's, so A's next commit fails and it stops, or, paused
between turns, it rejoins the group as a new member. The outputs, read ``read_committed``, are
exactly the recorded log's replayed once: none lost, none extra, none sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from handlers.rules import Rules
from streams.devtools.localservices import free_port
from streams.devtools.publish import publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.offline.logreplay import replay_log
from streams.settings import Settings
from tests.faults.test_kill_restart import assert_views_equal, by_id, count_outputs, payouts
from tests.faults.test_rebalance import partitions_of
from tests.integration.conftest import ensure, read_all, wait_caught_up

pytestmark = pytest.mark.integration

SESSION_S = 10  # the workers' session timeout (streams.worker.kafkaio.group_consumer)


async def test_a_paused_worker_resumed_after_a_takeover_writes_nothing(
        settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    lines = list(SampleDay(clients=400, fills=30_000, seed=44).lines())
    await ensure(settings)
    a = start_worker(web_port=free_port(), name="a")
    deadline = time.monotonic() + 120
    while await partitions_of(a) != list(range(settings.partitions)):
        assert time.monotonic() < deadline, a.tail()
        await asyncio.sleep(0.5)
    publishing = asyncio.create_task(publish_per_topic(lines, settings, skew_ms=50, rate=4000, seed=5))
    while await count_outputs(settings) < 5_000:  # A is busy
        assert time.monotonic() < deadline + 120, a.tail()
        await asyncio.sleep(0.1)
    os.killpg(a.process.pid, signal.SIGSTOP)
    b = start_worker(web_port=free_port(), name="b")
    try:
        while await partitions_of(b) != list(range(settings.partitions)):  # after A's session expired
            assert time.monotonic() < deadline + 240, b.tail()
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
    finally:
        os.killpg(a.process.pid, signal.SIGCONT)
    await publishing
    try:
        await wait_caught_up(settings, timeout_s=300)
    except TimeoutError:
        pytest.fail(a.tail() + "\n----\n" + b.tail())
    if a.process.poll() is not None:  # stopped: it must say why
        log = a.log_path.read_text(errors="replace")
        assert "was fenced: another worker holds it now" in log, a.tail()

    raw = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    sent = by_id(raw)
    resent = {i: n for i, n in Counter(o["id"] for o in raw).items() if n > 1}
    assert resent == {}, f"{len(resent)} outputs sent more than once"
    truth_file = tmp_path / "truth.jsonl"
    namespace = f"truth-{settings.app_id}"
    await replay_log(settings, Rules.default(), truth_file, namespace, settings.redis_url)
    truth = by_id([orjson.loads(line) for line in truth_file.read_bytes().splitlines()])
    assert sent.keys() == truth.keys() and sent == truth
    assert payouts(sent) == payouts(truth) and payouts(truth)
    await assert_views_equal(settings, truth, namespace)
