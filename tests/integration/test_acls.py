"""Issue 26: the ACLs of docs/operations.md, exactly. A broker of the module's own with the standard authorizer
and nothing allowed without an ACL; the `kafka-acls.sh` block of docs/operations.md (between its
`acls:begin` and `acls:end` marks) is run as it stands, through the broker's own AclCommand;
then the worker and every command run as the block's principals, on the default app id and
topic names the block names. With one grant taken away, what needs it stops with one line naming
the operation, the resource and the principal, and exit 2."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from streams import connect
from streams.bus import in_ts_order
from streams.devtools.localservices import LocalKafka, free_port
from streams.ops.topics import topic_specs
from streams.settings import Settings
from tests.integration.conftest import WorkerProcess, real_services  # noqa: F401 (fixture)
from tests.integration.test_contract import SCENARIOS, comparable, offline
from tests.integration.test_security import command, outputs_when, secured_broker

pytestmark = pytest.mark.integration

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
USERS = {"sources": "sources-secret", "partial": "partial-secret"}


def acl_block() -> str:
    text = OPERATIONS.read_text()
    block = text[text.index("<!-- acls:begin -->"):text.index("<!-- acls:end -->")]
    return block.split("```sh\n", 1)[1].rsplit("```", 1)[0]


@pytest.fixture(scope="module")
def authorized() -> Iterator[LocalKafka]:
    yield from secured_broker(users=USERS, authorizer=True)


def grant(kafka: LocalKafka, block: str) -> None:
    """Run ``block`` as a cluster admin would, `kafka-acls.sh` being the broker's AclCommand."""
    with tempfile.TemporaryDirectory() as folder:
        tools = Path(folder)
        (tools / "kafka-acls.sh").write_text("#!/bin/sh\nexec " + " ".join(f"'{part}'" for part in kafka.acls())
                                             + ' "$@"\n')
        (tools / "kafka-acls.sh").chmod(0o755)
        (tools / "admin.properties").write_text("security.protocol=PLAINTEXT\n")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tools, capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "BROKERS": kafka.bootstrap},
                              timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def as_user(kafka: LocalKafka, user: str, redis_url: str, tmp_path: Path) -> Settings:
    """The default deployment (app id, topic names) as ``user`` over SASL_PLAINTEXT and SCRAM."""
    passwords = {"rewards": "rewards-secret", **USERS}
    return Settings.from_env({}, kafka_bootstrap=kafka.sasl_bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                             kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=user,
                             kafka_sasl_password=passwords[user], redis_url=redis_url, web_port=free_port(),
                             data_dir=str(tmp_path / f"{user}-data"), batch_within_ms=20, order_grace_ms=200,
                             partitions=2)


run = functools.partial(command, timeout=120)  # a command as the settings' principal


async def create_inputs(kafka: LocalKafka, settings: Settings) -> None:
    """The platform team's part: the input topics, created as the admin (docs/operations.md)."""
    admin = connect.admin(dataclasses.replace(settings, kafka_bootstrap=kafka.bootstrap,
                                              kafka_security_protocol="PLAINTEXT"))
    await connect.start(admin)
    try:
        await admin.create_topics([NewTopic(spec.name, spec.partitions, 1) for spec in topic_specs(settings)
                                   if spec.input])
    finally:
        await admin.close()


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-4000:]
    return lines[0]


