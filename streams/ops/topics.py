"""Kafka housekeeping: the topic contract (creating the topics, checking existing ones, printing their
definitions), the co-partitioning check, publishing a day close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from streams import connect
from streams.settings import Settings

log = logging.getLogger("rewards.admin")


TABLES = ("state", "identities", "commissions")  # the processors' changelogs (streams.worker.processor)
DAY_MS: Final = 86_400_000
TRANSIT_RETENTION_MS: Final = 7 * DAY_MS  # the topics between processors: each reads its own in seconds


def changelog_topics(settings: Settings) -> list[str]:
    return [f"{settings.group}-{table}-changelog" for table in TABLES]


@dataclass(frozen=True)
class TopicSpec:
    """A topic the worker uses: its partitions and settings when the worker creates it, and which
    of them an existing one must have (``checked``; the partition count too, but for inputs)."""

    name: str
    role: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    checked: tuple[str, ...] = ()
    input: bool = False


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topic contract (docs/operations.md, "Topics")."""
    n = settings.partitions
    isr = {"min.insync.replicas": str(settings.min_isr)}
    history = {"cleanup.policy": "delete", "retention.ms": str(settings.retention_ms), **isr}
    transit = {"cleanup.policy": "delete", "retention.ms": str(TRANSIT_RETENTION_MS), **isr}
    lag = str(settings.changelog_segment_ms)
    # a tombstone outlives the record it deletes by 24 segments (a day by default): far longer than a recovery
    state = {"cleanup.policy": "compact", "segment.ms": lag, "max.compaction.lag.ms": lag,
             "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": str(24 * settings.changelog_segment_ms), **isr}
    kept = ("cleanup.policy", "retention.ms")
    return ([TopicSpec(topic, "input (its source system's; created here only where missing)",
                       1 if topic == settings.topic_programs else n, input=True)
             for topic in settings.input_topics]
            + [TopicSpec(settings.sequenced_topic, "the recorded order, replayed by `rewards replay --from-kafka`",
                         n, history, kept),
               TopicSpec(settings.ledger_topic, "output: the ledger events", n, history, kept),
               TopicSpec(settings.deadletter_topic, "output: the rejected inputs", n, history, kept),
               TopicSpec(settings.identity_topic, "between processors: identity requests", n, transit,
                         ("cleanup.policy",)),
               TopicSpec(settings.commission_topic, "between processors: commission reports", n, transit,
                         ("cleanup.policy",)),
               TopicSpec(settings.terms_acks_topic, "between the sequencer's tasks: each one's word on each version "
                         "of the terms it records (read from the start by every task)", 1, history, kept)]
            + [TopicSpec(name, "a processor's state (compacted changelog)", n, state, ("cleanup.policy",))
               for name in changelog_topics(settings)]
            + [TopicSpec(settings.leader_topic, "the Faust shell's leader topic (the worker's results do not depend "
                         "on it)", 1, isr)])


def topic_plan(settings: Settings) -> dict[str, int]:
    """Every topic the worker reads or writes, with its partition count."""
    return {spec.name: spec.partitions for spec in topic_specs(settings)}


class TopicsRefused(Exception):
    """Kafka refused to create some of the topics; ``refused``: topic -> Kafka's reason."""

    def __init__(self, refused: dict[str, str], created: list[str]) -> None:
        super().__init__("; ".join(self.lines(refused)))
        self.refused, self.created = refused, created

    @staticmethod
    def lines(refused: dict[str, str]) -> list[str]:
        """One sentence per reason, naming the topics it refused for it."""
        by_reason: dict[str, list[str]] = {}
        for name, why in refused.items():
            by_reason.setdefault(why, []).append(name)
        return [f"Kafka refused to create {'topic' if len(names) == 1 else f'{len(names)} topics'} "
                f"{', '.join(names)}: {why}" for why, names in by_reason.items()]


