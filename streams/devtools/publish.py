"""Publishing input events to the topics of their source systems (``rewards publish``, the
demo, the tests, and a broker team wiring a new source).

``publish`` sends a file in its order through one producer. ``publish_per_topic`` does what a
real bus does: one producer per source topic, publishing independently and concurrently, each
in its own order; ``skew_ms`` makes them disagree the way independent systems do, and ``rate``
paces the whole history (events per second, in file order) so that it arrives live rather than
as a backlog.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections.abc import Iterable


from streams import connect
from streams.bus import route
from streams.settings import Settings

async def publish(lines: Iterable[bytes], settings: Settings, linger_ms: int = 20) -> int:
    producer = connect.producer(settings, linger_ms=linger_ms, max_batch_size=1 << 20)
    await connect.start(producer)
    count = 0
    try:
        pending = []
        for raw in lines:
            topic, key = route(raw, settings)
            pending.append(await producer.send(topic, raw, key=key))
            count += 1
            if len(pending) >= 10_000:
                for future in pending:
                    await future
                pending.clear()
        for future in pending:
            await future
    finally:
        await producer.stop()
    return count


async def publish_per_topic(lines: Iterable[bytes], settings: Settings, skew_ms: int = 0,
                            rate: float | None = None, seed: int = 0,
                            transaction_size: int | None = None) -> dict[str, int]:
    """One producer per topic, concurrently; returns the count sent to each topic.

    Without ``rate`` each topic's producer starts after a random 0..``skew_ms`` and sends its
    events as fast as it can. With ``rate`` the i-th event of the file is due ``i / rate`` s
    after the start, and each topic sends each of its events a random 0..``skew_ms`` after that
    (never before its previous one): the topics lag one another by up to ``skew_ms``. Seeded:
    the same arguments give the same lags.

    With ``transaction_size`` (no ``rate``), each producer writes as a source system that writes
    transactionally does (Kafka Connect's exactly-once sources, say): that many events per
    transaction, and every third transaction aborted first and then written again, so that
    the topics hold transaction markers and aborted records."""
    if transaction_size is not None:
        assert rate is None, "transactions are published as fast as they go"
    by_topic: dict[str, list[tuple[int, bytes, bytes | None]]] = {}
    for index, raw in enumerate(lines):
        topic, key = route(raw, settings)
        by_topic.setdefault(topic, []).append((index, raw, key))
    started = time.monotonic()

    async def in_transactions(topic: str, items: list[tuple[int, bytes, bytes | None]]) -> None:
        assert transaction_size is not None
        producer = connect.producer(settings, transactional_id=f"publish-{topic}-{seed}",
                                    linger_ms=5, max_batch_size=1 << 20)
        await connect.start(producer)
        try:
            for n, start in enumerate(range(0, len(items), transaction_size)):
                chunk = items[start:start + transaction_size]
                for abort in ((True, False) if n % 3 == 2 else (False,)):
                    await producer.begin_transaction()
                    sent = [await producer.send(topic, raw, key=key) for _, raw, key in chunk]
                    await asyncio.gather(*sent)
                    await (producer.abort_transaction() if abort else producer.commit_transaction())
        finally:
            await producer.stop()

    async def one(topic: str, items: list[tuple[int, bytes, bytes | None]]) -> None:
        if transaction_size is not None:
            return await in_transactions(topic, items)
        rng = random.Random(seed ^ zlib.crc32(topic.encode()))
        producer = connect.producer(settings, linger_ms=5, max_batch_size=1 << 20)
        await connect.start(producer)
        try:
            pending = []
            due = started + rng.uniform(0, skew_ms) / 1000 if rate is None else started
            for index, raw, key in items:
                if rate is not None:
                    due = max(due, started + index / rate + rng.uniform(0, skew_ms) / 1000)
                wait = due - time.monotonic()
                if wait > 0.001:
                    await asyncio.sleep(wait)
                pending.append(await producer.send(topic, raw, key=key))
                if len(pending) >= 10_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    await asyncio.gather(*(one(topic, items) for topic, items in by_topic.items()))
    return {topic: len(items) for topic, items in by_topic.items()}
