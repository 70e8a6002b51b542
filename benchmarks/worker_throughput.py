"""Stream throughput, in one run on the same broker (the real local Kafka of the tests):

1. the worker (sequencer + ledger + Redis read model), end to end, fills per second: timed on
   its groups' commits of the input topics and of the sequenced log; the same backlog again with
   each of a few REWARDS_BATCH_MAX values (fills and Kafka transactions per second: the batch
   size / transaction rate trade-off); then, published live at
   half that rate, each fill's latency from its input record to its first output record, with
   the default REWARDS_ORDER_GRACE_MS and with 0 (the merge then waits for no quiet source);
2. a raw aiokafka consume -> orjson decode -> produce passthrough, messages per second;
3. a naive Faust agent (Record value, one table update per event), messages per second;
4. a Quix Streams app running the same rules (benchmarks/quix_app.py: ``handlers.engine.process``
   on each client's state in Quix's RocksDB state, exactly-once), fills per second. It gets every
   input on one topic keyed by client, in order (the onboarding, drained untimed, then the fills):
   the worker's sequencer's work done for it.

Each drains the same backlog of trade fills, published before it starts; each is timed from its
first committed progress to zero lag, so start-up and table recovery are not counted. The worker
and the raw passthrough take turns for ROUNDS rounds (the fills published again under new ids
for each): their figures are the medians.

    python -m benchmarks.worker_throughput --fills 100000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.bus import route
from streams.devtools.demo import start_process, start_worker, stop_process
from streams.devtools.localservices import Services, free_port, services
from streams.devtools.publish import publish, publish_per_topic
from streams.devtools.sample_day import SampleDay
from streams.ops.lag import group_lag, wait_caught_up
from streams.ops.topics import ensure_topics
from streams.settings import Settings

RESULTS = Path(__file__).parent / "results"
ROUNDS = 3  # the worker and the raw passthrough, taking turns


async def drain_time(settings: Settings, group: str, topics: list[str], timeout_s: float = 900,
                     one_group: bool = False) -> tuple[float, int]:
    """Seconds from the first committed progress on ``topics`` to zero lag there, and how many
    messages that covered: of the worker whose app id is ``group`` (its groups), or with
    ``one_group``, of that consumer group."""
    probe = Settings.from_env({}, kafka_bootstrap=settings.kafka_bootstrap, app_id=group,
                              partitions=settings.partitions)
    started_at = None
    baseline: int | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lags = await group_lag(probe, topics, group if one_group else None)
        committed = sum(p.committed or 0 for p in lags)
        total = sum(p.end for p in lags)
        if baseline is None:
            baseline = committed  # where the group stood before this run moved anything
        elif started_at is None and committed > baseline:
            started_at = time.perf_counter()
        if started_at is not None and committed >= total:
            return time.perf_counter() - started_at, total - baseline
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{group} did not drain {topics} in {timeout_s} s")


async def passthrough(settings: Settings, source: str, sink: str, count: int) -> tuple[float, int]:
    """The floor: consume, decode, produce, commit; nothing else."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=settings.kafka_bootstrap, group_id="bench-raw",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    seen, started = 0, None
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if not batch and seen:  # the backlog was all published before: its end (an earlier
                break               # round may have read past its count into this one's)
            if started is None and batch:
                started = time.perf_counter()
            futures = []
            for messages in batch.values():
                for message in messages:
                    doc = orjson.loads(message.value)
                    futures.append(await producer.send(sink, orjson.dumps(doc), key=message.key))
                seen += len(messages)
            for future in futures:
                await future
            if batch:
                await consumer.commit()
        return time.perf_counter() - (started or time.perf_counter()), seen
    finally:
        await consumer.stop()
        await producer.stop()


