"""Real Kafka and Redis for the integration tiers (see streams.devtools.localservices for which), and a
worker run as its own process, as a broker would run it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.ops.lag import wait_caught_up as wait_caught_up  # the tests import it from here
from streams.devtools.localservices import Services, free_port, services
from streams.bus import route
from streams.worker.kafkaio import read_to_end
from streams.settings import Settings
from tests.support import default_signals

_ids = itertools.count()


@pytest.fixture(scope="session")
def real_services() -> Iterator[Services]:
    with services() as found:
        yield found


@pytest.fixture
def settings(real_services: Services, tmp_path: Path) -> Settings:
    """Settings of a fresh deployment: its own topics, group, tables and Redis keys."""
    n = next(_ids)
    run = f"t{os.getpid()}x{n}"
    return Settings.from_env({}, kafka_bootstrap=real_services.kafka_bootstrap,
                             redis_url=real_services.redis_url, app_id=f"rw-{run}",
                             topic_clients=f"{run}.clients", topic_trades=f"{run}.trades",
                             topic_payments=f"{run}.payments", topic_commands=f"{run}.commands",
                             topic_partners=f"{run}.partners", topic_settlement=f"{run}.settlement",
                             topic_programs=f"{run}.programs",
                             topic_ledger=f"{run}.ledger", topic_deadletter=f"{run}.deadletter",
                             partitions=4, batch_within_ms=20, order_grace_ms=100, web_port=free_port(),
                             data_dir=str(tmp_path / "faust"))


def settings_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.as_env()}


class WorkerProcess:
    def __init__(self, settings: Settings, log: Path, web_port: int | None = None) -> None:
        self.settings, self.log_path = settings, log
        env = settings_env(settings)
        if web_port is not None:
            env["REWARDS_WEB_PORT"] = str(web_port)
        env["REWARDS_DATA_DIR"] = str(log.with_suffix(".data"))
        self.port = int(env["REWARDS_WEB_PORT"])
        self.log = open(log, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=default_signals)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(web_port: int | None = None, name: str | None = None, settings: Settings = settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name or f'worker{len(started)}'}.log", web_port)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# -- talking to Kafka -------------------------------------------------------------------------
class SequencedCounter:
    """Counts the inputs the sequencer has copied (identity verdicts and Progress marks land on
    the same topic and are not counted)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = 0
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, isolation_level="read_committed",
                                          group_id=None, auto_offset_reset="earliest")

    async def __aenter__(self) -> SequencedCounter:
        await self.consumer.start()
        topic = self.settings.sequenced_topic
        self.consumer.assign([TopicPartition(topic, p) for p in range(self.settings.partitions)])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def wait_for(self, expected: int, timeout_s: float) -> None:
        from streams.worker import wire

        deadline = time.monotonic() + timeout_s
        while self.count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sequencer copied {self.count} of {expected} inputs in {timeout_s} s")
            batch = await self.consumer.getmany(timeout_ms=50)
            for messages in batch.values():
                self.count += sum(1 for m in messages if dict(m.headers or ()).get(wire.H_KIND)
                                  in (wire.KIND_INPUT, wire.KIND_BROADCAST))


class OutputWatcher:
    """Follows the output topics, to wait for the answer to one input."""

    def __init__(self, settings: Settings) -> None:
        self.causes: set[str] = set()
        self.consumer = AIOKafkaConsumer(settings.ledger_topic, settings.deadletter_topic,
                                          bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                          group_id=None, auto_offset_reset="earliest", isolation_level="read_committed")

    async def __aenter__(self) -> OutputWatcher:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def wait_for_cause(self, cause_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while cause_id not in self.causes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no output answered {cause_id} in {timeout_s} s")
            batch = await self.consumer.getmany(timeout_ms=50)
            for messages in batch.values():
                self.causes.update(orjson.loads(m.value).get("cause_id") for m in messages)


async def publish_in_order(settings: Settings, lines: list[bytes], timeout_s: float = 120) -> None:
    """Publish so that the worker sees the file's order. Within one topic Kafka keeps the order;
    at each change of topic, wait until the sequencer has copied what came before. A welcome
    claim is a barrier too: one-per-person is decided by whichever claim reaches the identity
    registry first, across partitions, so the next event waits for the claim's answer."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    broadcast = set(settings.broadcast_topics)
    try:
        async with SequencedCounter(settings) as counter, OutputWatcher(settings) as answers:
            await counter.wait_for(0, timeout_s)
            expected = counter.count
            previous = None
            for raw in lines:
                topic, key = route(raw, settings)
                if previous is not None and topic != previous:
                    await counter.wait_for(expected, timeout_s)
                await producer.send_and_wait(topic, raw, key=key)
                expected += settings.partitions if topic in broadcast else 1
                previous = topic
                if b'"welcome.claim"' in raw:
                    await answers.wait_for_cause(orjson.loads(raw)["id"], timeout_s)
            await counter.wait_for(expected, timeout_s)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, *topics: str) -> list[dict[str, Any]]:
    """Everything committed on the topics, from the start to each partition's end at the time of
    the call (how the worker's own readers read: streams.worker.kafkaio.read_to_end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        partitions = [TopicPartition(topic["topic"], p["partition"]) for topic in described
                      if topic.get("error_code", 0) == 0 for p in topic["partitions"]]
        async for _, messages in read_to_end(consumer, partitions):
            out += [orjson.loads(m.value) for m in messages]
    finally:
        await consumer.stop()
    return out


async def wait_for_outputs(settings: Settings, predicate: Any, timeout_s: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        outputs = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
        if predicate(outputs):
            return outputs
        if time.monotonic() > deadline:
            raise TimeoutError(f"outputs never matched; have {len(outputs)}")
        await asyncio.sleep(0.5)


async def ensure(settings: Settings) -> None:
    from streams.ops.topics import ensure_topics

    await ensure_topics(settings)
