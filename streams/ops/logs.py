"""The worker's log: one line per record on stderr, as plain text (no colours or escape
codes: a log is read in files and collectors more than on terminals) or, with
REWARDS_LOG_FORMAT=json, one JSON object per line for a log collector.

REWARDS_LOG_LEVEL is the level of the worker's own loggers (``rewards.*``: start-up, ready,
recoveries, fencing, failures). The libraries under it (Faust, mode, aiokafka) log warnings
and worse, and everything at DEBUG."""

from __future__ import annotations

import logging
import sys
import time
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


def setup(level: str, form: str) -> None:
    """The root handler on stderr for ``form`` (text or json), replacing any other."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    own = logging.getLevelName(level.upper())
    root.setLevel(own if own == logging.DEBUG else max(own, logging.WARNING))
    logging.getLogger("rewards").setLevel(own)
