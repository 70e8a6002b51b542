"""`python -m streams.devtools.localservices` stopped with SIGTERM (as a supervisor or `kill`
stops it) stops the Kafka broker and the Redis it started, as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support import default_signals

pytestmark = pytest.mark.integration


def answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_services_it_started(signum: signal.Signals) -> None:
    env = {name: value for name, value in os.environ.items() if name not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    services = subprocess.Popen([sys.executable, "-m", "streams.devtools.localservices"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    try:
        assert services.stdout is not None
        kafka = services.stdout.readline().strip().removeprefix("KAFKA_BOOTSTRAP_SERVERS=")
        redis = services.stdout.readline().strip().removeprefix("REDIS_URL=redis://").removesuffix("/0")
        assert answers(kafka) and answers(redis), services.stderr.read() if services.poll() is not None else ""
        services.send_signal(signum)
        assert services.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while (answers(kafka) or answers(redis)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not answers(kafka), f"Kafka at {kafka} still answers after {signum.name}"
        assert not answers(redis), f"Redis at {redis} still answers after {signum.name}"
    finally:
        if services.poll() is None:
            services.kill()
