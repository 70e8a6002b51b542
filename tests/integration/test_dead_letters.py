"""Bad input on every input topic goes to the dead-letter topic, with its raw bytes, a reason
and where it came from; and the stream goes on."""

from __future__ import annotations

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
