"""The cluster fault tier: a three-node KRaft cluster of the tier's own (started from the same
jars as every other test's broker: streams.devtools.localservices.LocalKafkaCluster), set as
production runs Kafka, and workers run as their own processes on it, with REWARDS_REPLICATION=3
and the default ordering grace."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from streams.devtools.localservices import LocalKafkaCluster
from streams.settings import Settings
from tests.integration.conftest import real_services, settings, start_worker  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalKafkaCluster]:
    with tempfile.TemporaryDirectory(prefix="rewards-cluster-") as folder:
        nodes = LocalKafkaCluster(Path(folder))
        nodes.start()
        try:
            yield nodes
        finally:
            nodes.stop()


@pytest.fixture
def on_cluster(settings: Settings, cluster: LocalKafkaCluster) -> Settings:  # noqa: F811
    """The test's deployment on the cluster: its topics at replication 3, min ISR 2, and the
    ordering grace a deployment gets by default."""
    return replace(settings, kafka_bootstrap=cluster.bootstrap, replication=3, min_insync_replicas=2,
                   order_grace_ms=Settings.from_env({}).order_grace_ms, batch_within_ms=50)


def report_path() -> Path:
    """Where each scenario's figures go, one JSON line each (`make test-cluster` prints them)."""
    return Path(os.environ.get("REWARDS_CLUSTER_REPORT", ".cache/cluster-faults.jsonl"))
