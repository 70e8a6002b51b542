"""The client-area API on the worker's web server, served from the Redis read model.

    GET /clients/{id}/wallet     balance, lifetime accrued JM USD, reward rate, allocations
    GET /clients/{id}/bonuses    every deposit bonus and its turnover progress
    GET /clients/{id}/rebates    partner rebates accrued, paid and carried
    GET /health                  200 when Redis answers, 503 when it does not
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
        ok = await model.ping()
        body = {"status": "ok" if ok else "degraded", "redis": "up" if ok else "unreachable",
                "applied": worker.applied, "skipped_redeliveries": worker.skipped,
                "partitions": worker.assigned_partitions()}
        return json_response(web, body, 200 if ok else 503)

    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(worker.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def status_json(web: Any, request: Any) -> Any:
        return json_response(web, status.status(worker, await model.ping()))

    async def status_page(web: Any, request: Any) -> Any:
        return web.bytes(status.PAGE.encode(), content_type="text/html")

    for path, page in (("/health", health), ("/metrics", metrics), ("/status.json", status_json), ("/", status_page)):
        app.page(path)(page)