class TopicsUnreadable(Exception):
    """The brokers did not give the topics' settings (for another reason than an ACL)."""


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet, with the contract's settings; returns the ones
    Kafka created. Raises TopicsRefused, after creating the others, when it refused any (a
    replication factor over the brokers' count, a setting it does not take, no ACL to create);
    one that another worker created meanwhile is no refusal."""
    admin = connect.admin(settings)
    await connect.start(admin)
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(spec.name, spec.partitions, settings.replication, topic_configs=spec.configs)
                  for spec in topic_specs(settings) if spec.name not in existing]
        response = await admin.create_topics(wanted) if wanted else None
        created, refused = [], {}
        for name, code, message, *_ in response.topic_errors if response is not None else ():
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:
                refused[name] = message or for_code(code).__name__
        await _until_visible(admin, created)
    finally:
        await admin.close()
    if refused:
        raise TopicsRefused(refused, created)
    return created


async def _until_visible(admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float = 30.0) -> None:
    """The controller answers a creation before every broker's metadata has the topic: wait
    until it has its partitions, so that what follows (the partition checks) sees it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while topics and asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(topics)
        if all(topic.get("error_code", 0) == 0 and topic["partitions"] for topic in described):
            return
        await asyncio.sleep(0.1)


async def check_topics(settings: Settings) -> list[str]:
    """How the existing topics differ from the contract, a sentence each that names the topic,
    the difference and what to do ([]: none). The input topics' partitions are checked by
    check_copartitioned."""
    specs = {spec.name: spec for spec in topic_specs(settings) if not spec.input}
    admin = connect.admin(settings)
    await connect.start(admin)
    try:
        existing = set(await admin.list_topics()) & set(specs)
        described = await admin.describe_topics(sorted(existing)) if existing else []
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)
                                                  for name in sorted(existing)]) if existing else []
    finally:
        await admin.close()
    problems = []
    unreadable: dict[str, str] = {}  # topic -> why its settings could not be read
    for response in responses:
        for error, _message, _kind, name, *_ in response.resources:
            if error:
                unreadable[name] = for_code(error).__name__
    if unreadable:
        names = ", ".join(sorted(unreadable))
        doing = (f"cannot read the settings of topic{'s' if len(unreadable) > 1 else ''} {names}, to check them against "
                 "the worker's contract: ")
        if any("Authorization" in why for why in unreadable.values()):
            raise connect.NotAllowed(settings, "DescribeConfigs", f"topic{'s' if len(unreadable) > 1 else ''} {names}",
                                     doing)
        raise TopicsUnreadable(f"{doing}{', '.join(sorted(set(unreadable.values())))}")
    for topic in described:
        spec = specs[topic["topic"]]
        if len(topic["partitions"]) != spec.partitions:
            problems.append(f"topic {spec.name} has {len(topic['partitions'])} partitions, the worker needs "
                            f"REWARDS_PARTITIONS={spec.partitions} ({spec.role}); use a fresh REWARDS_APP_ID or "
                            "set REWARDS_PARTITIONS to match")
    for response in responses:
        for _error, _message, _kind, name, entries, *_ in response.resources:
            spec = specs[name]
            actual = {entry[0]: entry[1] for entry in entries}
            for key in spec.checked:
                if actual.get(key) != spec.configs[key]:
                    problems.append(f"topic {name} has {key}={actual.get(key)}, the worker needs "
                                    f"{key}={spec.configs[key]} ({spec.role}){_advice(name, key, spec)}")
    return problems


def _advice(name: str, key: str, spec: TopicSpec) -> str:
    fix = (f": alter it (kafka-configs.sh --bootstrap-server ... --alter --entity-type topics --entity-name {name} "
           f"--add-config {key}={spec.configs[key]})")
    if key == "retention.ms":
        return fix + ", or set REWARDS_RETENTION_MS to its value; a finite retention loses history past it"
    return fix


def definitions(settings: Settings) -> str:
    """The topics as kafka-topics.sh commands, for a cluster whose topics a platform team creates."""
    lines = ["# The rewards worker's topics (docs/operations.md, \"Topics\"): create them before its first start.",
             "# Input topics belong to their source systems; the client topics must have "
             f"{settings.partitions} partitions each, keyed by client_id."]
    for spec in topic_specs(settings):
        configs = "".join(f" \\\n    --config {key}={value}" for key, value in spec.configs.items())
        lines.append(f"\n# {spec.role}\nkafka-topics.sh --bootstrap-server \"$KAFKA_BOOTSTRAP_SERVERS\" --create "
                     f"--if-not-exists --topic {spec.name} \\\n    --partitions {spec.partitions} "
                     f"--replication-factor {settings.replication}{configs}")
    return "\n".join(lines) + "\n"


async def partition_counts(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """How many partitions each of ``topics`` has (0: it does not exist)."""
    admin = connect.admin(settings)
    await connect.start(admin)
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def check_copartitioned(settings: Settings) -> str | None:
    """The sequencer merges partition i of every client topic into sequenced partition i: the
    client topics must have REWARDS_PARTITIONS partitions each (co-partitioned, keyed by client_id
    with Kafka's default partitioner). A description of what is wrong, or None."""
    counts = await partition_counts(settings, settings.client_topics + (settings.topic_programs,))
    if counts.pop(settings.topic_programs, 0) > 1:
        return (f"the terms topic {settings.topic_programs} (REWARDS_TOPIC_PROGRAMS) has more than one partition: "
                "every partition of the worker must read the versions of the program terms in one order. "
                "Recreate it with one partition, or name a one-partition topic.")
    wrong = {topic: n for topic, n in counts.items() if n != settings.partitions}
    if not wrong:
        return None
    listed = ", ".join(f"{topic} has {n}" for topic, n in sorted(wrong.items()))
    return (f"the client topics must each have REWARDS_PARTITIONS={settings.partitions} partitions "
            f"(co-partitioned by client_id, so that one task sees all of a client's inputs): {listed}. "
            "Set REWARDS_PARTITIONS to their count on a fresh app id, or repartition the topics.")


def day_close_event(day: date, event_id: str | None = None) -> dict[str, str]:
    """The close of ``day``: stamped at the first instant of the next day, with an id derived
    from the date, so publishing the same close twice is a redelivery, not a second close."""
    return {"type": "settlement.day_closed", "id": event_id or f"settlement.day_closed:{day.isoformat()}",
            "ts": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z", "date": day.isoformat()}


async def publish_day_close(settings: Settings, day: date, event_id: str | None = None) -> dict[str, str]:
    event = day_close_event(day, event_id)
    producer = connect.producer(settings)
    await connect.start(producer)
    try:
        await producer.send_and_wait(settings.topic_settlement, orjson.dumps(event), key=day.isoformat().encode())
    finally:
        await producer.stop()
    return event
