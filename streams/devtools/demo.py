"""``rewards demo``: a generated broker day through the real worker, on a local Kafka and Redis.

1. Start Kafka and Redis (``streams.devtools.localservices``: the environment's, a Docker engine's, or
   local ones from the Maven Central jars and Debian's redis-server), create the topics.
2. Start a worker (``rewards worker``, a child process) and publish the day the way the source
   systems would: one producer per topic (CRM, trading platform, payments, client area,
   partner plans, settlement), concurrently and independently, the day played at PUBLISH_RATE
   events/s with each topic lagging the others by up to 200 ms. The worker's sequencer merges
   them by ts.
3. Wait until the worker's lag is zero on every topic it reads, with a progress bar.
4. Read the ledger and dead-letter topics and print what the day came to.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import TopicPartition

from streams import connect
from streams.bus import route
from streams.ops.topics import ensure_topics
from streams.ops.topics import partition_counts
from streams.ops.lag import PartitionLag, group_lag, wait_caught_up
from streams.worker.kafkaio import read_to_end
from streams.devtools.localservices import Services, free_port, services
from streams.devtools.publish import publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.settings import Settings


PUBLISH_RATE = 6000  # events/s: the generated day in about 40 s


@dataclass
class DaySummary:
    outputs: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    sums: dict[str, Decimal] = field(default_factory=dict)
    clients: set[str] = field(default_factory=set)
    late: int = 0      # fills of a day already closed when they came (paid at the next close)
    parked: int = 0    # inputs that waited for a prerequisite (the worker's counter)
    expired: int = 0   # of those, refused after the parking window

    def add(self, doc: dict[str, object]) -> None:
        kind = str(doc["type"])
        self.outputs[kind] += 1
        if kind == "event.rejected":
            self.rejections[str(doc["reason"])] += 1
        for name, (of, attribute) in SUMS.items():
            if kind == of:
                self.sums[name] = self.sums.get(name, Decimal(0)) + Decimal(str(doc[attribute]))
        if kind == "rebate.accrued" and doc.get("late"):
            self.late += 1
        client = doc.get("client_id")
        if isinstance(client, str) and kind == "cashback.accrued":
            self.clients.add(client)

    def render(self) -> str:
        def money(name: str) -> str:
            return f"{self.sums.get(name, Decimal(0)):,.2f}"

        lines = [
            f"  JM USD accrued (cashback)   {money('accrued'):>16}   to {len(self.clients):,} clients",
            f"  JM USD allocated            {money('allocated'):>16}",
            f"  trading cost covered        {money('covered'):>16}   on {self.outputs['coverage.applied']:,} fills",
            f"  welcome bonuses granted     {money('welcome'):>16}   ({self.outputs['welcome.granted']:,})",
            f"  deposit bonuses granted     {money('granted'):>16}   ({self.outputs['bonus.granted']:,})",
            f"  deposit bonuses unlocked    {money('unlocked'):>16}   ({self.outputs['bonus.unlocked']:,})",
            f"  rebates accrued             {money('rebates'):>16}",
            f"  rebates paid                {money('rebates_paid'):>16}   ({self.outputs['rebate.payout']:,} payouts)",
            f"  partner commissions paid    {money('commissions'):>16}   ({self.outputs['commission.payout']:,} payouts)",
            f"  fills reversed (busts)      {self.outputs['fill.reversed']:>16,}",
            f"  inputs parked               {self.parked:>16,}   (waited for a prerequisite; "
            f"{self.expired:,} refused after the window)",
            f"  late fills                  {self.late:>16,}   (their day was closed: paid at the next close)",
            f"  rejections (dead letters)   {sum(self.rejections.values()):>16,}",
        ]
        lines += [f"      {reason:<24}{count:>16,}" for reason, count in self.rejections.most_common()]
        lines.append(f"  outputs in all              {sum(self.outputs.values()):>16,}")
        lines += [f"      {kind:<24}{count:>16,}" for kind, count in self.outputs.most_common()
                  if kind != "event.rejected"]
        return "\n".join(lines)


SUMS = {
    "accrued": ("cashback.accrued", "amount"), "allocated": ("wallet.allocated", "amount"),
    "covered": ("coverage.applied", "covered"), "welcome": ("welcome.granted", "amount"),
    "granted": ("bonus.granted", "amount"), "unlocked": ("bonus.unlocked", "amount"),
    "rebates": ("rebate.accrued", "rebate"), "rebates_paid": ("rebate.payout", "amount"),
    "commissions": ("commission.payout", "amount"),
}


class Bar:
    """One progress line on stderr (a new line every 10 s when stderr is not a terminal)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream, self.tty, self.last = stream, stream.isatty(), 0.0
        self.started = time.monotonic()

    def show(self, label: str, done: int, total: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.25 if self.tty else 10):
            return
        self.last = now
        share = done / total if total else 1.0
        bar = "#" * int(min(share, 1.0) * 30)
        text = f"{label:<22} [{bar:<30}] {share:6.1%}  {done:>10,} / {total:,}  {now - self.started:6.0f} s"
        self.stream.write(("\r" + text) if self.tty else (text + "\n"))
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def caught_up(settings: Settings, bar: Bar, label: str, until: asyncio.Future[Any], worker: subprocess.Popen[bytes],
                    log: Path, expected: int, timeout_s: float = 1800) -> None:
    """Until ``until`` (the publishing) is done and the worker's groups' lag is zero on every
    topic they read. The bar counts the ``expected`` inputs of the client topics: those the
    sequencer has copied, less those its copies still wait for the ledger with (a fixed total:
    the internal topics grow as the worker writes them)."""
    def show(rows: list[PartitionLag]) -> None:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see {log}")
        copied = sum(row.end - row.lag for row in rows if row.topic in settings.client_topics)
        waiting = sum(row.lag for row in rows if row.topic == settings.sequenced_topic)
        bar.show(label, min(expected, max(0, copied - waiting)), expected)

    while not until.done():
        show(await group_lag(settings))
        await asyncio.sleep(0.5)
    await until
    await wait_caught_up(settings, timeout_s=timeout_s, quiet_s=0.5, progress=show)
    bar.show(label, expected, expected, force=True)
    bar.done()


