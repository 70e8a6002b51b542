"""The client-area API on the worker's web server, served from the Redis read model."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handlers.engine import Engine
from handlers.money import fmt
from streams.devtools.localservices import free_port
from streams.settings import Settings
from tests.integration.conftest import ensure, publish_in_order

SCENARIOS = Path(__file__).parents[1] / "scenarios"
pytestmark = pytest.mark.integration


async def get(port: int, path: str, timeout_s: float = 60) -> tuple[int, dict[str, Any]]:
    """GET, waiting for the web server to come up."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    return response.status, await response.json()
            except aiohttp.ClientConnectionError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.3)


async def test_wallet_bonuses_and_rebates_match_the_engine(settings: Settings, start_worker: Any) -> None:
    lines = (SCENARIOS / "programs.jsonl").read_bytes().splitlines()
    engine = Engine()
    for n, line in enumerate(lines):
        engine.process(line, {"line": n})
    await ensure(settings)
    worker = start_worker()
    await publish_in_order(settings, lines)
    for client_id, state in engine.clients.items():
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the view follows the state within a batch
            status, wallet = await get(worker.port, f"/clients/{client_id}/wallet")
            if status == 200 and wallet["balance"] == fmt(state.wallet.balance):
                break
            assert asyncio.get_running_loop().time() < deadline, (client_id, status, wallet, worker.tail())
            await asyncio.sleep(0.3)
        assert wallet["lifetime_accrued"] == fmt(state.wallet.accrued - state.wallet.reversed)
        assert wallet["reward_rate"] == "0.1"
        status, bonuses = await get(worker.port, f"/clients/{client_id}/bonuses")
        assert status == 200
        assert [(b["bonus_id"], b["lots_traded"], b["unlocked"]) for b in bonuses["bonuses"]] == [
            (b.bonus_id, fmt(b.lots_traded), b.unlocked) for b in state.bonuses]
        status, rebates = await get(worker.port, f"/clients/{client_id}/rebates")
        assert status == 200
        assert [(r["partner_id"], r["paid"], r["carried"]) for r in rebates["rebates"]] == [
            (p, fmt(r.paid), fmt(r.carried)) for p, r in sorted(state.rebates.items())]
    assert (await get(worker.port, "/clients/nobody/wallet"))[0] == 404
    status, health = await get(worker.port, "/health")
    assert status == 200 and health["redis"] == "up"


async def test_a_clear_503_while_redis_is_unreachable(settings: Settings, start_worker: Any) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    broken = dataclasses.replace(settings, redis_url=dead_redis)
    await ensure(broken)
    from tests.integration.conftest import WorkerProcess

    worker = WorkerProcess(broken, Path(broken.data_dir).parent / "broken.log")
    try:
        status, body = await get(worker.port, "/clients/c1/wallet")
        assert status == 503 and body["error"] == "read model unavailable"
        status, health = await get(worker.port, "/health")
        assert status == 503 and health["redis"] == "unreachable"
    finally:
        worker.stop()
