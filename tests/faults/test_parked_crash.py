"""Parked inputs across crashes. The CRM's registrations and account openings are held back while
every other event is published, so nearly every input waits in its client's parked queue
(handlers.parking); the worker is SIGKILLed while it parks them, and again once they all wait.
The queues are state: the next worker has every one of them (its ``rewards_parked_inputs``
gauge says as many wait, and the outputs show none was lost: with the queues left out of the
changelog, 12,987 outputs went missing), and when the registrations and openings come they
are all applied, as the same events taken in ts order give them (only prerequisites came late, within
the parking window); the fault tier's checks (tests.faults.harness) and a cold restart follow."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.devtools.localservices import free_port
from streams.devtools.publish import publish_per_topic
from streams.settings import Settings
from tests.faults.harness import (a_poisoned_day, assert_running, partitions_of, rules_of, settle_and_check,
                                  wait_until)
from tests.integration.conftest import wait_caught_up
from tests.integration.test_operations import fetch, samples
from tests.integration.test_ordering import comparable, in_ts_order

pytestmark = pytest.mark.integration

DAY_S = 86_400
PREREQUISITES = (b'"type":"client.registered"', b'"type":"account.opened"')


async def parked(worker: Any) -> float:
    """The worker's parked inputs (its gauge; 0 while it does not answer)."""
    try:
        return samples(await fetch(worker.port, "/metrics", timeout_s=5), "rewards_parked_inputs").get("", 0.0)
    except (OSError, AssertionError):
        return 0.0


def shared_identities(history: list[bytes]) -> set[str]:
    """Clients whose verified identity another client has too: which of them gets the welcome
    bonus is decided by the identity registry across partitions, as their claims reach it once
    released, not in ts order (docs/design.md, "The ordering guarantee")."""
    holders: dict[str, set[str]] = {}
    for line in history:
        if b'"client.verified"' in line:
            doc = orjson.loads(line)
            holders.setdefault(doc["identity_hash"], set()).add(doc["client_id"])
    return {client for clients in holders.values() if len(clients) > 1 for client in clients}


async def test_parked_inputs_survive_sigkills(settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    # A window of two days of event time: the prerequisites, most of a day late, are still awaited.
    # No client of this history has more inputs than a parked queue holds (1,000).
    settings = replace(settings, session_timeout_ms=6_000, park_window_s=2 * DAY_S)
    history, lines, poison = await a_poisoned_day(settings, seed=61, poison_seed=8, clients=400, fills=12_000)
    late = [line for line in lines if line.startswith(b"{") and any(p in line for p in PREREQUISITES)]
    closes = [line for line in lines if b'"type":"settlement.day_closed"' in line]
    held = set(late) | set(closes)
    rest = [line for line in lines if line not in held]
    assert len(late) >= 800 and closes and len(rest) > 12_000

    first = start_worker(settings=settings, web_port=free_port(), name="first")

    async def working() -> bool:
        return bool(await partitions_of(first))

    await wait_until(working, 120, first.tail)
    publishing = asyncio.create_task(publish_per_topic(rest, settings, skew_ms=200, rate=len(rest) / 20, seed=8))

    async def parking() -> bool:
        return await parked(first) >= 2_000

    await wait_until(parking, 120, first.tail)
    assert not publishing.done(), "everything was published before the kill: it did not land mid-run"
    first.kill()  # in the middle of parking
    await publishing

    second = start_worker(settings=settings, web_port=free_port(), name="second")
    await wait_caught_up(settings, timeout_s=300)
    await asyncio.sleep(2)  # a turn or two after catching up: the gauge is set after each turn
    waiting = await parked(second)
    assert waiting > 10_000, f"only {waiting} inputs parked: the clients' registrations were not awaited"
    second.kill()  # with everything parked

    third = start_worker(settings=settings, web_port=free_port(), name="third")

    async def recovered() -> bool:
        return await parked(third) == waiting

    await wait_until(recovered, 120, lambda: f"{waiting} parked before the kill\n" + third.tail())

    await publish_per_topic(late, settings, skew_ms=200, seed=9)  # the prerequisites, most of a day late
    await wait_caught_up(settings, timeout_s=300)
    await publish_per_topic(closes, settings)
    assert_running(third)
    sent = await settle_and_check(settings, start_worker, tmp_path, history, poison, "parked", third)

    # Every parked input was applied as the same events in ts order apply it, the clients who
    # share an identity with another aside (which of them gets the welcome bonus is decided as
    # their claims reach the registry), with the same counts of each refusal.
    expected = in_ts_order(lines, rules_of(settings))
    got = comparable(list(sent.values()))
    contested = shared_identities(history)
    assert got.keys() == expected.keys()
    differing = sorted(k for k in expected if expected[k] != got[k] and expected[k].get("client_id") not in contested)
    assert differing == [], (len(differing), [(expected[k], got[k]) for k in differing[:3]])
    reasons = Counter(o.get("reason") for o in got.values() if o["type"] == "event.rejected")
    assert reasons == Counter(o.get("reason") for o in expected.values() if o["type"] == "event.rejected")
    assert "parking_full" not in reasons and "unknown_client" not in reasons, reasons
