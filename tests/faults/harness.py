"""What every fault scenario checks, written once.

A scenario publishes a generated history with ~0.5 % poison in it (``a_poisoned_day``), as a bus
does (one producer per source topic, skewed, at a pace), does its fault while the workers have
work, waits until the group has caught up, and then:

- ``assert_exactly_the_replay``: the outputs, read ``read_committed``, are exactly what the
  recorded log gives replayed in one uninterrupted run (``rewards replay --from-kafka``): none
  lost, none extra, none differing, none sent twice, no id with two payloads; every poison input
  rejected exactly once; payouts made; every client's Redis views equal the replay's;
- ``cold_restart``: a fresh worker (a data folder of its own) on the same topics recovers the
  same state: one new fill per client after it (probes) gives what the replay gives;
- ``assert_running``: no worker stopped on its own.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from handlers.rules import Rules
from schemas.timefmt import parse_ts_us
from streams.cli import load_rules
from streams.devtools.publish import publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.offline.logreplay import replay_log
from streams.settings import Settings
from tests.integration.conftest import ensure, read_all, wait_caught_up
from tests.integration.test_client_api import get

POISON_SHARE = 0.005


async def count_outputs(settings: Settings) -> int:
    """Records on the ledger topic (committed ones, and transaction markers)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.ledger_topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def partitions_of(worker: Any) -> list[int]:
    """The ledger partitions a worker holds, from its /health (none when it does not answer)."""
    try:
        status, health = await get(worker.port, "/health")
    except (OSError, aiohttp.ClientError):
        return []
    return health["partitions"] if status == 200 else []


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
            fields = ("wallet", "bonuses", "rebates")
            worker_view = await store.hmget(f"{settings.redis_prefix}client:{client_id}", *fields)
            truth_view = await store.hmget(f"rewards:{namespace}:client:{client_id}", *fields)
            assert worker_view == truth_view, client_id
    finally:
        await store.aclose()


