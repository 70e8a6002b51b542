"""Issue 27: the status page's chart shows whole 10-second slots since the worker started, not
the slot still in progress (a steady load always dipped at the right edge)."""

from __future__ import annotations

from typing import Any

from streams.ops.metrics import Metrics
from streams.ops.status import View, status
from streams.settings import Settings


class Ledger:
    applied = skipped = 0

    def assignment(self) -> list[int]:
        return [0]

    def terms(self) -> dict[str, Any]:
        return {"in_force": None, "next": None, "versions": 0, "late": 0, "event_time": None}


def test_the_chart_has_the_slots_done_since_the_start(monkeypatch: Any) -> None:
    metrics = Metrics()
    history = metrics.history
    for t in (1000.0, 1005.0, 1012.0, 1021.0, 1033.0):
        history.add(applied=100, now=t)
    monkeypatch.setattr("streams.ops.status.time.time", lambda: 1035.0)
    view = View(Settings.from_env({}), metrics, None, {}, 1003.0, Ledger(), lambda: True)  # type: ignore[arg-type]
    series = status(view, redis_up=True)["series"]
    assert [row["t"] for row in series] == [1000, 1010, 1020]  # 1030-1040 is under way
    assert [row["applied_per_s"] for row in series] == [20.0, 10.0, 10.0]
