"""The Redis read model never moves back in time: a write with an older version is ignored."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import orjson
import pytest

from handlers.rules import Rules
from handlers.clientstate import ClientState
from streams.devtools.localservices import Services
from streams.ops.readmodel import ReadModel

pytestmark = pytest.mark.integration


async def test_an_older_version_never_replaces_a_newer_view(real_services: Services) -> None:
    # Keys of this run only: a Redis kept from an earlier run (REDIS_URL) already has a newer view.
    model = ReadModel(real_services.redis_url, f"guard-test-{os.getpid()}-{time.time_ns()}:",
                      Rules.from_toml('[cashback]\nrate = "0.12"'))
    newer, older = ClientState(client_id="c1", country="DE"), ClientState(client_id="c1", country="DE")
    newer.wallet.balance, newer.wallet.accrued = Decimal("7.5"), Decimal("7.5")
    older.wallet.balance, older.wallet.accrued = Decimal("1"), Decimal("1")
    await model.publish([(newer, 20)])
    await model.publish([(older, 10)])          # a replayed or rebalanced partition, behind
    wallet = orjson.loads(await model.view("c1", "wallet") or b"{}")
    assert wallet["balance"] == "7.5"
    assert wallet["reward_rate"] == "0.12"  # the rate of the rules in force, not the default
    await model.publish([(older, 21)])          # a genuinely newer state does replace it
    assert orjson.loads(await model.view("c1", "wallet") or b"{}")["balance"] == "1"
    assert await model.view("nobody", "wallet") is None
