"""The worker's log: one line per record on stderr, as plain text (no colours or escape
codes: a log is read in files and collectors more than on terminals) or, with
REWARDS_LOG_FORMAT=json, one JSON object per line for a log collector.

REWARDS_LOG_LEVEL is the level of the worker's own loggers (``rewards.*``: start-up, ready,
recoveries, fencing, failures). The libraries under it (Faust, mode, aiokafka) log warnings
and worse, and everything at DEBUG.

Two filters stand on the handler, so on every line whatever logged it: ``Redact`` keeps the
secrets out at every level (the passwords as configured, and what the Kafka client prints of a
SASL exchange, which holds PLAIN's password), and ``Summarise`` keeps a broker failover from
filling the log: the Kafka client's repeated warnings and errors go out once per kind and
broker per interval, the next with how many were left out, and the clear-text warning once."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Final

import orjson

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message", "pid"}, with "exception" when there is one; a
    record's ``extra`` fields too, when they are plain values."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(), "pid": record.process}
        for key, value in vars(record).items():
            if key not in self._standard and isinstance(value, (str, int, float, bool)) and key not in body:
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


REDACTED: Final = "<redacted>"
# aiokafka's connection logger prints every request at DEBUG, a SASL one with its bytes
_AUTH_BYTES: Final = re.compile(r"(auth_bytes=)b(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


class Redact(logging.Filter):
    """No secret in any line: ``secrets`` (the configured passwords) and SASL bytes are replaced
    by <redacted>, in the message and in a traceback's text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        text = _AUTH_BYTES.sub(r"\1" + REDACTED, text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        return True


SUMMARY_EVERY_S: Final = 30.0
_CLIENTS: Final = ("aiokafka", "kafka")
_NUMBERS: Final = re.compile(r"\d+")
_ADDRESS: Final = re.compile(r"[A-Za-z0-9_.-]+:\d{2,5}\b")


def kind_of(message: str) -> str:
    """``message`` with its numbers as # (offsets, partitions, correlation ids, counts), but for
    host:port addresses."""
    parts, last = [], 0
    for found in _ADDRESS.finditer(message):
        parts += [_NUMBERS.sub("#", message[last:found.start()]), found.group()]
        last = found.end()
    parts.append(_NUMBERS.sub("#", message[last:]))
    return "".join(parts)[:300]


STARTING_S: Final = 60.0  # a worker's first minute: the group coordinator may not be there yet


class Summarise(logging.Filter):
    """The Kafka client's warnings and errors, once per kind (its logger, level and message with
    the numbers taken out but for a broker's host:port, so each broker is summarised apart) per
    SUMMARY_EVERY_S; the next one of a kind after its interval says how many were left out.
    The clear-text warning (SASL PLAIN without TLS) once per process. In the first STARTING_S,
    "GroupCoordinatorNotAvailable" is not said at all: on a cluster's first start the broker
    makes its offsets topic then, and the client retries (later, it is a fault, and said)."""

    def __init__(self, every_s: float = SUMMARY_EVERY_S, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self.kinds: dict[tuple[str, int, str], tuple[float, int]] = {}  # kind -> (when last let out, left out since)
        self.clear_text_said = False
        self.started = clock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(_CLIENTS):
            return True
        message = record.getMessage()
        if "in the clear" in message:
            said, self.clear_text_said = self.clear_text_said, True
            return not said
        if "GroupCoordinatorNotAvailable" in message and self.clock() - self.started < STARTING_S:
            return False
        kind = (record.name, record.levelno, kind_of(message))
        now = self.clock()
        last = self.kinds.get(kind)
        if last is not None and now - last[0] < self.every_s:
            self.kinds[kind] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg, record.args = f"{message} (and {last[1]:,} more like it in the last {now - last[0]:.0f} s)", ()
        if len(self.kinds) > 10_000:  # bounded: a flood of distinct messages forgets the oldest kinds
            self.kinds.clear()
        self.kinds[kind] = (now, 0)
        return True


def setup(level: str, form: str, secrets: Iterable[str] = ()) -> None:
    """The root handler on stderr for ``form`` (text or json), replacing any other, behind
    ``Redact(secrets)`` and ``Summarise``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(Summarise())
    handler.addFilter(Redact(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    own = logging.getLevelName(level.upper())
    root.setLevel(own if own == logging.DEBUG else max(own, logging.WARNING))
    logging.getLogger("rewards").setLevel(own)