async def read_outputs(settings: Settings) -> DaySummary:
    summary = DaySummary()
    consumer = connect.consumer(settings, enable_auto_commit=False, isolation_level="read_committed",
                                group_id=None, auto_offset_reset="earliest", max_poll_records=5000)
    try:
        await connect.start(consumer)
        counts = await partition_counts(settings, (settings.ledger_topic, settings.deadletter_topic))
        partitions = [TopicPartition(topic, p) for topic, n in sorted(counts.items()) for p in range(n)]
        async for _, messages in read_to_end(consumer, partitions):
            for message in messages:
                summary.add(orjson.loads(message.value))
    finally:
        await consumer.stop()
    return summary


async def worker_metric(settings: Settings, name: str) -> int:
    """One counter of the worker's /metrics (0 when it cannot be read)."""
    import urllib.request

    def read() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
        return 0

    try:
        return await asyncio.to_thread(read)
    except OSError:
        return 0


def start_process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own process group, its output to ``log``, the environment plus ``env``."""
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return start_process([sys.executable, "-m", "streams.cli", "worker"], settings.as_env(), log)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its group, SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def run(found: Services, fills: int, clients: int, seed: int, work: Path, out: TextIO) -> int:
    settings = Settings.from_env({}, kafka_bootstrap=found.kafka_bootstrap, redis_url=found.redis_url,
                                 app_id="rewards-demo", web_port=free_port(), data_dir=str(work / "worker"))
    await ensure_topics(settings)
    lines = list(SampleDay(clients=clients, fills=fills, seed=seed, bad_share=0.002).lines())
    print(f"generated a broker day: {len(lines):,} events, {fills:,} fills, {clients:,} clients", file=out)
    log = work / "worker.log"
    worker = start_worker(settings, log)
    print(f"worker started (log {log}); status page http://127.0.0.1:{settings.web_port}/", file=out)
    bar = Bar()
    started = time.monotonic()
    try:
        # As a real bus has it: one producer per source system, publishing independently and
        # concurrently, each lagging the others by up to 200 ms; the worker merges them by ts.
        # Played at a pace: all at once, the one day close would be published at the start, a
        # whole day ahead of the fills (a skew far beyond the grace), and the fills left after
        # it counted as late.
        publishing = asyncio.ensure_future(publish_per_topic(lines, settings, skew_ms=200, rate=PUBLISH_RATE,
                                                             seed=seed))
        expected = sum(1 for line in lines if route(line, settings)[0] in settings.client_topics)
        await caught_up(settings, bar, "the day", until=publishing, worker=worker, log=log, expected=expected)
        seconds = time.monotonic() - started
        summary = await read_outputs(settings)
        summary.parked = await worker_metric(settings, "rewards_parked_total")
        summary.expired = await worker_metric(settings, "rewards_parked_expired_total")
        lag = await group_lag(settings)
    finally:
        stop_process(worker)
    print(f"\nthe day, {len(lines):,} events, went through the worker in {seconds:.0f} s "
          f"({len(lines) / seconds:,.0f} events/s, publishing included):", file=out)
    print(summary.render(), file=out)
    worst = max((row.lag for row in lag), default=0)
    print(f"\nlag of group {settings.group} after the demo: {sum(row.lag for row in lag):,} "
          f"(largest {worst:,}) on {len(lag)} partitions", file=out)
    return 0 if worst == 0 else 1


def main(fills: int = 200_000, clients: int = 3000, seed: int = 7, work: str = ".cache/demo") -> int:
    path = Path(work)
    path.mkdir(parents=True, exist_ok=True)
    print("starting Kafka and Redis (the first run resolves the Kafka jars from Maven Central)", file=sys.stderr)
    with services() as found:
        print(f"Kafka at {found.kafka_bootstrap}, Redis at {found.redis_url}", file=sys.stderr)
        return asyncio.run(run(found, fills, clients, seed, path, sys.stdout))