async def test_the_worker_and_every_command_under_exactly_the_readmes_acls(
        authorized: LocalKafka, real_services: Any, tmp_path: Path) -> None:  # noqa: F811
    grant(authorized, acl_block())
    worker_settings = as_user(authorized, "rewards", real_services.redis_url, tmp_path)
    sources = as_user(authorized, "sources", real_services.redis_url, tmp_path)
    await create_inputs(authorized, worker_settings)
    topics = run(worker_settings, "topics")
    assert topics.returncode == 0, topics.stdout + topics.stderr
    day = SCENARIOS / "sample_day.jsonl"
    published = run(sources, "publish", str(day), "--per-topic", "--skew-ms", "200")
    assert published.returncode == 0, published.stderr
    expected = comparable(offline(in_ts_order(day.read_bytes().splitlines(), worker_settings)))
    worker = WorkerProcess(worker_settings, tmp_path / "worker.log")
    try:
        got = await outputs_when(worker_settings, len(expected), worker, tries=240)
        assert got == expected, worker.tail()
        rules = tmp_path / "terms.toml"
        rules.write_text("[cashback]\nrate = \"0.12\"\n")
        effective = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for settings, args in [(sources, ("close-day", "2026-11-24")),
                               (sources, ("terms", "publish", str(rules), "--version", "acl-test", "--effective",
                                          effective)),
                               (worker_settings, ("terms", "list")),
                               (worker_settings, ("lag",)),
                               (worker_settings, ("replay", "--from-kafka", "--output", str(tmp_path / "log.jsonl"),
                                                  "--quiet"))]:
            done = run(settings, *args)
            assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    finally:
        worker.stop()
    reset = run(worker_settings, "reset", "--execute")
    assert reset.returncode == 0, reset.stdout + reset.stderr


def partial_block(app_id: str) -> str:
    """The block of docs/operations.md for User:partial on app id ``app_id``."""
    block = acl_block()
    assert "WORKER=User:rewards " in block and "APP=rewards " in block
    return block.replace("WORKER=User:rewards ", "WORKER=User:partial ").replace("APP=rewards ", f"APP={app_id} ")


def revoke(kafka: LocalKafka, *args: str) -> None:
    grant(kafka, " ".join(["kafka-acls.sh --bootstrap-server $BROKERS --command-config admin.properties --remove "
                           "--force --allow-principal User:partial", *args]))


def test_a_worker_without_its_transactional_id_grant_stops_with_one_line(
        authorized: LocalKafka, real_services: Any, tmp_path: Path) -> None:  # noqa: F811
    grant(authorized, partial_block("partial-txn"))
    revoke(authorized, "--operation Write --operation Describe --resource-pattern-type prefixed "
                       "--transactional-id partial-txn-")
    settings = dataclasses.replace(as_user(authorized, "partial", real_services.redis_url, tmp_path),
                                   app_id="partial-txn")
    asyncio.run(create_inputs(authorized, settings))
    started = time.monotonic()
    worker = run(settings, "worker", timeout=180)
    assert worker.returncode == 2, worker.stderr[-4000:]
    lines = worker.stderr.strip().splitlines()
    line = lines[-1]
    assert len(lines) <= 6, worker.stderr[-4000:]  # created topics, a coordinator not yet there, the refusal
    assert "Traceback" not in worker.stderr, worker.stderr[-4000:]
    assert line.startswith("rewards: Kafka at") and "User:partial" in line and "Write" in line \
        and "transactional id partial-txn-" in line, line
    assert time.monotonic() - started < 120


def test_topics_without_describe_configs_says_it_cannot_read_them(
        authorized: LocalKafka, real_services: Any, tmp_path: Path) -> None:  # noqa: F811
    grant(authorized, partial_block("partial-cfg"))
    revoke(authorized, "--operation All --resource-pattern-type prefixed --topic partial-cfg")
    grant(authorized, "kafka-acls.sh --bootstrap-server $BROKERS --command-config admin.properties --add "
                      "--allow-principal User:partial --operation Read --operation Write --operation Describe "
                      "--operation Create --resource-pattern-type prefixed --topic partial-cfg")
    settings = dataclasses.replace(as_user(authorized, "partial", real_services.redis_url, tmp_path),
                                   app_id="partial-cfg")
    asyncio.run(create_inputs(authorized, settings))
    topics = run(settings, "topics")
    assert topics.returncode == 2, topics.stdout + topics.stderr
    line = one_line(topics)
    assert "cannot read the settings of" in line and "partial-cfg.sequenced" in line and "DescribeConfigs" in line \
        and "User:partial" in line, line
    assert "cleanup.policy" not in topics.stdout + topics.stderr
