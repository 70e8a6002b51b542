"""Issue 25 on a real broker: versions of the program terms on their own topic, published as
the source systems publish (a producer per topic, with skew), give the outputs of
`rewards replay --order ts` of the same events: on 8 partitions, live through the change, on a
backlog with the worker SIGKILLed around the change, and `replay --from-kafka` of what it
recorded gives the worker's outputs byte for byte."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from handlers.rules import Rules
from schemas.timefmt import parse_ts_us
from streams.bus import in_ts_order
from streams.devtools.publish import publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.offline.logreplay import replay_log
from streams.settings import Settings
from tests.integration.conftest import ensure, read_all, settings_env, wait_caught_up, wait_for_outputs
from tests.integration.test_client_api import get
from tests.integration.test_contract import comparable, offline, through_both

pytestmark = pytest.mark.integration

CHANGE = "2026-11-23T12:00:00Z"        # cashback 10 % -> 12 %
# A 60 % deposit bonus tier, only inside (the generated day's deposits come in its first seconds)
PROMO = ("2026-11-23T00:00:01Z", "2026-11-23T00:00:02Z")
TIER_60 = {"60": {"account_types": ["standard_cent", "standard", "pro", "raw_spread"], "min_deposit_usd": "100"}}


def version(n: int, ts: str, name: str, effective: str, rules: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "program.terms", "id": f"terms-{n}", "ts": ts, "version": name,
                         "effective": effective, "rules": rules, "note": "marketing's calendar"})


VERSIONS = [
    version(1, "2026-11-23T00:00:00.01Z", "rate-12", CHANGE, {"cashback": {"rate": "0.12"}}),
    version(2, "2026-11-23T00:00:00.02Z", "promo-60", PROMO[0], {"deposit_bonus": {"tiers": TIER_60}}),
    version(3, "2026-11-23T00:00:00.03Z", "promo-end", PROMO[1], {}),
    # refused: retroactive, the same name with other content, a structural key
    version(4, "2026-11-23T00:00:03Z", "backdated", "2026-11-23T00:00:02.5Z", {"cashback": {"rate": "0.5"}}),
    version(5, "2026-11-23T00:00:04Z", "rate-12", "2026-11-23T20:00:00Z", {"cashback": {"rate": "0.13"}}),
    version(6, "2026-11-23T00:00:05Z", "short-parking", "2026-11-23T21:00:00Z", {"parking": {"window_seconds": 1}}),
]


def history() -> list[bytes]:
    """A generated two-day history whose clients choose 60 % where they chose 120 %, with the
    versions among them in the file (the bus takes them on their own topic)."""
    day = [line.replace(b'"bonus_percent":120', b'"bonus_percent":60')
           for line in SampleDay(clients=40, fills=600, days=2, seed=12).lines()]
    return day[:5] + VERSIONS + day[5:]


def check_the_timeline(outputs: list[dict[str, Any]], lines: list[bytes]) -> None:
    """What the versions did, checked from the outputs themselves."""
    accepted = [o["version"] for o in outputs if o["type"] == "terms.accepted"]
    assert sorted(accepted) == ["promo-60", "promo-end", "rate-12"]  # once each, whatever the partitions
    refused = Counter(o["reason"] for o in outputs if o["type"] == "event.rejected"
                      and o["cause_id"].startswith("terms-"))
    assert refused == {"terms_retroactive": 1, "terms_conflict": 1, "terms_invalid": 1}
    granted = [o for o in outputs if o["type"] == "bonus.granted" and o["percent"] == 60]
    chose_60 = {doc["id"] for doc in map(orjson.loads, lines) if doc.get("bonus_percent") == 60}
    turned_away = [o for o in outputs if o["type"] == "bonus.rejected" and o["reason"] == "ineligible_account"
                   and o["cause_id"] in chose_60]
    assert granted and all(inside(o["ts"]) for o in granted)
    assert turned_away and not any(inside(o["ts"]) for o in turned_away)


def inside(ts: str) -> bool:
    return parse_ts_us(PROMO[0]) <= parse_ts_us(ts) < parse_ts_us(PROMO[1])


def rates(outputs: list[dict[str, Any]], lines: list[bytes]) -> set[tuple[bool, str]]:
    """(after the change, cashback / cost) of every fill on a USD account without coverage."""
    docs = [orjson.loads(line) for line in lines]
    usd = {doc["account_id"] for doc in docs if doc.get("type") == "account.opened" and doc["currency"] == "USD"}
    fills = {doc["id"]: doc for doc in docs if doc.get("type") == "trade.fill" and doc["account_id"] in usd}
    covered = {o["cause_id"] for o in outputs if o["type"] == "coverage.applied"}
    found = set()
    for o in outputs:
        fill = fills.get(o["cause_id"])
        if o["type"] == "cashback.accrued" and fill is not None and o["cause_id"] not in covered:
            cost = Decimal(fill["spread_cost"]) + Decimal(fill["commission"])
            found.add((parse_ts_us(fill["ts"]) >= parse_ts_us(CHANGE), str((Decimal(o["amount"]) / cost).quantize(Decimal("0.01")))))
    return found


async def test_live_on_eight_partitions_the_terms_apply_at_their_instants(settings: Settings,
                                                                          start_worker: Any) -> None:
    lines = history()
    # the sources lag each other by up to 200 ms: within the grace, as the guarantee asks
    got = await through_both(lines, None, replace(settings, partitions=8, order_grace_ms=1000), start_worker)
    check_the_timeline(got, lines)
    assert rates(got, lines) == {(False, "0.10"), (True, "0.12")}


async def test_a_backlog_through_a_sigkill_around_the_change_then_replay_from_kafka(
        settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    lines = history()
    expected = offline(in_ts_order(lines, settings), Rules.default())
    before_change = sum(1 for o in expected if o["ts"] and parse_ts_us(o["ts"]) < parse_ts_us(CHANGE))
    await ensure(settings)
    await publish_per_topic(lines, settings, skew_ms=200, seed=5)
    worker = start_worker()
    await wait_for_outputs(settings, lambda outs: len(outs) >= before_change, 60)
    worker.kill()
    restarted = start_worker(name="after-kill")
    got = await wait_for_outputs(settings, lambda outs: len({o["id"] for o in outs}) >= len(expected), 90)
    await wait_caught_up(settings)
    got = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    assert comparable(got) == comparable(expected)
    assert Counter(o["id"] for o in got) == Counter(o["id"] for o in expected)  # none twice
    check_the_timeline(got, lines)
    # the status page's terms, the API's, and the metric of the version each partition applies, on
    # a worker that recovers the partitions with nothing left to apply (no turn to show them)
    restarted.stop()  # leaves the group: the next one gets every partition at once
    idle = start_worker(name="idle")
    for _ in range(100):  # the idle worker's partitions recovered
        status, terms = await get(idle.port, "/terms")
        if terms["versions"]:
            break
        await asyncio.sleep(0.3)
    assert status == 200 and (terms["in_force"] or {}).get("version") == "rate-12" and terms["next"] is None, terms
    assert terms["versions"] == 3 and terms["late"] == 0
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{idle.port}/metrics") as response:
            metrics = await response.text()
    assert [line for line in metrics.splitlines() if line.startswith("rewards_terms_version{")] == [
        f'rewards_terms_version{{partition="{p}",version="rate-12"}} 1.0' for p in range(settings.partitions)]
    replayed = tmp_path / "replayed.jsonl"
    await replay_log(settings, Rules.default(), replayed, "terms-check")
    assert sorted(orjson.dumps(o) for o in got) == sorted(replayed.read_bytes().splitlines())


def rewards_terms(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "terms", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=60)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_terms_publish_checks_as_the_worker_does_and_list_shows_the_timeline(
        settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    await ensure(settings)
    now = datetime.now(timezone.utc)
    rate = tmp_path / "rate.toml"
    rate.write_text('[cashback]\nrate = "0.12"\n')
    other = tmp_path / "other.toml"
    other.write_text('[cashback]\nrate = "0.13"\n')
    structural = tmp_path / "structural.toml"
    structural.write_text('[parking]\nwindow_seconds = 5\n')
    later = iso(now + timedelta(hours=2))

    dry = rewards_terms(settings, "publish", str(rate), "--version", "v12", "--effective", later, "--dry-run")
    assert dry.returncode == 0 and "cashback_rate: 0.10 -> 0.12" in dry.stdout and "not published" in dry.stdout
    assert rewards_terms(settings, "list").stdout.startswith("no versions published")
    done = rewards_terms(settings, "publish", str(rate), "--version", "v12", "--effective", later, "--note", "12 %")
    assert done.returncode == 0, done.stderr
    again = rewards_terms(settings, "publish", str(other), "--version", "v12", "--effective", iso(now + timedelta(hours=3)))
    assert again.returncode == 2 and "terms_conflict" in again.stderr and "\n" == again.stderr[-1:]
    soon = rewards_terms(settings, "publish", str(other), "--version", "v13", "--effective", iso(now + timedelta(seconds=30)))
    assert soon.returncode == 2 and "at least 3,600 s ahead" in soon.stderr
    wrong = rewards_terms(settings, "publish", str(structural), "--version", "vp", "--effective", later)
    assert wrong.returncode == 2 and "`parking.window_seconds` is not a program term" in wrong.stderr
    assert "Traceback" not in again.stderr + soon.stderr + wrong.stderr

    # a source that backdates a version: refused on the topic, as every partition refuses it
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_programs, orjson.dumps({
            "type": "program.terms", "id": "backdated", "ts": iso(now), "version": "old",
            "effective": iso(now - timedelta(days=1)), "rules": {}}))
    finally:
        await producer.stop()
    listed = rewards_terms(settings, "list")
    assert listed.returncode == 0
    rows = listed.stdout.splitlines()
    # no worker has run: v12 passed its own checks and waits for the sequencer's tasks' word
    assert rows[1].split()[:3] == ["v12", later, "waiting:"] and "by 0 of the sequencer's 4 tasks" in rows[1]
    assert rows[2].split()[:3] == ["old", iso(now - timedelta(days=1)), "refused"] and "terms_retroactive" in rows[2]
    start_worker()
    for _ in range(120):  # once the worker's tasks have recorded it: accepted, and next
        as_json = orjson.loads(rewards_terms(settings, "list", "--json").stdout)
        if as_json["versions"][0]["accepted"]:
            break
        await asyncio.sleep(0.5)
    assert as_json["in_force"] is None and as_json["next"] == {"version": "v12", "effective": later}
    assert [(v["version"], v["accepted"], v["reason"]) for v in as_json["versions"]] == [
        ("v12", True, ""), ("old", False, "terms_retroactive")]
    rows = rewards_terms(settings, "list").stdout.splitlines()
    assert rows[1].split()[:4] == ["v12", later, "next", "accepted"] and "(12 %)" in rows[1]


async def test_a_version_late_on_one_partition_is_refused_on_all(settings: Settings, start_worker: Any,
                                                                 tmp_path: Path) -> None:
    """The terms topic lags beyond the grace: partition 0 has already applied fills past the
    version's effective when it comes, the other partitions have not. Every partition refuses it
    (`terms_late`, reported once), and their own fills past the effective are paid under the
    terms before it, as partition 0's were: none accepted it while another could not."""
    from streams.devtools.publish import publish
    from streams.worker.partitioning import partition_for

    clients: dict[int, list[str]] = {p: [] for p in range(settings.partitions)}
    for n in range(200):
        client = f"late-{n}"
        clients[partition_for(client.encode(), settings.partitions)].append(client)
    assert all(len(found) >= 2 for found in clients.values())
    every = [c for found in clients.values() for c in found[:2]]

    def ev(kind: str, n: int, ts: str, **fields: Any) -> bytes:
        return orjson.dumps({"type": kind, "id": f"{kind}-{n}", "ts": ts, **fields})

    def fill(n: int, client: str, ts: str) -> bytes:
        return ev("trade.fill", n, ts, client_id=client, account_id=f"{client}-a", fill_id=f"F{n}", symbol="EURUSD",
                  action="open", lots="1", spread_cost="10", commission="0")

    onboarding = [line for i, c in enumerate(every) for line in (
        ev("client.registered", i, "2026-12-01T00:00:00Z", client_id=c, country="DE"),
        ev("account.opened", i, "2026-12-01T00:00:01Z", client_id=c, account_id=f"{c}-a", account_type="standard",
           currency="USD"))]
    past_effective_0 = [fill(100 + i, c, "2026-12-01T03:00:00Z") for i, c in enumerate(clients[0][:2])]
    version = orjson.dumps({"type": "program.terms", "id": "terms-late", "ts": "2026-12-01T00:30:00Z",
                            "version": "rate-20", "effective": "2026-12-01T02:00:00Z",
                            "rules": {"cashback": {"rate": "0.2"}}})
    past_effective_rest = [fill(200 + i, c, "2026-12-01T03:00:00Z")
                           for i, c in enumerate(c for p in range(1, settings.partitions) for c in clients[p][:2])]

    await ensure(settings)
    worker = start_worker()
    await publish(onboarding + past_effective_0, settings)
    await wait_for_outputs(settings, lambda outs: sum(o["type"] == "cashback.accrued" for o in outs) == 2, 60)
    await publish([version], settings)   # beyond the grace: partition 0 is past its effective
    await publish(past_effective_rest, settings)
    want = 2 + len(past_effective_rest)
    try:
        got = await wait_for_outputs(settings, lambda outs: sum(o["type"] == "cashback.accrued" for o in outs) == want
                                     and any(o["type"] == "event.rejected" for o in outs), 60)
    except TimeoutError:
        pytest.fail(worker.tail())
    await wait_caught_up(settings)
    got = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    assert [(o["cause_id"], o["reason"]) for o in got if o["type"] == "event.rejected"] == [("terms-late", "terms_late")]
    assert not [o for o in got if o["type"] == "terms.accepted"]
    assert sorted({o["amount"] for o in got if o["type"] == "cashback.accrued"}) == ["1"]  # 10 % everywhere
    assert "refused on every partition (terms_late)" in worker.tail()
    replayed = tmp_path / "replayed.jsonl"
    await replay_log(settings, Rules.default(), replayed, "late-check")
    assert sorted(orjson.dumps(o) for o in got) == sorted(replayed.read_bytes().splitlines())
