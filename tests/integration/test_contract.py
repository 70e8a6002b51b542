"""The same scenario files through the stream worker and through `rewards replay` give the
same outputs: same ids, same fields (a rejection's `source` aside: a file line offline, a
topic/partition/offset on Kafka)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.offline.replay import replay
from handlers.rules import Rules
from streams.settings import Settings
from tests.integration.conftest import ensure, publish_in_order, wait_for_outputs

SCENARIOS = Path(__file__).parents[1] / "scenarios"
pytestmark = pytest.mark.integration


def offline(lines: list[bytes]) -> list[dict[str, Any]]:
    import io

    sink = io.BytesIO()
    replay(io.BytesIO(b"".join(line + b"\n" for line in lines)), sink, Rules.default())
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


def comparable(outputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: {k: v for k, v in o.items() if k != "source"} for o in outputs}


@pytest.mark.parametrize("scenario", ["programs", "sample_day"])
async def test_worker_and_replay_give_the_same_outputs(scenario: str, settings: Settings, start_worker: Any) -> None:
    lines = (SCENARIOS / f"{scenario}.jsonl").read_bytes().splitlines()
    expected = offline(lines)
    await ensure(settings)
    worker = start_worker()
    await publish_in_order(settings, lines)
    try:
        got = await wait_for_outputs(settings, lambda outs: len({o["id"] for o in outs}) >= len(expected), 60)
    except TimeoutError:
        from tests.integration.conftest import read_all

        have = {o["id"] for o in await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)}
        missing = sorted(set(comparable(expected)) - have)
        pytest.fail(f"worker fell short, missing {missing[:20]}; its log:\n{worker.tail()}")
    assert comparable(got) == comparable(expected)
    # a clean run sends every output once (identical rejected bytes twice are two, with one id)
    assert Counter(o["id"] for o in got) == Counter(o["id"] for o in expected)
    rejected = [o for o in got if o["type"] == "event.rejected"]
    assert all({"topic", "partition", "offset"} <= set(o["source"]) for o in rejected)
