"""State that stays bounded over a quarter's shape: a fixed population of clients trading 30 and
then 60 simulated days, at the same daily volume, through the real worker on a real Kafka.

At day 30 and at day 60, once the worker has caught up:

- the running worker's RSS;
- the live state: the three state changelogs read back (``read_committed``) and reduced to the
  latest value of every key, tombstoned keys gone: keys and bytes, the ledger's by kind of key
  (client slots, event ids, fills, deposits, parked queues, shared state);
- the records on the broker in those changelogs, compacted or not yet;
- a cold restart: the worker stopped, the broker's log cleaner given time to run, a fresh worker
  (a data folder of its own) started and one new fill published; the seconds from its start to
  that fill's first output, and its RSS then. That worker goes on with the next days.

Then the same histories offline (``rewards replay``): peak memory at 30 and at 60 days, each in
a process of its own. The goal: each figure at 60 days within 10 % of its value at 30 days. The
simulated quarter passes in minutes of wall time, so the changelogs' segment and compaction lag
(REWARDS_CHANGELOG_SEGMENT_MS) are scaled with it: the inputs are published at DAY_S wall seconds
per simulated day and a segment is a simulated hour (a deployment's is an hour), so the broker's
cleaner (every 15 s) and its tombstone retention (24 segments: a day) keep their proportions to
event time. The running worker's RSS is sampled once a simulated day.

    python -m benchmarks.soak --clients 2000 --days 60 --fills-per-day 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.devtools.demo import start_worker, stop_process
from streams.devtools.localservices import Services, free_port, services
from streams.devtools.publish import publish, publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.ops.lag import wait_caught_up
from streams.ops.topics import changelog_topics, ensure_topics
from streams.settings import Settings
from streams.worker.kafkaio import read_changelog, read_to_end, reader

RESULTS = Path(__file__).parent / "results"
START = date(2026, 11, 23)
DAY_S = 12.0  # wall seconds per simulated day: the inputs are published at that pace
SEGMENT_MS = int(DAY_S * 1000 / 24)  # REWARDS_CHANGELOG_SEGMENT_MS: a simulated hour, as a deployment's is an hour
LEDGER_KINDS = {b"c": "client state", b"s": "partition's shared state",
                b"v": "views marker"}
HISTORY_KINDS = {b"s": "event id", b"f": "fill", b"d": "deposit", b"p": "parked queue"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


async def sample_rss(pid: int, into: list[float]) -> None:
    while True:
        await asyncio.sleep(DAY_S)
        into.append(rss_mb(pid))


def kind_of(key: bytes) -> str:
    if key[:1] == b"h":
        return "history: " + HISTORY_KINDS.get(key[key.index(b"\x1f") + 1:][:1], "?")
    return LEDGER_KINDS.get(key[:2], LEDGER_KINDS.get(key[:1], "other"))


async def live_state(settings: Settings) -> dict[str, Any]:
    """The changelogs reduced to their live keys; the ledger's by kind."""
    found: dict[str, Any] = {"keys": 0, "bytes": 0, "by_kind": {}}
    kinds: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for topic in changelog_topics(settings):
        tables = await read_changelog(settings, topic, list(range(settings.partitions)))
        for table in tables.values():
            for key, value in table.items():
                found["keys"] += 1
                found["bytes"] += len(key) + len(value)
                if topic == settings.state_changelog:
                    kind = kind_of(key)
                    kinds[kind] += 1
                    sizes[kind] += len(key) + len(value)
    found["by_kind"] = {kind: {"keys": kinds[kind], "bytes": sizes[kind],
                               "bytes_per_key": round(sizes[kind] / kinds[kind], 1)} for kind in sorted(kinds)}
    return found


