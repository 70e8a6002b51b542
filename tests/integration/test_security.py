"""The worker and the commands on a secured cluster: a real broker of its own with SASL_PLAINTEXT
and SASL_SSL listeners (PLAIN and SCRAM users, a certificate from a CA made for the test).
With the right settings the worker processes a day exactly as `rewards replay` does; with wrong
ones it stops at once with one line naming the variable to fix."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from streams import connect
from streams.bus import in_ts_order
from streams.devtools.localservices import SASL_USER, LocalKafka, ServiceError
from streams.devtools.publish import publish_per_topic
from streams.ops.topics import ensure_topics, partition_counts
from streams.settings import Settings
from streams.worker.kafkaio import read_to_end
from tests.integration.test_contract import SCENARIOS, comparable, offline

pytestmark = pytest.mark.integration


def secured_broker(**options: Any) -> Iterator[LocalKafka]:
    """A secured broker of the test module's own (``options``: more of LocalKafka's), started."""
    folder = Path(tempfile.mkdtemp(prefix="rewards-secured-"))
    try:
        kafka = LocalKafka(folder, secured=True, **options)
    except ServiceError as exc:  # only where the broker runs from jars (no Java: Docker, or a given cluster)
        pytest.skip(f"no local broker to secure: {exc}")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalKafka]:
    yield from secured_broker()


def secured_settings(settings: Settings, bootstrap: str, protocol: str, mechanism: str, **more: Any) -> Settings:
    user, password = SASL_USER
    changed = dataclasses.replace(settings, kafka_bootstrap=bootstrap, kafka_security_protocol=protocol,
                                  kafka_sasl_mechanism=mechanism, kafka_sasl_username=user,
                                  kafka_sasl_password=password, **more)
    changed.validate()
    return changed


def command(settings: Settings, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env={**os.environ, **settings.as_env()},
                          capture_output=True, text=True, timeout=timeout)


async def read_outputs(settings: Settings) -> list[dict[str, Any]]:
    counts = await partition_counts(settings, [settings.ledger_topic, settings.deadletter_topic])
    consumer = connect.consumer(settings, group_id=None, enable_auto_commit=False, isolation_level="read_committed")
    await connect.start(consumer)
    try:
        partitions = [TopicPartition(topic, p) for topic, n in counts.items() for p in range(n)]
        return [orjson.loads(m.value) async for _, records in read_to_end(consumer, partitions) for m in records]
    finally:
        await consumer.stop()


async def test_a_worker_with_the_clusters_credentials_works_over_sasl_ssl(
        secured: LocalKafka, settings: Settings, start_worker: Any) -> None:
    settings = secured_settings(settings, secured.sasl_ssl_bootstrap, "SASL_SSL", "SCRAM-SHA-512",
                                kafka_ssl_ca_file=str(secured.ca_file))
    await a_day_through(settings, start_worker)


async def outputs_when(settings: Settings, count: int, worker: Any, tries: int = 120) -> dict[str, Any]:
    """The outputs, by id, once ``count`` of them are there, or the worker stopped, or ``tries``
    half-seconds passed."""
    got: dict[str, Any] = {}
    for _ in range(tries):
        got = comparable(await read_outputs(settings))
        if len(got) >= count or worker.process.poll() is not None:
            break
        await asyncio.sleep(0.5)
    return got


async def a_day_through(settings: Settings, start_worker: Any) -> Any:
    """The sample day through a worker on ``settings``, published a producer per source topic
    with skew: its outputs equal the replay's. The worker, still running."""
    lines = (SCENARIOS / "sample_day.jsonl").read_bytes().splitlines()
    expected = comparable(offline(in_ts_order(lines, settings)))
    await ensure_topics(settings)
    worker = start_worker(settings=settings)
    await publish_per_topic(lines, settings, skew_ms=200, seed=8)  # one producer per source topic, skewed
    got = await outputs_when(settings, len(expected), worker)
    assert len(got) == len(expected), f"the worker wrote {len(got)} of {len(expected)} outputs:\n{worker.tail()}"
    assert got == expected
    return worker


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_the_commands_connect_over_sasl_plaintext(secured: LocalKafka, settings: Settings, mechanism: str) -> None:
    topics = command(secured_settings(settings, secured.sasl_bootstrap, "SASL_PLAINTEXT", mechanism), "topics")
    assert topics.returncode == 0, topics.stderr
    assert settings.ledger_topic in topics.stdout


def test_a_worker_with_a_wrong_password_stops_with_one_clear_line(
        secured: LocalKafka, settings: Settings, tmp_path: Path) -> None:
    wrong = dataclasses.replace(secured_settings(settings, secured.sasl_bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                kafka_sasl_password="not-the-password")
    worker = command(wrong, "worker", timeout=120)
    assert worker.returncode == 2
    assert "Traceback" not in worker.stderr and "Unclosed" not in worker.stderr, worker.stderr
    assert worker.stderr.strip().splitlines() == [
        f"rewards: Kafka at {secured.sasl_bootstrap} (KAFKA_BOOTSTRAP_SERVERS) refused the credentials: check "
        "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (KAFKA_SASL_MECHANISM=SCRAM-SHA-256)"]


def test_tls_without_the_clusters_authority_names_the_ca_setting(secured: LocalKafka, settings: Settings) -> None:
    topics = command(secured_settings(settings, secured.sasl_ssl_bootstrap, "SASL_SSL", "PLAIN"), "topics")
    assert topics.returncode == 2
    assert topics.stderr.strip().splitlines() == [
        f"rewards: could not verify the TLS certificate of Kafka at {secured.sasl_ssl_bootstrap} "
        "(KAFKA_BOOTSTRAP_SERVERS): set KAFKA_SSL_CA_FILE to the authority that signed the brokers' certificates"]


def test_the_commands_connect_with_a_client_certificate(secured: LocalKafka, settings: Settings) -> None:
    """Mutual TLS: the SSL listener requires a certificate signed by the cluster's CA."""
    mutual = dataclasses.replace(settings, kafka_bootstrap=secured.ssl_bootstrap, kafka_security_protocol="SSL",
                                 kafka_ssl_ca_file=str(secured.ca_file), kafka_ssl_cert_file=str(secured.client_cert),
                                 kafka_ssl_key_file=str(secured.client_key))
    mutual.validate()
    topics = command(mutual, "topics")
    assert topics.returncode == 0, topics.stderr
    without = dataclasses.replace(mutual, kafka_ssl_cert_file="", kafka_ssl_key_file="")
    refused = command(without, "topics")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    # TLS 1.3: the broker drops the connection after the handshake; the line names what to check
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"rewards: cannot connect to Kafka at {secured.ssl_bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
    assert "does not require a client certificate (KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE)" in line


async def test_a_worker_with_plain_at_debug_logs_no_secret_and_the_clear_text_warning_once(
        secured: LocalKafka, settings: Settings, start_worker: Any) -> None:
    """PLAIN over SASL_PLAINTEXT, REWARDS_LOG_LEVEL=DEBUG: every Kafka client of the worker logs in
    (its SASL bytes hold the password) and aiokafka warns of the clear text at each connection."""
    settings = secured_settings(settings, secured.sasl_bootstrap, "SASL_PLAINTEXT", "PLAIN", log_level="DEBUG")
    worker = await a_day_through(settings, start_worker)
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    _, password = SASL_USER
    assert password not in log
    assert log.count("in the clear") == 1
    assert " DEBUG " in log  # it did log at DEBUG