async def timestamps(settings: Settings, topic: str, field: str) -> dict[str, int]:
    """``field`` of each record of ``topic`` -> the earliest Kafka timestamp (ms) it has there."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[str, int] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=2000, max_records=10_000):
            for messages in batch.values():
                for message in messages:
                    try:
                        key = orjson.loads(message.value).get(field)
                    except (orjson.JSONDecodeError, AttributeError):  # the sequenced log's own marks
                        continue
                    if isinstance(key, str) and (key not in found or message.timestamp < found[key]):
                        found[key] = message.timestamp
    finally:
        await consumer.stop()
    return found


async def latency(settings: Settings, trades: list[bytes], rate: float, work: Path, tag: str) -> dict[str, Any]:
    """Event -> output latency at ``rate`` fills/s, published live (one producer per topic): from
    each fill's append to its input topic to its first output's append to the ledger topic. The
    fills are published again under new ids (``tag``). ``answered`` counts the fills that have an
    output: a fill on a welcome account has none (no cashback there), about one in seven."""
    again = retagged(trades, tag)
    worker = start_worker(settings, work / "worker-latency.log")
    try:
        await asyncio.sleep(5)  # joined its groups
        await wait_caught_up(settings, timeout_s=120)
        cpu_before, wall_before = cpu_seconds(worker.pid), time.perf_counter()
        await publish_per_topic(again, settings, rate=rate)
        await wait_caught_up(settings, timeout_s=600)
        busy = (cpu_seconds(worker.pid) - cpu_before) / (time.perf_counter() - wall_before)
        inside = worker_means(settings)
    finally:
        stop_process(worker)
    sent = {k: v for k, v in (await timestamps(settings, settings.topic_trades, "id")).items() if k.startswith(f"{tag}-")}
    sequenced = await timestamps(settings, settings.sequenced_topic, "id")
    answered = await timestamps(settings, settings.ledger_topic, "cause_id")
    delays = sorted(answered[k] - v for k, v in sent.items() if k in answered)
    assert delays, "no fill answered"
    end_to_end = quantiles(delays)
    return {"order_grace_ms": settings.order_grace_ms, "fills": len(again), "answered": len(delays),
            "rate_per_s": round(rate),
            "p50_ms": end_to_end["p50"], "p99_ms": end_to_end["p99"], "max_ms": delays[-1],
            "stages_ms": stages(sent, sequenced, answered), "worker_cpu_share": round(busy, 2),
            "worker_means_ms": inside}


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far: for the share of its time the worker
    was busy while the fills were published, the rest waiting (on Kafka: reads, transactions)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(values: list[int]) -> dict[str, int]:
    """The p50 and the p99 of ``values``."""
    ordered = sorted(values)
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99)]}


def stages(sent: dict[str, int], sequenced: dict[str, int], answered: dict[str, int]) -> dict[str, Any]:
    """Where each answered fill's latency went, from the Kafka timestamps of its three records:
    ``to_sequenced``, its input's append -> the sequencer's copy of it in the sequenced log (the
    order grace, the sequencer's read and turn); ``to_output``, that copy -> its first output in
    the ledger topic (the sequencer's commit, the ledger's read, turn and send). Each stage's p50
    and p99, and the mean of each over the slowest 1 % of fills end to end: what bounds the p99."""
    rows = sorted((answered[k] - v, sequenced[k] - v, answered[k] - sequenced[k])
                  for k, v in sent.items() if k in answered and k in sequenced)
    if not rows:
        return {}
    slowest = rows[int(len(rows) * 0.99):]
    return {"to_sequenced": quantiles([r[1] for r in rows]), "to_output": quantiles([r[2] for r in rows]),
            "slowest_1pct_means": {"total": round(sum(r[0] for r in slowest) / len(slowest)),
                                   "to_sequenced": round(sum(r[1] for r in slowest) / len(slowest)),
                                   "to_output": round(sum(r[2] for r in slowest) / len(slowest))}}


def worker_means(settings: Settings) -> dict[str, float]:
    """Means from the worker's own histograms (/metrics), in ms: where a fill's time goes inside
    it. ``pipeline``: sequenced record appended -> its outputs acknowledged; ``transaction_<p>``:
    one Kafka transaction of processor p, begin to commit."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=10).read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        for metric, label in (("rewards_pipeline_latency_seconds", "pipeline"), ("rewards_transaction_seconds", "transaction")):
            for part in ("_sum", "_count"):
                if name.startswith(metric + part):
                    processor = name.partition('processor="')[2].partition('"')[0]
                    key = f"{label}_{processor}" if processor else label
                    sums[key + part] = sums.get(key + part, 0.0) + float(value)
    return {key[:-4]: round(1000 * total / sums[key[:-4] + "_count"], 1)
            for key, total in sums.items() if key.endswith("_sum") and sums.get(key[:-4] + "_count")}


def retagged(trades: list[bytes], tag: str) -> list[bytes]:
    """The same fills under new ids: published again, they are new events."""
    return [line.replace(b'"id":"ev-', f'"id":"{tag}-'.encode()).replace(b'"fill_id":"f-', f'"fill_id":"{tag}-f-'.encode())
            for line in trades]


async def transactions(settings: Settings) -> int:
    """The worker's ``rewards_transactions_total``, summed over its processors."""
    def read() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=60) as answer:
            return sum(int(float(line.split()[-1])) for line in answer.read().decode().splitlines()
                       if line.startswith("rewards_transactions_total{"))
    return await asyncio.to_thread(read)


