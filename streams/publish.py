"""Publishing input events to the topics of their source systems (the demo, the tests, and a
broker team wiring a new source)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import orjson
from aiokafka import AIOKafkaProducer

from streams.settings import Settings

SOURCE_OF: Final = {
    "client.registered": "topic_clients", "client.verified": "topic_clients",
    "account.opened": "topic_clients", "account.validated": "topic_clients",
    "partner.linked": "topic_clients",
    "trade.fill": "topic_trades", "trade.bust": "topic_trades",
    "deposit": "topic_payments",
    "wallet.allocate": "topic_commands", "welcome.claim": "topic_commands",
    "welcome.transfer": "topic_commands",
    "partner.plan": "topic_partners",
    "settlement.day_closed": "topic_settlement",
}


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


async def publish(lines: Iterable[bytes], settings: Settings, linger_ms: int = 20) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=linger_ms, max_batch_size=1 << 20)
    await producer.start()
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
