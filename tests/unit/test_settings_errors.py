"""A user's configuration mistakes stop ``rewards worker`` before it connects to anything:
exit 2, one line naming the variable and what it accepts, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("REWARDS_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("REWARDS_WEB_PORT", "99999", "must be a port number, 1 to 65535"),
    ("REWARDS_WEB_PORT", "http", "must be a whole number"),
    ("REDIS_URL", "http://x", "must start with redis://, rediss:// or unix://"),
    ("REWARDS_APP_ID", "a b", "must be 1 to 200 of the characters a Kafka topic name allows"),
    ("REWARDS_TOPIC_LEDGER", "", "must be a Kafka topic name"),
    ("REWARDS_TOPIC_TRADES", "trades/eu", "must be a Kafka topic name"),
    ("REWARDS_PARTITIONS", "0", "must be between 1 and 1024"),
    ("REWARDS_DATA_DIR", "{file}/data", "cannot be made: Not a directory"),
])
def test_a_configuration_mistake_is_one_line_naming_the_variable(variable: str, value: str, says: str,
                                                                 tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", variable: value.format(file=a_file)}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