async def batch_sweep(settings: Settings, trades: list[bytes], work: Path, sizes: list[int]) -> list[dict[str, Any]]:
    """The batch size / transaction rate trade-off: the same backlog of fills (under new ids
    each time) drained with each REWARDS_BATCH_MAX. A turn commits one transaction per partition
    it changed, per processor, so a smaller batch means more transactions for the same fills."""
    rows = []
    for size in sizes:
        run = dataclasses.replace(settings, batch_max=size, web_port=free_port())
        again = retagged(trades, f"b{size}")
        await publish(again, run)  # a backlog, as in 1.
        worker = start_worker(run, work / f"worker-batch{size}.log")
        try:
            seconds, _ = await drain_time(run, "bench", list(run.input_topics) + [run.sequenced_topic])
            committed = await transactions(run)  # since it started: the drain's, and a few at start-up
        finally:  # a worker left running would weigh on every later contender
            stop_process(worker)
        rows.append({"batch_max": size, "fills_per_s": round(len(again) / seconds),
                     "transactions_per_s": round(committed / seconds),
                     "fills_per_transaction": round(len(again) / committed, 1) if committed else None})
        print(f"batch_max {size}: {rows[-1]}", file=sys.stderr)
    return rows


async def create_topic(settings: Settings, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, settings.partitions, settings.replication)])
    finally:
        await admin.close()


