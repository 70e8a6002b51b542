"""While Redis is unreachable the read model keeps the views and says so in the log: once when
it goes, a reminder a minute, once when it is back; naming REDIS_URL's host, never its password.
(A port nothing listens on: the connection is refused at once; no Redis is needed.)"""

from __future__ import annotations

import logging
import socket

import pytest

from handlers.rules import Rules
from handlers.clientstate import ClientState
from streams.ops.readmodel import ReadModel


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_outage_is_logged_once_not_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    model = ReadModel(f"redis://:s3cret@127.0.0.1:{port}/0", "app:", Rules.default())
    with caplog.at_level(logging.WARNING, logger="rewards.readmodel"):
        for version in range(20):
            assert await model.publish([(ClientState(client_id="c1", country="DE"), version)]) is False
    assert len(model.backlog) == 1 and model.backlog["c1"].version == 19  # the newest view waits
    [line] = [r.getMessage() for r in caplog.records]
    assert f"Redis at 127.0.0.1:{port} (REDIS_URL) unreachable" in line and "the ledger goes on" in line
    assert "s3cret" not in line
    await model.client.aclose()
