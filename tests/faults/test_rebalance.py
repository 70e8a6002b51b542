"""Rebalances: two or three workers at a time in one group, joining and leaving (SIGTERM and
SIGKILL), six membership changes while a history with poison is published at a pace. After
each change the partitions are spread over the live workers again; at the end the outputs are
exactly the replay's (tests.faults.harness), and a cold restart recovers the same state."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streams.devtools.localservices import free_port
from streams.devtools.publish import publish_per_topic
from streams.settings import Settings
from tests.faults.harness import a_poisoned_day, assert_running, partitions_of, settle_and_check, wait_until

pytestmark = pytest.mark.integration

# (what, which worker): start it, stop it (SIGTERM: it leaves the group), or kill it (SIGKILL:
# its session has to expire first)
CHANGES = [("start", "c"), ("stop", "b"), ("start", "d"), ("kill", "a"), ("start", "e"), ("kill", "c")]


async def test_workers_joining_and_leaving_lose_nothing(settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    settings = replace(settings, session_timeout_ms=6_000)
    history, lines, poison = await a_poisoned_day(settings, seed=33, poison_seed=4)
    live: dict[str, Any] = {}

    def start(name: str) -> None:
        live[name] = start_worker(settings=settings, web_port=free_port(), name=name)

    async def spread() -> bool:
        """Every partition held by exactly one live worker, and every live worker holding some."""
        held = [await partitions_of(w) for w in live.values()]
        return all(held) and sorted(p for ps in held for p in ps) == list(range(settings.partitions))

    def explain() -> str:
        return "\n----\n".join(f"{name}:\n{w.tail()}" for name, w in live.items())

    start("a")
    start("b")
    await wait_until(spread, 120, explain)
    publishing = asyncio.create_task(publish_per_topic(lines, settings, skew_ms=100, rate=len(lines) / 120, seed=4))
    rebalances = 0
    for what, name in CHANGES:
        await asyncio.sleep(3)  # the workers at work between changes
        assert not publishing.done(), f"the history was all published before {what} {name}"
        if what == "start":
            start(name)
        else:
            worker = live.pop(name)
            worker.stop() if what == "stop" else worker.kill()
        await wait_until(spread, 120, explain)
        assert_running(*live.values())
        rebalances += 1
    await publishing
    assert rebalances >= 5 and 2 <= len(live) <= 3
    await settle_and_check(settings, start_worker, tmp_path, history, poison, "rebalances", *live.values())
