"""The order the sequencer records when no source lags beyond the grace, as `rewards replay
--order ts` reproduces it: by ts, then topic precedence, then each topic's own order."""

from __future__ import annotations

import io

import orjson

from handlers.rules import Rules
from streams.bus import in_ts_order
from streams.offline.replay import replay_in_ts_order
from streams.settings import Settings


def ev(kind: str, event_id: str, ts: str, **fields: object) -> bytes:
    return orjson.dumps({"type": kind, "id": event_id, "ts": f"2026-11-24T09:00:0{ts}Z", **fields})


def ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["id"] if line.startswith(b"{\"") else line.decode() for line in lines]


def test_ts_then_topic_precedence_then_each_topics_order() -> None:
    fill = ev("trade.fill", "fill", "2", client_id="c", account_id="a", fill_id="f", symbol="X",
              action="open", lots="1", spread_cost="1", commission="0")
    close = ev("settlement.day_closed", "close", "2", date="2026-11-23")
    opened = ev("account.opened", "opened", "2", client_id="c", account_id="a", account_type="standard",
                currency="USD")
    deposit = ev("deposit", "deposit", "1", client_id="c", account_id="a", deposit_id="d", amount="1",
                 source="external")
    registered = ev("client.registered", "registered", "3", client_id="c", country="DE")
    broken = b"not json at all"  # routed to the trades topic: keeps its place after `fill`
    order = in_ts_order([close, fill, broken, opened, deposit, registered], Settings())
    assert ids(order) == ["deposit", "opened", "fill", "not json at all", "close", "registered"]


def test_replay_in_ts_order_names_the_files_lines() -> None:
    late = orjson.dumps({"type": "client.registered", "id": "late", "ts": "2026-11-24T09:20:00Z",
                         "client_id": "c1", "country": "DE"})
    early = ev("wallet.allocate", "early", "1", client_id="ghost", account_id="x", amount="1")
    sink = io.BytesIO()
    summary = replay_in_ts_order(io.BytesIO(late + b"\n\n" + early + b"\n"), sink, Rules.default())
    assert (summary.events_in, summary.blank_lines) == (2, 1)
    # the ghost's allocation, applied first, waited; the registration 20 minutes later ended the wait
    [rejected] = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert (rejected["cause_id"], rejected["reason"], rejected["source"]) == ("early", "unknown_client", {"line": 3})
