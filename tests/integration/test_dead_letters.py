"""Bad input on every input topic goes to the dead-letter topic, with its raw bytes, a reason
and where it came from; and the stream goes on."""

from __future__ import annotations

import hashlib

from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.settings import Settings
from tests.integration.conftest import ensure, publish_in_order, wait_for_outputs

pytestmark = pytest.mark.integration
TS = "2026-11-24T10:00:00Z"


def ev(event_type: str, event_id: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": event_type, "id": event_id, "ts": TS, **fields})


async def test_bad_input_on_every_topic_is_dead_lettered(settings: Settings, start_worker: Any) -> None:
    await ensure(settings)
    start_worker()
    # a client to be a good citizen after the bad input
    await publish_in_order(settings, [
        ev("client.registered", "reg", client_id="c1", country="DE"),
        ev("account.opened", "acc", client_id="c1", account_id="a1", account_type="standard", currency="USD"),
    ])
    valid = {
        settings.topic_clients: ev("account.validated", "v1", client_id="c1", account_id="a1"),
        settings.topic_trades: ev("trade.fill", "f1", client_id="c1", account_id="a1", fill_id="f1",
                                  symbol="EURUSD", action="open", lots="1", spread_cost="10", commission="0"),
        settings.topic_payments: ev("deposit", "d1", client_id="c1", account_id="a1", deposit_id="d1",
                                    amount="100", source="external", bonus_percent=None),
        settings.topic_commands: ev("wallet.allocate", "w1", client_id="c1", account_id="a1", amount="0"),
        settings.topic_partners: ev("partner.plan", "p1", partner_id="P", rebate_per_lot={"standard": "1"},
                                    commission_per_lot={"standard": "2"}),
        settings.topic_settlement: ev("settlement.day_closed", "s1", date="2026-11-23"),
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    expected: dict[tuple[str, str], int] = {}
    try:
        for topic, good in valid.items():
            key = b"c1"
            conflicting = good.replace(b'"2026-11-24T10:00:00Z"', b'"2026-11-24T10:00:01Z"')
            for raw, reason in [(b"\x00\xffnot json", "malformed"),
                                (ev("trade.amend", f"x-{topic}", client_id="c1"), "unknown_type"),
                                (good, None),
                                (good, "duplicate"),
                                (conflicting, "conflicting_duplicate")]:
                await producer.send_and_wait(topic, raw, key=key)
                if reason:
                    expected[(topic, reason)] = expected.get((topic, reason), 0) + 1
    finally:
        await producer.stop()

    def complete(outputs: list[dict[str, Any]]) -> bool:
        rejected = [o for o in outputs if o["type"] == "event.rejected"]
        return len(rejected) >= sum(expected.values()) and any(o["type"] == "cashback.accrued" for o in outputs)

    outputs = await wait_for_outputs(settings, complete, 90)
    rejected = [o for o in outputs if o["type"] == "event.rejected"]
    got: dict[tuple[str, str], int] = {}
    for o in rejected:
        got[(o["source"]["topic"], o["reason"])] = got.get((o["source"]["topic"], o["reason"]), 0) + 1
        assert o["error"] and isinstance(o["source"]["offset"], int)
    assert got == expected
    malformed = next(o for o in rejected if o["reason"] == "malformed")
    assert malformed["raw_encoding"] == "base64"
    # and the stream went on: the fill after the bad input was credited
    assert any(o["type"] == "cashback.accrued" and o["cause_id"] == "f1" for o in outputs)


async def test_an_input_too_large_to_carry_is_dead_lettered_and_the_stream_goes_on(
        settings: Settings, start_worker: Any) -> None:
    """A 100 KiB input (over REWARDS_MAX_INPUT_BYTES) and a 2 MB one (over what the sequenced log
    accepts, on a trades topic that takes 4 MB): each rejected once, ``too_large``, with its
    first 4,096 bytes, and the fill published after them is applied."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    await ensure(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic_trades,
                                                  {"max.message.bytes": str(4 * 1024 * 1024)})])
    finally:
        await admin.close()
    start_worker()
    await publish_in_order(settings, [
        ev("client.registered", "reg", client_id="c1", country="DE"),
        ev("account.opened", "acc", client_id="c1", account_id="a1", account_type="standard", currency="USD"),
    ])
    padding = {"note": "x" * 100_000}
    big = ev("trade.fill", "big", client_id="c1", account_id="a1", fill_id="big", symbol="EURUSD", action="open",
             lots="1", spread_cost="10", commission="0", **padding)
    huge = b"\xff" + b"y" * (2 * 1024 * 1024)  # not even UTF-8
    after = ev("trade.fill", "after", client_id="c1", account_id="a1", fill_id="after", symbol="EURUSD",
               action="open", lots="1", spread_cost="10", commission="0")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        for raw in (big, huge, after):
            await producer.send_and_wait(settings.topic_trades, raw, key=b"c1")
    finally:
        await producer.stop()
    outputs = await wait_for_outputs(settings, lambda found: any(o.get("cause_id") == "after" for o in found)
                                     and sum(o.get("reason") == "too_large" for o in found) >= 2)
    rejected = [o for o in outputs if o.get("reason") == "too_large"]
    assert len(rejected) == 2
    by_size = {len(o["raw"]): o for o in rejected}
    text, encoded = by_size[4096], next(o for o in rejected if o["raw_encoding"] == "base64")
    assert text["raw"].encode() == big[:4096] and text["raw_encoding"] == "utf-8"
    assert f"{len(big):,} bytes" in text["error"] and f"{len(huge):,} bytes" in encoded["error"]
    for rejection, whole in ((text, big), (encoded, huge)):
        assert rejection["raw_size"] == len(whole)
        assert rejection["raw_blake2b"] == hashlib.blake2b(whole, digest_size=8).hexdigest()
    assert {o["source"]["topic"] for o in rejected} == {settings.topic_trades}
    assert any(o["type"] != "event.rejected" and o["cause_id"] == "after" for o in outputs)
