"""The client-area API on the worker's web server, served from the Redis read model.

    GET /clients/{id}/wallet     balance, lifetime accrued JM USD, reward rate, allocations
    GET /clients/{id}/bonuses    every deposit bonus and its turnover progress
    GET /clients/{id}/rebates    partner rebates accrued, paid and carried
    GET /terms                   the program terms in force at the ledger's event time, and the next change
    GET /health                  200 while the worker processes Kafka (Redis down: "degraded", still 200),
                                 503 while it starts, after it was fenced, and while it stops
    GET /metrics                 Prometheus text format (streams.ops.metrics)
    GET /                        the status page; GET /status.json, what it shows (streams.ops.status)
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.ops import status
from streams.ops.status import View


PARTS = ("wallet", "bonuses", "rebates")


def register(app: Any, worker: View) -> None:
    """The pages, on the Faust app ``app`` (streams.worker.app), over the read-only ``worker``."""
    model = worker.read_model

    def json_response(web: Any, body: Any, status: int = 200) -> Any:
        return web.bytes(body if isinstance(body, bytes) else orjson.dumps(body), status=status,
                         content_type="application/json")

    async def client_part(web: Any, request: Any, client_id: str, part: str) -> Any:
        try:
            body = await model.view(client_id, part)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            return json_response(web, {"error": "read model unavailable", "detail": str(exc)}, 503)
        if body is None:
            return json_response(web, {"error": "unknown client", "client_id": client_id}, 404)
        return json_response(web, body)

    for part in PARTS:
        def make(part: str) -> Any:
            async def handler(web: Any, request: Any, client_id: str) -> Any:
                return await client_part(web, request, client_id, part)
            handler.__name__ = f"client_{part}"
            return handler

        app.page(f"/clients/{{client_id}}/{part}")(make(part))

    async def health(web: Any, request: Any) -> Any:
        """Readiness is about Kafka: a worker that processes its partitions is ready, Redis or not
        (the client views wait in its backlog and the ledger goes on); taking every pod out for a
        Redis outage would stop the ledger too, and block node drains on the disruption budget.
        Redis down is "degraded", on rewards_read_model_up and its alert."""
        redis_up = await model.ping()
        worker.metrics.read_model_up.set(1 if redis_up else 0)
        processing = worker.processing()
        body = {"status": "starting or stopping" if not processing else "ok" if redis_up else "degraded",
                "kafka": "processing" if processing else "not processing",
                "redis": "up" if redis_up else "unreachable",
                "applied": worker.applied, "skipped_redeliveries": worker.skipped,
                "partitions": worker.assigned_partitions()}
        return json_response(web, body, 200 if processing else 503)

    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(worker.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def status_json(web: Any, request: Any) -> Any:
        return json_response(web, status.status(worker, await model.ping()))

    async def terms(web: Any, request: Any) -> Any:
        return json_response(web, worker.ledger.terms())

    async def status_page(web: Any, request: Any) -> Any:
        return web.bytes(status.PAGE.encode(), content_type="text/html")

    for path, page in (("/terms", terms), ("/health", health), ("/metrics", metrics), ("/status.json", status_json), ("/", status_page)):
        app.page(path)(page)
