"""Operating the worker: `rewards lag` as a probe, /metrics against the outputs on Kafka, and
the status page in a real headless Chromium (its screenshot is kept in artifacts/)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

import handlers
from streams.devtools.localservices import debian_binary
from streams.devtools.publish import publish
from streams.devtools.sample_day import SampleDay
from streams.settings import Settings
from tests.integration.conftest import ensure, publish_in_order, read_all, settings_env, wait_caught_up

SCENARIOS = Path(__file__).parents[1] / "scenarios"
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
pytestmark = pytest.mark.integration


def rewards_lag(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "lag", "--json", *args], env=settings_env(settings),
                          capture_output=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


async def fetch(port: int, path: str, timeout_s: float = 60) -> str:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 200, (path, response.status)
                    return await response.text()
            except aiohttp.ClientConnectionError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.3)


def samples(text: str, name: str) -> dict[str, float]:
    """The series of one metric in Prometheus text: {label text: value}."""
    found = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        found[match.group(1) or ""] = float(match.group(2))
    return found


async def test_lag_probe_is_nonzero_while_a_paused_worker_has_a_backlog(settings: Settings, start_worker: Any) -> None:
    await ensure(settings)
    worker = start_worker()
    await publish_in_order(settings, (SCENARIOS / "programs.jsonl").read_bytes().splitlines())
    await wait_caught_up(settings)
    code, report = rewards_lag(settings, "--max-lag", "0")
    assert (code, report["total_lag"], report["exceeded"]) == (0, 0, False)
    assert {row["topic"] for row in report["partitions"]} >= set(settings.input_topics) | {settings.sequenced_topic}

    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        backlog = list(SampleDay(clients=20, fills=400, seed=3).lines())
        await publish(backlog, settings)
        code, report = rewards_lag(settings, "--max-lag", "0")
        assert code == 1 and report["exceeded"]
        assert report["total_lag"] >= len(backlog)
        code, _ = rewards_lag(settings, "--max-lag", str(10 * len(backlog)))
        assert code == 0, "under a threshold above the backlog, the probe passes"
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    await wait_caught_up(settings)
    code, report = rewards_lag(settings, "--max-lag", "0")
    assert (code, report["total_lag"]) == (0, 0), worker.tail()
    table = subprocess.run([sys.executable, "-m", "streams.cli", "lag"], env=settings_env(settings),
                           capture_output=True, timeout=60, text=True)
    assert table.returncode == 0 and f"group {settings.group}: total lag 0" in table.stdout


def parsed(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # the scenario's malformed inputs


async def test_metrics_count_what_reached_kafka(settings: Settings, start_worker: Any) -> None:
    await ensure(settings)
    worker = start_worker()
    await publish_in_order(settings, (SCENARIOS / "programs.jsonl").read_bytes().splitlines())
    await wait_caught_up(settings)
    outputs = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    by_type = Counter(o["type"] for o in outputs)
    by_reason = Counter(o["reason"] for o in outputs if o["type"] == "event.rejected")
    assert by_reason, "the scenario has rejections"
    await asyncio.sleep(6)  # one tick of the offsets timer after catching up
    text = await fetch(worker.port, "/metrics")
    # every output: the ledger's, and the commission book's payouts
    counted = samples(text, "rewards_outputs_total")
    assert by_type["commission.payout"] > 0, "the scenario pays commissions"
    assert {re.search(r'type="([^"]+)"', k).group(1): int(v) for k, v in counted.items()} == dict(by_type)
    rejected = samples(text, "rewards_rejections_total")
    assert {re.search(r'reason="([^"]+)"', k).group(1): int(v) for k, v in rejected.items()} == dict(by_reason)
    accrued = sum(float(o["amount"]) for o in outputs if o["type"] == "cashback.accrued")
    assert samples(text, "rewards_jm_usd_accrued_usd_total")[""] == pytest.approx(accrued)
    paid = sum(float(o["amount"]) for o in outputs if o["type"] == "commission.payout")
    assert paid > 0 and samples(text, "rewards_commission_paid_usd_total")[""] == pytest.approx(paid)
    # a broadcast input is applied by every partition and counted once
    inputs = Counter(event.get("type") for event in map(parsed, (SCENARIOS / "programs.jsonl").read_bytes().splitlines())
                     if isinstance(event, dict))
    applied = {re.search(r'type="([^"]+)"', k).group(1): int(v)
               for k, v in samples(text, "rewards_events_applied_total").items()}
    for broadcast in ("partner.plan", "settlement.day_closed"):
        assert inputs[broadcast] > 0 and applied[broadcast] == inputs[broadcast], (broadcast, applied, inputs)
    lags = samples(text, "rewards_consumer_lag")
    assert lags and all(value == 0 for value in lags.values())
    assert any(settings.sequenced_topic in labels for labels in lags)
    assert samples(text, "rewards_rebalances_total")[""] >= 1
    assert samples(text, "rewards_pipeline_latency_seconds_count")[""] > 0


async def test_status_page_in_headless_chromium(settings: Settings, start_worker: Any) -> None:
    chromium = debian_binary("chromium", "chromium")
    await ensure(settings)
    worker = start_worker()
    await publish_in_order(settings, (SCENARIOS / "programs.jsonl").read_bytes().splitlines())
    await wait_caught_up(settings)
    await asyncio.sleep(6)  # the lag table fills on the offsets timer
    status = json.loads(await fetch(worker.port, "/status.json"))
    url = f"http://127.0.0.1:{worker.port}/"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-extensions", "--hide-scrollbars",
             "--virtual-time-budget=5000", f"--user-data-dir={ARTIFACTS / '.chromium-profile'}"]
    ARTIFACTS.mkdir(exist_ok=True)
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, timeout=120, text=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the page's script ran against the worker: the table has a row per partition held
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td>", html)
    assert len(rows) == len(status["lag"]) > 0
    assert {topic for topic, _ in rows} >= {settings.sequenced_topic}
    assert f'id="app">{settings.group}<' in html
    assert "faust_streaming" in html
    points = re.search(r'id="applied-line"[^>]*points="([^"]*)"', html)
    # a point per 10-s slot since the start (a slot may have begun between the two reads)
    assert points and len(points.group(1).split()) - len(status["series"]) in (0, 1)
    total_lag = re.search(r'id="total-lag">([^<]*)<', html)
    assert total_lag and total_lag.group(1) == "0"
    # which worker this is; the input topics before the worker's own; the dead letters counted
    assert re.search(rf'id="worker">[^<]+ \(pid {worker.process.pid}\)<', html)
    assert rows[0][0] in settings.input_topics and status["lag"][0]["input"] is True
    assert [row["input"] for row in status["lag"]] == sorted((row["input"] for row in status["lag"]), reverse=True)
    outputs = await read_all(settings.kafka_bootstrap, settings.deadletter_topic)
    assert status["dead_lettered"] == len(outputs) > 0
    assert re.search(rf'id="dead-lettered">{len(outputs):,}<', html)
    # the chart: from the worker's start, with a value axis and a time axis
    started = datetime.fromisoformat(status["started_at"].replace("Z", "+00:00")).timestamp()
    assert status["series"] and status["series"][0]["t"] >= started // status["slot_s"] * status["slot_s"]
    y_ticks = re.findall(r'<text [^>]*class="tick"[^>]*>([0-9.,]+)</text>', re.search(r'id="y-axis".*?</g>', html).group(0))
    x_ticks = re.findall(r'>(\d\d:\d\d:\d\d)</text>', re.search(r'id="x-axis".*?</g>', html).group(0))
    assert y_ticks[0] == "0" and len(y_ticks) == 3 and x_ticks
    assert "events / s" in html and "time (UTC)" in html

    screenshot = ARTIFACTS / "status-page.png"
    screenshot.unlink(missing_ok=True)
    shot = subprocess.run([chromium, *flags, "--window-size=1280,900", f"--screenshot={screenshot}", url],
                          capture_output=True, timeout=120, text=True)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000, "a blank page compresses to almost nothing"


async def test_without_redis_a_worker_is_ready_and_degraded_and_logs_json(settings: Settings,
                                                                          start_worker: Any) -> None:
    """Readiness follows Kafka: with Redis unreachable the worker is ready ("degraded", 200) and
    says so on rewards_read_model_up. Its log, with REWARDS_LOG_FORMAT=json, is one JSON object
    per line, with the "ready" line naming where it serves."""
    from dataclasses import replace

    from streams.devtools.localservices import free_port

    settings = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", log_format="json")
    await ensure(settings)
    worker = start_worker(settings=settings)
    deadline = asyncio.get_running_loop().time() + 90
    while '"event":"ready"' not in worker.log_path.read_text(errors="replace"):
        assert worker.process.poll() is None, worker.tail()
        assert asyncio.get_running_loop().time() < deadline, f"no ready line:\n{worker.tail()}"
        await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{worker.port}/health") as response:
            assert response.status == 200
            health = await response.json()
    assert (health["status"], health["kafka"], health["redis"]) == ("degraded", "processing", "unreachable")
    assert samples(await fetch(worker.port, "/metrics"), "rewards_read_model_up") == {"": 0.0}
    worker.stop()
    log = worker.log_path.read_bytes()
    assert b"\x1b" not in log and b"\x08" not in log, "terminal escape codes in the log"
    lines = [orjson.loads(line) for line in log.splitlines()]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    [ready] = [line for line in lines if line.get("event") == "ready"]
    assert ready["web"] == f"http://{socket.gethostname()}:{worker.port}/"
    assert f"app id {settings.app_id}" in ready["message"] and ready["level"] == "INFO"
    assert ready["engine"] == handlers.BUILD  # the engine it runs, as this test's process sees it
