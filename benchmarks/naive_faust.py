"""The baseline the worker is measured against: the way a first Faust agent is usually written,
with a Record value type (JSON codec) and one table update per event."""

from __future__ import annotations

import os
import sys

import faust


class Fill(faust.Record, serializer="json"):
    type: str
    id: str
    ts: str
    client_id: str
    account_id: str
    fill_id: str
    lots: str
    spread_cost: str
    commission: str


def build(bootstrap: str, topic: str, group: str, port: int) -> faust.App:
    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", web_port=port,
                    consumer_auto_offset_reset="earliest", topic_partitions=int(os.environ.get("PARTITIONS", "8")),
                    datadir=os.environ.get("DATADIR", f"/tmp/{group}"))
    fills = app.topic(topic, value_type=Fill)
    fills_per_client = app.Table("fills", default=int, partitions=int(os.environ.get("PARTITIONS", "8")))

    @app.agent(fills)
    async def count(stream: faust.Stream) -> None:
        async for fill in stream:  # the topic is keyed by client_id: co-partitioned with the table
            fills_per_client[fill.client_id] += 1

    return app


if __name__ == "__main__":
    bootstrap, topic, group, port = sys.argv[1:5]
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    build(bootstrap, topic, group, int(port)).main()
