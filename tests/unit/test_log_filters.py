"""The worker's log filters (streams.ops.logs): no secret at any level, a broker failover's
client errors summarised per broker and interval, the clear-text warning once."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from streams.ops.logs import Redact, Summarise

PASSWORD = "rewards-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> Iterator[tuple[io.StringIO, Clock]]:
    out, clock = io.StringIO(), Clock()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s [%(name)s] %(message)s"))
    handler.addFilter(Summarise(every_s=30, clock=clock))
    handler.addFilter(Redact([PASSWORD, ""]))
    root = logging.getLogger()
    before = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    try:
        yield out, clock
    finally:
        root.handlers[:], level = before
        root.setLevel(level)


def test_no_secret_at_debug_nor_in_a_traceback(logged: tuple[io.StringIO, Clock]) -> None:
    out, _ = logged
    conn = logging.getLogger("aiokafka.conn")
    request = f"SaslAuthenticateRequest_v1(sasl_auth_bytes=b'rewards\\x00rewards\\x00{PASSWORD}')"
    conn.debug("Request to %s:%d %d: %s", "127.0.0.1", 9093, 7, request)
    conn.debug("Request %s", "SaslAuthenticateRequest_v1(sasl_auth_bytes=b\"it's\\x00hidden\")")
    try:
        raise ValueError(f"login failed for rewards/{PASSWORD}")
    except ValueError:
        logging.getLogger("rewards.worker").exception("could not connect")
    text = out.getvalue()
    assert PASSWORD not in text and "hidden" not in text
    assert "sasl_auth_bytes=<redacted>)" in text and "login failed for rewards/<redacted>" in text
    assert "Request to 127.0.0.1:9093 7: SaslAuthenticateRequest_v1(" in text


def test_a_failover_s_client_errors_once_per_broker_and_interval(logged: tuple[io.StringIO, Clock]) -> None:
    out, clock = logged
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    for second in range(20):  # ~200 lines a second during a failover
        clock.now = float(second)
        for partition in range(10):
            for port in (9092, 9094):
                fetcher.error("Unable connect to node with id %d at 127.0.0.1:%d: [Errno 111] Connect call failed, "
                              "partition %d", 1, port, partition)
    clock.now = 31.0
    fetcher.error("Unable connect to node with id %d at 127.0.0.1:%d: [Errno 111] Connect call failed, partition %d",
                  1, 9092, 3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "127.0.0.1:9092" in lines[0] and "127.0.0.1:9094" in lines[1]
    assert lines[2].endswith("(and 199 more like it in the last 31 s)")
    logging.getLogger("rewards.sequencer").warning("the worker's own lines are never summarised")
    logging.getLogger("rewards.sequencer").warning("the worker's own lines are never summarised")
    assert len(out.getvalue().splitlines()) == 5


def test_the_clear_text_warning_once(logged: tuple[io.StringIO, Clock]) -> None:
    out, clock = logged
    for second in range(155):
        clock.now = second * 100.0
        logging.getLogger("aiokafka.conn").warning("Sending username and password in the clear")
    assert out.getvalue().count("in the clear") == 1


def test_no_coordinator_yet_is_not_said_in_the_first_minute(logged: tuple[io.StringIO, Clock]) -> None:
    """Issue 27: a first start on a fresh cluster logged ERROR GroupCoordinatorNotAvailableError
    while the broker made its offsets topic; later it is a fault, and said."""
    out, clock = logged
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    for second in (0.5, 2.0, 59.0):
        clock.now = second
        coordinator.error("Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError")
    assert out.getvalue() == ""
    clock.now = 61.0
    coordinator.error("Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError")
    assert out.getvalue().count("GroupCoordinatorNotAvailableError") == 1