async def changelog_records(settings: Settings) -> int:
    """Records the broker holds in the changelogs: the live ones and what its cleaner has not
    compacted away yet."""
    consumer = reader(settings, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    total = 0
    try:
        partitions = [TopicPartition(t, p) for t in changelog_topics(settings) for p in range(settings.partitions)]
        async for _, records in read_to_end(consumer, partitions):
            total += len(records)
    finally:
        await consumer.stop()
    return total


def probe(day: int, n: int) -> bytes:
    """A new fill of the first client, after everything published so far."""
    ts = f"{(START + timedelta(days=day)).isoformat()}T00:10:00.000000Z"
    return orjson.dumps({"type": "trade.fill", "id": f"probe-{day}-{n}", "ts": ts, "client_id": "c000000",
                         "account_id": "c000000-a0", "fill_id": f"probe-f-{day}-{n}", "symbol": "EURUSD",
                         "action": "open", "lots": "1", "spread_cost": "10", "commission": "0"})


async def first_output_of(settings: Settings, cause_id: str, since_ms: int, timeout_s: float = 300) -> float:
    """When (ms since the epoch) the first ledger or dead-letter record caused by ``cause_id`` was appended."""
    consumer = AIOKafkaConsumer(settings.ledger_topic, settings.deadletter_topic,
                                bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.timestamp >= since_ms and cause_id.encode() in record.value:
                        return float(record.timestamp)
        raise TimeoutError(f"no output of {cause_id} in {timeout_s} s")
    finally:
        await consumer.stop()


async def checkpoint(settings: Settings, worker: Any, work: Path, day: int) -> tuple[dict[str, Any], Any]:
    figures: dict[str, Any] = {"day": day, "worker_rss_mb": rss_mb(worker.pid)}
    figures["live"] = await live_state(settings)
    stop_process(worker)
    figures["changelog_records_on_broker"] = await changelog_records(settings)
    fresh = replace(settings, data_dir=str(work / f"worker-{day}"))
    started_ms = int(time.time() * 1000)
    worker = start_worker(fresh, work / f"worker-{day}.log")
    await publish([probe(day, 1)], settings)
    answered_ms = await first_output_of(settings, f"probe-{day}-1", started_ms)
    figures["cold_restart_to_first_output_s"] = round((answered_ms - started_ms) / 1000, 2)
    figures["restarted_worker_rss_mb"] = rss_mb(worker.pid)
    print(f"day {day}: {json.dumps(figures)}", file=sys.stderr)
    return figures, worker


def offline_peak_mb(lines: list[bytes], work: Path, day: int) -> float:
    """``rewards replay`` of ``lines`` in a process of its own: its peak RSS (VmHWM: getrusage's
    ru_maxrss would count this process's own pages, which the child had before its exec)."""
    events = work / f"history-{day}.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    code = ("import re, sys; from pathlib import Path; from streams.cli import main; "
            f"rc = main(['replay', '--quiet', '--input', {str(events)!r}, "
            f"'--output', {str(work / f'out-{day}.jsonl')!r}]); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(int(done.stdout.split()[-1]) / 1024, 1)


def split_at_close(lines: list[bytes], day: int) -> int:
    """The index just after the close of simulated day ``day`` (1-based)."""
    closed = f'"date":"{(START + timedelta(days=day - 1)).isoformat()}"'.encode()
    return next(i for i, line in enumerate(lines) if b'"settlement.day_closed"' in line and closed in line) + 1


def within(later: float, earlier: float) -> dict[str, Any]:
    ratio = later / earlier if earlier else float("inf")
    return {"ratio": round(ratio, 3), "within_10_percent": ratio <= 1.10}


async def run(found: Services, clients: int, days: int, fills_per_day: int, work: Path) -> dict[str, Any]:
    app = f"soak{int(time.time())}"  # topics of its own, named after it
    settings = Settings.from_env({}, kafka_bootstrap=found.kafka_bootstrap, redis_url=found.redis_url, app_id=app,
                                 partitions=4, web_port=free_port(), changelog_segment_ms=SEGMENT_MS,
                                 data_dir=str(work / "worker"),
                                 **{f"topic_{t}": f"{app}.{t}" for t in ("clients", "trades", "payments", "commands",
                                                                         "partners", "settlement", "ledger",
                                                                         "deadletter")})
    await ensure_topics(settings)
    lines = list(SampleDay(clients=clients, fills=days * fills_per_day, days=days, seed=61, bad_share=0.01).lines())
    half = split_at_close(lines, days // 2)
    print(f"{len(lines):,} events, {half:,} in the first {days // 2} days", file=sys.stderr)
    worker = start_worker(settings, work / "worker.log")
    checkpoints = []
    for day, part in ((days // 2, lines[:half]), (days, lines[half:])):
        started = time.perf_counter()
        rss: list[float] = []
        sampling = asyncio.create_task(sample_rss(worker.pid, rss))
        await publish_per_topic(part, settings, skew_ms=200, rate=len(part) / (days // 2 * DAY_S))
        await wait_caught_up(settings, timeout_s=1800)
        sampling.cancel()
        print(f"days to {day}: {len(part):,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        figures, worker = await checkpoint(settings, worker, work, day)
        figures["worker_rss_mb_each_day"] = rss
        checkpoints.append(figures)
    stop_process(worker)
    offline = {days // 2: offline_peak_mb(lines[:half], work, days // 2), days: offline_peak_mb(lines, work, days)}
    first, last = checkpoints
    return {
        "benchmark": "soak",
        "clients": clients, "days": days, "fills_per_day": fills_per_day, "events": len(lines),
        "events_first_half": half,
        "changelog_segment_ms": settings.changelog_segment_ms,
        "checkpoints": checkpoints,
        "offline_replay_peak_mb": offline,
        "goal_60_vs_30": {
            "worker_rss": within(last["worker_rss_mb"], first["worker_rss_mb"]),
            "restarted_worker_rss": within(last["restarted_worker_rss_mb"], first["restarted_worker_rss_mb"]),
            "live_changelog_bytes": within(last["live"]["bytes"], first["live"]["bytes"]),
            "live_changelog_keys": within(last["live"]["keys"], first["live"]["keys"]),
            "cold_restart_to_first_output": within(last["cold_restart_to_first_output_s"],
                                                   first["cold_restart_to_first_output_s"]),
            "offline_peak_memory": within(offline[days], offline[days // 2]),
        },
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--fills-per-day", type=int, default=5000)
    parser.add_argument("--work", default="/tmp/rewards-soak")
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with services() as found:
        result = asyncio.run(run(found, args.clients, args.days, args.fills_per_day, work))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["goal_60_vs_30"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
