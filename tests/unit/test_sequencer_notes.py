"""What a sequencer task keeps in its commits' metadata (streams.bus): its place in each
broadcast partition, and its own notes, the newest ts it copied and the versions of the terms
waiting for their verdict, which a restarted task holds inputs back for."""

from __future__ import annotations

from collections import namedtuple

import orjson
from aiokafka import TopicPartition

from streams.bus import task_notes, task_places
from streams.settings import Settings

Found = namedtuple("Found", "offset metadata")


def test_places_and_notes_come_apart_from_one_metadata() -> None:
    settings = Settings()
    metadata = orjson.dumps({"partners.plans:0": 7, "programs.terms:0": 2, "~clock": 1_700_000_000_000_000,
                             "~terms": {"t-1": 1_800_000_000_000_000}}).decode()
    committed = {TopicPartition(topic, 3): Found(10, metadata) for topic in settings.client_topics}
    committed[TopicPartition(settings.topic_trades, 1)] = Found(4, "not json")  # skipped, not fatal
    committed[TopicPartition(settings.topic_clients, 2)] = Found(5, "")          # an older commit: no notes
    assert task_places(settings, committed) == {3: {TopicPartition("partners.plans", 0): 7,
                                                    TopicPartition("programs.terms", 0): 2}}
    assert task_notes(settings, committed) == {3: {"~clock": 1_700_000_000_000_000,
                                                   "~terms": {"t-1": 1_800_000_000_000_000}}}
