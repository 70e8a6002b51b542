"""The bus as the worker sees it: which topic each input type comes from (one per source
system), the order the sequencer records inputs in when no source lags beyond the grace, and
where each sequencer task is in the broadcast topics (its commits' metadata)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson
from aiokafka import TopicPartition

from schemas.timefmt import parse_ts_us
from streams.settings import Settings

# Among inputs of equal ``ts``, the order the sequencer gives them (and ``in_ts_order``): the
# versions of the program terms, who a client is and what accounts it has, then plans, money in, client-area commands, trades, and
# the day's close last.
TOPIC_PRECEDENCE: Final = ("topic_programs", "topic_clients", "topic_partners", "topic_payments", "topic_commands",
                           "topic_trades", "topic_settlement")


def precedence(settings: Settings) -> dict[str, int]:
    """Topic name -> rank among inputs of equal ``ts``."""
    return {getattr(settings, role): rank for rank, role in enumerate(TOPIC_PRECEDENCE)}


SOURCE_OF: Final = {
    "client.registered": "topic_clients", "client.verified": "topic_clients",
    "account.opened": "topic_clients", "account.validated": "topic_clients",
    "partner.linked": "topic_clients",
    "trade.fill": "topic_trades", "trade.bust": "topic_trades",
    "deposit": "topic_payments",
    "wallet.allocate": "topic_commands", "welcome.claim": "topic_commands",
    "welcome.transfer": "topic_commands",
    "partner.plan": "topic_partners", "partner.parent": "topic_partners",
    "settlement.day_closed": "topic_settlement",
    "program.terms": "topic_programs",
}


def in_ts_order(lines: list[bytes], settings: Settings) -> list[bytes]:
    return [lines[index] for index in ts_order(lines, settings)]


def ts_order(lines: list[bytes], settings: Settings) -> list[int]:
    """The indices of ``lines`` in the order the sequencer records when no source lags beyond
    the grace: by ``ts``, then topic precedence, then each topic's own order. An input whose
    ``ts`` cannot be read keeps its place in its topic (it takes the ``ts`` of the one before it
    there)."""
    ranks = precedence(settings)
    last: dict[str, int] = {}
    keyed = []
    for index, raw in enumerate(lines):
        topic = route(raw, settings)[0]
        try:
            last[topic] = parse_ts_us(orjson.loads(raw)["ts"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
        keyed.append((last.get(topic, 0), ranks[topic], index))
    keyed.sort()
    return [index for *_, index in keyed]


def route(raw: bytes, settings: Settings) -> tuple[str, bytes | None]:
    """(topic, key) for one raw input. Bytes that do not parse go to the trades topic keyed by
    nothing: they will be rejected there, as a broken producer's output would be."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return settings.topic_trades, None
    if not isinstance(doc, dict):
        return settings.topic_trades, None
    topic = getattr(settings, SOURCE_OF.get(str(doc.get("type")), "topic_trades"))
    client_id = doc.get("client_id")
    return topic, client_id.encode() if isinstance(client_id, str) else None


def _task_metadata(settings: Settings, committed: dict[TopicPartition, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(task, the metadata of its commit) for each client partition a sequencer task committed."""
    for tp, found in committed.items():
        if tp.topic in settings.client_topics and found.metadata:
            try:
                yield tp.partition, orjson.loads(found.metadata)
            except orjson.JSONDecodeError:
                continue


def task_notes(settings: Settings, committed: dict[TopicPartition, Any]) -> dict[int, dict[str, Any]]:
    """What each sequencer task noted in its commits' metadata beside its places (keys from "~"):
    the newest ts it copied and the versions of the terms waiting for their verdict."""
    return {task: {name: value for name, value in noted.items() if name.startswith("~")}
            for task, noted in _task_metadata(settings, committed)}


def task_places(settings: Settings, committed: dict[TopicPartition, Any]) -> dict[int, dict[TopicPartition, int]]:
    """Each sequencer task's place in the broadcast topics: every task reads every broadcast
    partition and keeps its place there as the metadata of its commits on its client partitions
    (streams.worker.sequencer)."""
    by_task: dict[int, dict[TopicPartition, int]] = {}
    for index, places in _task_metadata(settings, committed):
        task = by_task.setdefault(index, {})
        for name, offset in places.items():
            if name.startswith("~"):  # the task's own notes (task_notes), not a place
                continue
            topic, partition = name.rsplit(":", 1)
            place = TopicPartition(topic, int(partition))
            task[place] = max(task.get(place, 0), int(offset))
    return by_task
