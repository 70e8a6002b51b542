"""Issue 10, property (b): the engine with parking gives the outputs of ts order for any arrival
order in which only prerequisites (a registration, an account's opening, a busted fill) come
late, within the parking window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from handlers.engine import Engine
from handlers.rules import Rules
from schemas.codec import encode_output

T0 = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
RULES = Rules.default()  # parking on, 600 s window


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few clients' lives in ts order, one second apart."""
    events: list[dict[str, Any]] = []
    clock = 0.0

    def add(kind: str, **fields: Any) -> dict[str, Any]:
        nonlocal clock
        clock += 1
        event = {"type": kind, "id": f"e{len(events)}", "ts": ts(clock), **fields}
        events.append(event)
        return event

    add("partner.plan", partner_id="p", rebate_per_lot={"standard": "2"}, commission_per_lot={"standard": "5"})
    for c in range(draw(st.integers(1, 3))):
        cid = f"c{c}"
        add("client.registered", client_id=cid, country="DE")
        add("client.verified", client_id=cid, id_document=True, phone=True, identity_hash=f"h{c}")
        add("partner.linked", client_id=cid, partner_id="p")
        accounts = [f"{cid}-a{n}" for n in range(draw(st.integers(1, 2)))]
        for account in accounts:
            add("account.opened", client_id=cid, account_id=account, account_type="standard", currency="USD")
            add("account.validated", client_id=cid, account_id=account)
        fills: list[str] = []
        for step in draw(st.lists(st.sampled_from(["fill", "bust", "deposit", "allocate"]), max_size=12)):
            account = draw(st.sampled_from(accounts))
            if step == "fill":
                fill_id = f"f{len(events)}"
                fills.append(fill_id)
                add("trade.fill", client_id=cid, account_id=account, fill_id=fill_id, symbol="EURUSD",
                    action=draw(st.sampled_from(["open", "close"])), lots="1",
                    spread_cost=draw(st.sampled_from(["3", "8.5"])), commission="0")
            elif step == "bust" and fills:
                add("trade.bust", client_id=cid, fill_id=fills.pop(0))
            elif step == "deposit":
                add("deposit", client_id=cid, account_id=account, deposit_id=f"d{len(events)}", amount="400",
                    source="external", bonus_percent=draw(st.sampled_from([None, 50, 100])))
            elif step == "allocate":
                add("wallet.allocate", client_id=cid, account_id=account, amount="0.5")
    add("settlement.day_closed", date="2026-11-24")
    return events


def is_prerequisite(event: dict[str, Any], history: list[dict[str, Any]]) -> bool:
    busted = {e["fill_id"] for e in history if e["type"] == "trade.bust"}
    return (event["type"] in ("client.registered", "account.opened")
            or (event["type"] == "trade.fill" and event["fill_id"] in busted))


def needs(event: dict[str, Any], prerequisite: dict[str, Any]) -> bool:
    if prerequisite["type"] == "account.opened":
        return prerequisite["account_id"] in (event.get("account_id"), event.get("to_account_id"))
    return event["type"] == "trade.bust" and event["fill_id"] == prerequisite["fill_id"]


def how_far_late(arrival: list[dict[str, Any]], index: int) -> int:
    """How many places the prerequisite at ``index`` may move later and still be the only thing
    late: past other clients' events, and past its own client's only once one of them waits for
    it (all of a client's newer events queue behind a parked one)."""
    prerequisite = arrival[index]
    waiting = prerequisite["type"] == "client.registered"
    for steps, event in enumerate(arrival[index + 1:-1]):  # never past the day's close
        if event.get("client_id") == prerequisite["client_id"] and not waiting:
            if not needs(event, prerequisite):
                return steps
            waiting = True
    return len(arrival) - 2 - index


@st.composite
def late_prerequisites(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ts order, an arrival order in which some prerequisites come later)."""
    history = draw(histories())
    arrival = list(history)
    for event in [e for e in history if is_prerequisite(e, history)]:
        index = arrival.index(event)
        room = how_far_late(arrival, index)
        if room and draw(st.booleans()):
            arrival.insert(index + draw(st.integers(1, room)), arrival.pop(index))
    return history, arrival


def run(events: list[dict[str, Any]]) -> dict[str, bytes]:
    engine = Engine(RULES)
    outputs: dict[str, bytes] = {}
    for n, event in enumerate(events):
        for output in engine.process(orjson.dumps(event), {"line": 0}):
            assert output.id not in outputs, f"{output.id} twice"
            outputs[output.id] = encode_output(output)
    assert engine.shared.parked_events == 0, "everything parked was released"
    return outputs


@given(late_prerequisites())
def test_late_prerequisites_give_the_outputs_of_ts_order(orders: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    in_ts_order, arrival = orders
    assert run(arrival) == run(in_ts_order)
