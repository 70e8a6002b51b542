"""The naive reference replay of issue 15's benchmark is a fair one: on a generated day (busts,
bad lines, redeliveries, day closes) it pays out what the engine pays, to the micro-dollar, and
refuses as many allocations, claims and bonuses. (It does less elsewhere: no parking, no
windows; the day here needs none.)"""

from __future__ import annotations

import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson

from benchmarks.naive_replay import replay_file
from handlers.rules import Rules
from streams.devtools.sample_day import write
from streams.offline.replay import replay

PAID = ("cashback.accrued", "wallet.allocated", "welcome.granted", "bonus.granted", "bonus.unlocked",
        "rebate.payout", "commission.payout")
COUNTED = PAID + ("coverage.applied", "wallet.allocation_rejected", "welcome.rejected", "bonus.rejected",
                  "fill.reversed", "rebate.accrued", "event.rejected")


def summary(lines: list[bytes]) -> tuple[Counter[str], dict[str, Decimal]]:
    outputs = [orjson.loads(line) for line in lines]
    sums = {kind: sum((Decimal(o["amount"]) for o in outputs if o["type"] == kind), Decimal(0)) for kind in PAID}
    return Counter(o["type"] for o in outputs if o["type"] in COUNTED), sums


def test_the_naive_reference_pays_what_the_engine_pays(tmp_path: Path) -> None:
    day = tmp_path / "day.jsonl"
    write(str(day), clients=300, fills=20_000, seed=11, days=2)
    sink = io.BytesIO()
    with open(day, "rb") as source:
        replay(source, sink, Rules.default())
    naive_events, _ = replay_file(day, tmp_path / "naive.jsonl")
    engine, naive = summary(sink.getvalue().splitlines()), summary((tmp_path / "naive.jsonl").read_bytes().splitlines())
    assert naive_events > 20_000
    assert naive[1] == engine[1] and all(engine[1][kind] > 0 for kind in ("cashback.accrued", "bonus.granted",
                                                                            "rebate.payout", "commission.payout"))
    assert naive[0] == engine[0]
