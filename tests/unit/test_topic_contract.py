"""The topic contract as `rewards topics --print` gives it, and its settings' validation (the
topics as a broker creates them: tests/integration/test_topics.py)."""

from __future__ import annotations

import re

import pytest

from streams.ops.topics import definitions, topic_plan
from streams.settings import Settings, SettingsError


def commands(settings: Settings) -> dict[str, str]:
    """Each topic's kafka-topics.sh command, by topic."""
    found = {}
    for command in definitions(settings).replace("\\\n", " ").split("\n"):
        match = re.search(r"--topic (\S+)", command)
        if command.startswith("kafka-topics.sh") and match:
            found[match.group(1)] = command
    return found


def test_print_defines_every_topic_with_its_settings() -> None:
    settings = Settings.from_env({"REWARDS_REPLICATION": "3", "REWARDS_APP_ID": "rw"})
    printed = commands(settings)
    assert set(printed) == set(topic_plan(settings))
    single = (settings.topic_programs, settings.terms_acks_topic, settings.leader_topic)
    assert all("--partitions 8 --replication-factor 3" in command
               for topic, command in printed.items() if topic not in single)
    # the versions of the terms, and the sequencer tasks' word on them, are read in one order by all;
    # the Faust shell's leader topic (which `rewards reset` deletes) has one partition
    assert all("--partitions 1 --replication-factor 3" in printed[topic] for topic in single)
    for topic in ("rw.sequenced", "rewards.ledger", "rewards.deadletter", "rw.terms-acks"):
        assert "--config cleanup.policy=delete" in printed[topic] and "--config retention.ms=-1" in printed[topic]
        assert "--config min.insync.replicas=2" in printed[topic]  # replication 3: two in sync
    for topic in ("rw-state-changelog", "rw-identities-changelog", "rw-commissions-changelog"):
        assert "--config cleanup.policy=compact" in printed[topic]
        assert "--config max.compaction.lag.ms=3600000" in printed[topic]
    assert "--config" not in printed["broker.trades"]  # an input: its source system's


@pytest.mark.parametrize(("env", "named"), [
    ({"REWARDS_TOPIC_CHECK": "loose"}, "REWARDS_TOPIC_CHECK"),
    ({"REWARDS_MIN_INSYNC_REPLICAS": "2"}, "REWARDS_MIN_INSYNC_REPLICAS"),  # over the replication, 1
    ({"REWARDS_RETENTION_MS": "1000"}, "REWARDS_RETENTION_MS"),
    ({"REWARDS_CHANGELOG_SEGMENT_MS": "0"}, "REWARDS_CHANGELOG_SEGMENT_MS"),
])
def test_a_bad_topic_setting_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