def payouts(outputs: dict[str, dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for o in outputs.values():
        if o["type"] in ("rebate.payout", "commission.payout"):
            totals[f'{o["type"]}:{o.get("client_id")}:{o["partner_id"]}'] += Decimal(o["amount"])
    return dict(totals)


async def a_poisoned_day(settings: Settings, seed: int, poison_seed: int, clients: int = 600,
                         days: int = 1, fills: int = 30_000) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """A generated history of ``fills`` fills over ``days`` (the history), the same with poison
    (what is published) and the poison alone; the deployment's topics are made. (history, lines,
    poison)"""
    history = list(SampleDay(clients=clients, fills=fills, days=days, seed=seed).lines())
    lines, poison = with_poison(history, seed=poison_seed)
    await ensure(settings)
    return history, lines, poison


def with_poison(history: list[bytes], seed: int, share: float = POISON_SHARE) -> tuple[list[bytes], list[bytes]]:
    """The history with about ``share`` of poison inputs, each right after the fill it is made
    from, in turn: bytes that are not UTF-8, truncated JSON, a number in a money field, an
    unknown type, and a second event with a used id and another payload. (lines, poison)"""
    rng = random.Random(seed)
    fills = sum(1 for line in history if b'"trade.fill"' in line)
    chance = share * len(history) / max(fills, 1)
    lines: list[bytes] = []
    poison: list[bytes] = []
    used: set[bytes] = set()
    for line in history:
        lines.append(line)
        if b'"trade.fill"' not in line or line in used or rng.random() >= chance:
            continue
        used.add(line)
        doc = orjson.loads(line)
        n = len(poison)
        kind = n % 5
        if kind == 0:
            bad = b"\xff\xfe not utf-8 " + line[:40]
        elif kind == 1:
            bad = line[:len(line) // 2]
        elif kind == 2:
            bad = orjson.dumps({**doc, "id": f"poison-{n}", "fill_id": f"poison-{n}",
                                "spread_cost": float(doc["spread_cost"])})
        elif kind == 3:
            bad = orjson.dumps({"type": "trade.amend", "id": f"poison-{n}", "ts": doc["ts"],
                                "client_id": doc["client_id"]})
        else:
            bad = orjson.dumps({**doc, "lots": str(Decimal(doc["lots"]) + 1)})
        lines.append(bad)
        poison.append(bad)
    return lines, poison


def raw_text(raw: bytes) -> str:
    """An input's bytes as a rejection's ``raw`` holds them."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


async def assert_exactly_the_replay(settings: Settings, tmp_path: Path, poison: list[bytes],
                                    label: str) -> dict[str, dict[str, Any]]:
    """The outputs are exactly the replay's (see the module doc); they are returned by id."""
    raw = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    resent = {i: n for i, n in Counter(o["id"] for o in raw).items() if n > 1}
    assert resent == {}, f"{len(resent)} outputs sent more than once, e.g. {sorted(resent)[:5]}"
    sent = by_id(raw)  # also: no id with two payloads
    truth_file = tmp_path / f"truth-{label}.jsonl"
    namespace = f"truth-{settings.app_id}-{label}"  # this run's: a Redis kept from an earlier run has its own
    await replay_log(settings, rules_of(settings), truth_file, namespace, settings.redis_url)
    truth = by_id([orjson.loads(line) for line in truth_file.read_bytes().splitlines()])
    lost, extra = sorted(truth.keys() - sent.keys()), sorted(sent.keys() - truth.keys())
    differ = sorted(k for k in truth.keys() & sent.keys() if truth[k] != sent[k])
    assert (lost, extra, differ) == ([], [], []), (f"{len(lost)} lost, {len(extra)} extra, {len(differ)} differing",
                                                  lost[:5], extra[:5], differ[:5])
    assert payouts(truth) and payouts(sent) == payouts(truth)
    rejected = Counter(o["raw"] for o in sent.values() if o["type"] == "event.rejected")
    not_once = [(p[:60], rejected[raw_text(p)]) for p in poison if rejected[raw_text(p)] != 1]
    assert poison and not_once == [], f"poison not rejected exactly once: {not_once[:5]}"
    await assert_views_equal(settings, truth, namespace)
    return sent


def rules_of(settings: Settings) -> Rules:
    """The rules the deployment's worker runs (its rules file, REWARDS_PARK_WINDOW_S over it)."""
    return load_rules(settings.rules_file or None, settings.park_window_s)


def probe_fills(history: list[bytes], most: int = 200) -> list[bytes]:
    """One new fill for each of up to ``most`` clients, a copy of its last fill with new ids,
    after everything in the history."""
    last: dict[str, dict[str, Any]] = {}
    end = 0
    for line in history:
        try:
            doc = orjson.loads(line)
            end = max(end, parse_ts_us(doc["ts"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if doc.get("type") == "trade.fill" and isinstance(doc.get("client_id"), str):
            last[doc["client_id"]] = doc
    probes = []
    for n, (client_id, doc) in enumerate(sorted(last.items())[:most]):
        ts_us = end + 1_000_000 + n
        ts = f"{_utc(ts_us)}.{ts_us % 1_000_000:06d}Z"
        probes.append(orjson.dumps({**doc, "id": f"probe-{client_id}", "fill_id": f"probe-{client_id}", "ts": ts}))
    return probes


def _utc(ts_us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts_us // 1_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


async def cold_restart(settings: Settings, start_worker: Any, tmp_path: Path, history: list[bytes],
                       poison: list[bytes]) -> None:
    """Every worker of the scenario is stopped by now. A fresh one recovers from the topics alone;
    the probes after it are answered as the replay of the whole log answers them."""
    worker = start_worker(settings=settings, name="cold-restart")
    probes = probe_fills(history)
    await publish_per_topic(probes, settings)
    await wait_caught_up(settings, timeout_s=300)
    sent = await assert_exactly_the_replay(settings, tmp_path, poison, "cold")
    answered = {o.get("cause_id") for o in sent.values()}
    probe_ids = {orjson.loads(p)["id"] for p in probes}
    assert len(probe_ids & answered) >= len(probe_ids) // 2, "the probes had no effect"
    assert_running(worker)


async def settle_and_check(settings: Settings, start_worker: Any, tmp_path: Path, history: list[bytes],
                           poison: list[bytes], label: str, *workers: Any) -> dict[str, dict[str, Any]]:
    """The end of every scenario: lag 0, the ``workers`` still running, the outputs exactly the
    replay's; then the workers stopped and a cold restart. The outputs before it, by id."""
    try:
        await wait_caught_up(settings, timeout_s=300)
    except TimeoutError:
        pytest.fail("\n----\n".join(w.tail() for w in workers))
    assert_running(*workers)
    sent = await assert_exactly_the_replay(settings, tmp_path, poison, label)
    for worker in workers:
        worker.stop()
    await cold_restart(settings, start_worker, tmp_path, history, poison)
    return sent


def assert_running(*workers: Any) -> None:
    stopped = [w for w in workers if w.process.poll() is not None]
    assert not stopped, "a worker stopped on its own:\n" + "\n----\n".join(w.tail() for w in stopped)


async def wait_until(predicate: Any, timeout_s: float, explain: Any) -> None:
    """Poll the async ``predicate`` every 0.3 s; on timeout, fail with ``explain()``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(explain())
        await asyncio.sleep(0.3)
