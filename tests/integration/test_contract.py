"""The same scenario files through the stream worker and through `rewards replay` give the
same outputs: same ids, same fields (a rejection's `source` aside: a file line offline, a
topic/partition/offset on Kafka). A scenario with a rules file beside it (`<name>.toml`) runs
under those rules in both."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.bus import in_ts_order
from streams.devtools.publish import publish_per_topic
from streams.offline.replay import replay
from handlers.rules import Rules
from streams.settings import Settings
from tests.integration.conftest import ensure, wait_for_outputs

SCENARIOS = Path(__file__).parents[1] / "scenarios"
pytestmark = pytest.mark.integration


def offline(lines: list[bytes], rules: Rules | None = None) -> list[dict[str, Any]]:
    import io

    sink = io.BytesIO()
    replay(io.BytesIO(b"".join(line + b"\n" for line in lines)), sink, rules or Rules.default())
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


def comparable(outputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: {k: v for k, v in o.items() if k != "source"} for o in outputs}


async def through_both(lines: list[bytes], rules_file: Path | None, settings: Settings,
                       start_worker: Any) -> list[dict[str, Any]]:
    """The lines through `rewards replay` and through a worker (under ``rules_file`` when
    given); the worker's outputs, checked equal to the replay's. The lines are published as the
    source systems do (a producer per topic, independently, with skew) and the replay takes them
    in `ts` order, as the worker records them."""
    rules = Rules.from_toml(rules_file.read_text()) if rules_file else Rules.default()
    if rules_file is not None:
        settings = replace(settings, rules_file=str(rules_file))
    expected = offline(in_ts_order(lines, settings), rules)
    await ensure(settings)
    worker = start_worker(settings=settings)
    await publish_per_topic(lines, settings, skew_ms=200, seed=13)
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
    return got


@pytest.mark.parametrize("scenario", ["programs", "sample_day", "partners"])
async def test_worker_and_replay_give_the_same_outputs(scenario: str, settings: Settings, start_worker: Any) -> None:
    lines = (SCENARIOS / f"{scenario}.jsonl").read_bytes().splitlines()
    rules_file = SCENARIOS / f"{scenario}.toml"
    got = await through_both(lines, rules_file if rules_file.exists() else None, settings, start_worker)
    rejected = [o for o in got if o["type"] == "event.rejected"]
    assert all({"topic", "partition", "offset"} <= set(o["source"]) for o in rejected)
    if scenario == "partners":  # overrides paid across partitions, and the cycle refused once
        assert {o["partner_id"] for o in got if o["type"] == "override.payout"} == {"P1", "P2"}
        assert [o["reason"] for o in rejected].count("partner_cycle") == 1


RULES_FILES = sorted((Path(__file__).parents[2] / "rules").glob("*.toml"))


def generated_day() -> list[bytes]:
    """A generated broker day whose fills carry `notional_usd` and whose clients choose, among
    the deposit bonus tiers, 60 % where they chose 120 %: something for each program shape."""
    from streams.devtools.sample_day import SampleDay

    return [line.replace(b'"bonus_percent":120', b'"bonus_percent":60')
            for line in SampleDay(clients=40, fills=600, days=2, seed=12, notional=True).lines()]


@pytest.mark.parametrize("rules_file", RULES_FILES, ids=lambda p: p.stem)
async def test_worker_and_replay_agree_under_each_rules_file(rules_file: Path, settings: Settings,
                                                             start_worker: Any) -> None:
    got = await through_both(generated_day(), rules_file, settings, start_worker)
    shape = {"credit-bonus-first-deposit": "bonus.granted", "convertible-bonus": "bonus.released",
             "notional-commissions": "rebate.accrued"}[rules_file.stem]
    assert any(o["type"] == shape for o in got), f"the day exercises {rules_file.stem} ({shape})"
