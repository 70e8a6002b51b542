"""A zombie: worker A is paused (SIGSTOP) in the middle of a run, past its session timeout;
worker B takes all its partitions; A is resumed (SIGCONT). Whatever A had under way must never
land: B's transactional producers fenced A's, so A's next commit fails and it stops cleanly,
or, paused between turns, it rejoins the group as a new member. The outputs, read
``read_committed``, are exactly the recorded log's replayed once (tests.faults.harness)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.devtools.localservices import free_port
from streams.devtools.publish import publish_per_topic
from streams.settings import Settings
from streams.worker.kafkaio import Sender
from tests.faults.harness import (a_poisoned_day, assert_exactly_the_replay, assert_running, cold_restart,
                                  count_outputs, partitions_of, wait_until)
from tests.integration.conftest import ensure, read_all, wait_caught_up

pytestmark = pytest.mark.integration


async def test_a_paused_worker_resumed_after_a_takeover_writes_nothing(
        settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    """Then, after the zombie and one restart of the worker that took over, the day close still
    applies: no assertion, no restart loop (a stale state written by the zombie once made it crash
    every few seconds)."""
    settings = replace(settings, session_timeout_ms=6_000)
    history, lines, poison = await a_poisoned_day(settings, seed=44, poison_seed=5, clients=400)
    closes = [line for line in lines if b'"settlement.day_closed"' in line]
    assert closes
    a = start_worker(settings=settings, web_port=free_port(), name="a")

    async def holds_all(worker: Any) -> bool:
        return await partitions_of(worker) == list(range(settings.partitions))

    await wait_until(lambda: holds_all(a), 120, a.tail)
    publishing = asyncio.create_task(publish_per_topic([line for line in lines if line not in closes], settings,
                                                       skew_ms=50, rate=3000, seed=5))

    async def busy() -> bool:
        return await count_outputs(settings) >= 5_000

    await wait_until(busy, 120, a.tail)
    os.killpg(a.process.pid, signal.SIGSTOP)
    b = start_worker(settings=settings, web_port=free_port(), name="b")
    try:
        await wait_until(lambda: holds_all(b), 120, b.tail)  # after A's session expired
        await asyncio.sleep(2)
    finally:
        os.killpg(a.process.pid, signal.SIGCONT)
    await publishing
    await asyncio.sleep(3)  # A, resumed, finds out it was fenced, or rejoins
    b.kill()  # one restart of the worker that took over
    c = start_worker(settings=settings, web_port=free_port(), name="c")
    await publish_per_topic(closes, settings)
    try:
        await wait_caught_up(settings, timeout_s=300)
    except TimeoutError:
        pytest.fail(a.tail() + "\n----\n" + c.tail())
    if a.process.poll() is not None:  # stopped: fenced, and it says so
        log = a.log_path.read_text(errors="replace")
        assert "was fenced: another worker holds it now" in log and a.process.returncode == 0, a.tail()
    assert_running(c)
    sent = await assert_exactly_the_replay(settings, tmp_path, poison, "zombie")
    assert any(o["type"] == "rebate.payout" for o in sent.values()), "the day close paid nothing"
    a.stop()
    c.stop()
    await cold_restart(settings, start_worker, tmp_path, history, poison)


async def test_a_fenced_worker_stops_cleanly_and_writes_nothing(settings: Settings, start_worker: Any) -> None:
    """Another holder of the ledger's partitions (its transactional ids started elsewhere) fences
    the worker: its next commit fails, and it stops as SIGTERM would stop it (exit status 0,
    one line saying why, no traceback), with nothing of that turn written."""
    await ensure(settings)
    a = start_worker(web_port=free_port(), name="a")
    deadline = time.monotonic() + 120
    while await partitions_of(a) != list(range(settings.partitions)):
        assert time.monotonic() < deadline, a.tail()
        await asyncio.sleep(0.5)
    sender = Sender(settings)
    usurpers = [await sender.transactional(f"{settings.app_id}-ledger-{p}") for p in range(settings.partitions)]
    try:
        # registrations (state writes) and unknown types (dead letters): nothing of either may land
        lines = [orjson.dumps({"type": kind, "id": f"{kind}-{n}", "ts": f"2026-11-24T09:00:{n:02d}Z",
                               "client_id": f"c{n}", "country": "DE"})
                 for n in range(20) for kind in ("client.registered", "client.teleported")]
        await publish_per_topic(lines, settings)
        try:
            a.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the fenced worker did not stop:\n" + a.tail())
    finally:
        for producer in usurpers:
            await producer.stop()
    log = a.log_path.read_text(errors="replace")
    assert a.process.returncode == 0, a.tail()
    assert "ledger partition" in log and "was fenced: another worker holds it now" in log, a.tail()
    assert "Traceback" not in log and "Unclosed" not in log, a.tail()
    assert await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic) == []
