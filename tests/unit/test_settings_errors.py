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


@pytest.mark.parametrize(("env", "variable", "says"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL",
     "must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME", "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM", "must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SECURITY_PROTOCOL", "set it to SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{file}.missing"}, "KAFKA_SSL_CA_FILE", "cannot read"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "{file}"}, "KAFKA_SSL_KEY_FILE", "set both or neither"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": "{file}.missing"},
     "KAFKA_SASL_PASSWORD_FILE", "cannot read"),
    ({"REWARDS_COMPRESSION": "brotli"}, "REWARDS_COMPRESSION", "must be one of none, gzip, snappy, lz4, zstd"),
    ({}, "KAFKA_BOOTSTRAP_SERVERS", "cannot reach Kafka at 127.0.0.1:1"),
])
def test_a_connection_mistake_is_one_line_naming_the_variable(env: dict[str, str], variable: str, says: str,
                                                              tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    given = {name: value.format(file=a_file) for name, value in env.items()}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **given})
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_password_is_read_from_its_file_and_never_shown(tmp_path: Path) -> None:
    from streams.settings import Settings

    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "svc-rewards",
                                  "KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert settings.kafka_sasl_password == "s3cret"
    assert "s3cret" not in repr(settings) and "svc-rewards" not in repr(settings)