async def run(found: Services, fills: int, work: Path, latency_too: bool = True, naive_too: bool = True,
              sweep: list[int] | None = None, compression: str = Settings.compression,
              quix_too: bool = True) -> dict[str, Any]:
    settings = Settings.from_env({}, kafka_bootstrap=found.kafka_bootstrap, redis_url=found.redis_url,
                                 app_id="bench", web_port=free_port(), data_dir=str(work / "worker"),
                                 compression=compression)
    await ensure_topics(settings)
    lines = list(SampleDay(clients=max(200, fills // 60), fills=fills, seed=5, bad_share=0).lines())
    onboarding = [line for line in lines if b'"trade.' not in line and b'"settlement.' not in line]
    trades = [line for line in lines if b'"trade.fill"' in line]
    # 1. the worker: onboard the clients first (untimed), then drain the fills backlog
    await publish(onboarding, settings)
    worker = start_worker(settings, work / "worker.log")
    await drain_time(settings, "bench", list(settings.input_topics) + [settings.sequenced_topic])
    stop_process(worker)
    # 1a. and 2.: the worker's drain of the fills backlog and the raw passthrough over as many
    # fills, taking turns for ROUNDS rounds (the fills published again under new ids each round):
    # one drain lasts a few seconds, so one slow moment of the machine moves one round by a third
    await create_topic(settings, "bench.passthrough")
    worker_rounds: list[float] = []
    raw_rounds: list[float] = []
    for n in range(ROUNDS):
        await publish(trades if n == 0 else retagged(trades, f"r{n}"), settings)
        worker = start_worker(settings, work / "worker.log")
        try:
            worker_s, _ = await drain_time(settings, "bench", list(settings.input_topics) + [settings.sequenced_topic])
        finally:
            stop_process(worker)
        raw_s, raw_n = await passthrough(settings, settings.topic_trades, "bench.passthrough", len(trades))
        worker_rounds.append(len(trades) / worker_s)
        raw_rounds.append(raw_n / raw_s)
        print(f"round {n + 1}: worker {len(trades)} fills in {worker_s:.1f} s; raw {raw_n} in {raw_s:.1f} s",
              file=sys.stderr)
    worker_rate, raw_rate = statistics.median(worker_rounds), statistics.median(raw_rounds)
    # 1b. latency at half that rate, live: with the merge's grace, and without it (the merge
    # then waits for no quiet source): the difference is what the grace adds
    half = worker_rate / 2
    without: dict[str, Any] | None = None
    with_grace: dict[str, Any] | None = None
    if latency_too:
        without = await latency(dataclasses.replace(settings, order_grace_ms=0), trades[:30_000], half, work, "lat0")
        with_grace = await latency(settings, trades[30_000:60_000], half, work, "lat1")
        print(f"latency at half load: {with_grace}; without the grace: {without}", file=sys.stderr)
    # 1c. the batch size / transaction rate trade-off
    trade_off = await batch_sweep(settings, trades, work, sweep) if sweep else None
    # 3. naive Faust agent over the same fills
    naive_s, naive_n = 1.0, 0
    if naive_too:
        naive_s, naive_n = await naive_run(found, settings, work)
    print(f"naive: {naive_n} in {naive_s:.1f} s", file=sys.stderr)
    # 4. the same rules in a Quix Streams app, over the same inputs
    quix_s, quix_n = await quix_run(found, settings, work, onboarding, trades) if quix_too else (1.0, 0)
    if quix_too:
        print(f"quix: {quix_n} fills in {quix_s:.1f} s", file=sys.stderr)
    naive_rate = naive_n / naive_s
    quix_rate = quix_n / quix_s
    return {
        "benchmark": "worker_throughput",
        "fills": len(trades),
        "worker_fills_per_s": round(worker_rate),
        "raw_passthrough_per_s": round(raw_rate),
        "naive_faust_per_s": round(naive_rate),
        "worker_vs_naive": round(worker_rate / naive_rate, 2) if naive_rate else None,
        "worker_vs_raw": round(worker_rate / raw_rate, 2),
        "rounds": {"worker_fills_per_s": [round(r) for r in worker_rounds],
                   "raw_passthrough_per_s": [round(r) for r in raw_rounds]},
        "quix_fills_per_s": round(quix_rate) if quix_n else None,
        "worker_vs_quix": round(worker_rate / quix_rate, 2) if quix_n else None,
        "batch_trade_off": trade_off,
        "latency_at_half_load": with_grace,
        "latency_at_half_load_grace_0": without,
        "order_grace_ms": settings.order_grace_ms,
        "compression": settings.compression,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


async def naive_run(found: Services, settings: Settings, work: Path) -> tuple[float, int]:
    naive = start_process([sys.executable, "-m", "benchmarks.naive_faust", found.kafka_bootstrap, settings.topic_trades,
                   "bench-naive", str(free_port())], {"DATADIR": str(work / "naive"), "PARTITIONS": str(settings.partitions)},
                  work / "naive.log")
    naive_s, naive_n = await drain_time(settings, "bench-naive", [settings.topic_trades], one_group=True)
    stop_process(naive)
    return naive_s, naive_n


QUIX_VENV = Path(".cache/quix-venv")
QUIX_REQUIREMENTS = Path(__file__).parent / "requirements-quix.txt"


def quix_python() -> str:
    """The Quix contender's interpreter: a virtualenv of its own, made once from
    requirements-quix.txt (quixstreams pins versions of libraries the project locks too)."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".installed"
    wanted = QUIX_REQUIREMENTS.read_text()
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"making {QUIX_VENV} for the Quix Streams contender ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(QUIX_REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    return str(python)


async def quix_run(found: Services, settings: Settings, work: Path, onboarding: list[bytes],
                   trades: list[bytes]) -> tuple[float, int]:
    """The Quix app: seconds and fills, timed as the worker, from its group's first committed
    progress on the fills to zero lag."""
    group, source = "bench-quix", "bench.quix-in"
    shutil.rmtree(work / "quix-state", ignore_errors=True)  # a last run's state: of a broker that is gone
    for name in (source, "bench.quix-out"):
        await create_topic(settings, name)
    await publish_to(settings, source, onboarding)
    app = start_process([quix_python(), "-m", "benchmarks.quix_app", found.kafka_bootstrap, group, source,
                         "bench.quix-out", str(work / "quix-state")],
                        {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, work / "quix.log")
    try:
        await drain_time(settings, group, [source], one_group=True)
        await publish_to(settings, source, trades)
        timed = await drain_time(settings, group, [source], one_group=True)
    finally:
        stop_process(app)
    if not await same_outputs(settings, "bench.quix-out", onboarding, trades):
        raise AssertionError("the Quix app's outputs of the fills differ from the engine's (see quix.log)")
    return timed


async def same_outputs(settings: Settings, topic: str, before: list[bytes], timed: list[bytes]) -> bool:
    """Whether ``topic`` holds exactly the outputs of the offline engine for the ``timed`` inputs,
    applied after ``before``, as a multiset (partitions interleave). Only those are compared: in
    the onboarding, which client claims a shared identity first depends on how Quix interleaves
    its partitions (the worker settles it in its identity registry)."""
    from handlers.engine import Engine
    from schemas.codec import encode_output

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    ids = {orjson.loads(raw)["id"] for raw in timed}
    got: list[bytes] = []
    try:
        while batch := await consumer.getmany(timeout_ms=3000):
            got += [record.value for records in batch.values() for record in records
                    if record.value and orjson.loads(record.value).get("cause_id") in ids]
    finally:
        await consumer.stop()
    engine = Engine()
    for raw in before:
        engine.process(raw, {})
    wanted = [encode_output(output) for raw in timed for output in engine.process(raw, {})]
    return bool(wanted) and sorted(got) == sorted(wanted)


async def publish_to(settings: Settings, topic: str, lines: list[bytes]) -> None:
    """``lines`` in order onto one topic, keyed by client as the sources key them."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        for line in lines:
            await producer.send(topic, line, key=route(line, settings)[1])
        await producer.flush()
    finally:
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fills", type=int, default=100_000)
    parser.add_argument("--work", default=".cache/bench-worker")
    parser.add_argument("--throughput-only", action="store_true",
                        help="the worker and the raw passthrough only (no latency, no naive agent); results not saved")
    parser.add_argument("--batch-sweep", default="250,2000,8000",
                        help="REWARDS_BATCH_MAX values for the batch size / transaction rate trade-off ('' to skip)")
    parser.add_argument("--compression", default=Settings.compression,
                        help=f"REWARDS_COMPRESSION of the worker (default {Settings.compression})")
    parser.add_argument("--no-quix", action="store_true",
                        help="skip the Quix Streams contender (its virtualenv needs the network once)")
    args = parser.parse_args()
    sweep = [int(n) for n in args.batch_sweep.split(",") if n.strip()]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with services() as found:  # started outside the event loop: it waits for Kafka with its own
        result = asyncio.run(run(found, args.fills, work, not args.throughput_only, not args.throughput_only, sweep,
                                 args.compression, not args.no_quix and not args.throughput_only))
    if not args.throughput_only:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "worker_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
