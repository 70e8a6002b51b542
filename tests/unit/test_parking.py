"""Parking (handlers.parking): an input whose prerequisite has not been applied waits for it, in
event time, and is then applied as if the events had come in ts order; past the window it gets
its usual refusal. The comparisons are against the same events sent in ts order."""

from __future__ import annotations

from typing import Any

import orjson

from handlers.rules import Rules
from streams.worker.ledger import PartitionLedger
from tests.support import Scenario, apply_writes, of_type, one
from tests.unit.test_ledger_recovery import TOPICS, records, run

START = "2026-11-24T09:00:00Z"


def events(s: Scenario, *specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [s.event(kind, **fields) for kind, fields in specs]


def outputs_of(order: list[dict[str, Any]], rules: Rules | None = None) -> list[dict[str, Any]]:
    s = Scenario(rules, parking=True)
    for event in order:
        s.send(event)
    return s.outputs


def onboarding(s: Scenario, client_id: str = "c1") -> list[dict[str, Any]]:
    return events(s,
                  ("client.registered", {"client_id": client_id, "country": "DE"}),
                  ("client.verified", {"client_id": client_id, "id_document": True, "phone": True,
                                       "identity_hash": f"p-{client_id}"}),
                  ("account.opened", {"client_id": client_id, "account_id": f"{client_id}-a",
                                      "account_type": "standard", "currency": "USD"}),
                  ("account.validated", {"client_id": client_id, "account_id": f"{client_id}-a"}))


def fill(s: Scenario, fill_id: str, client_id: str = "c1", cost: str = "10") -> dict[str, Any]:
    return s.event("trade.fill", client_id=client_id, account_id=f"{client_id}-a", fill_id=fill_id,
                   symbol="EURUSD", action="close", lots="1", spread_cost=cost, commission="0")


def test_a_deposit_before_its_account_is_applied_when_the_account_opens() -> None:
    s = Scenario(parking=True)
    register, verify, opened, validated = onboarding(s)
    deposit = s.event("deposit", client_id="c1", account_id="c1-a", deposit_id="d1", amount="500",
                      source="external", bonus_percent=100)
    in_ts_order = outputs_of([register, verify, opened, validated, deposit])
    assert one(in_ts_order, "bonus.granted")["amount"] == "500"
    late = Scenario(parking=True)
    assert late.send(register) == [] and late.send(verify) == []
    assert late.send(deposit) == [], "parked, not refused"
    assert late.engine.shared.parked_events == 1
    late.send(opened)
    late.send(validated)
    assert late.outputs == in_ts_order
    assert late.engine.shared.parked_events == 0 and not late.engine.shared.parked


def test_a_clients_events_before_its_registration_are_applied_in_ts_order() -> None:
    s = Scenario(parking=True)
    register, verify, opened, validated = onboarding(s)
    fills = [fill(s, f"f{i}") for i in range(3)]
    allocate = s.event("wallet.allocate", client_id="c1", account_id="c1-a", amount="1")
    more = [fill(s, f"g{i}") for i in range(2)]
    in_ts_order = [register, verify, opened, validated, *fills, allocate, *more]
    expected = outputs_of(in_ts_order)
    assert of_type(expected, "wallet.allocated") and of_type(expected, "coverage.applied")
    # The CRM's registration and the account's opening come late; everything else in its place.
    assert outputs_of([verify, validated, *fills, allocate, register, *more, opened]) == expected


def test_a_bust_before_its_fill_reverses_it_when_the_fill_arrives() -> None:
    s = Scenario(parking=True)
    setup = onboarding(s)
    the_fill = fill(s, "f1")
    bust = s.event("trade.bust", client_id="c1", fill_id="f1")
    expected = outputs_of([*setup, the_fill, bust])
    assert one(expected, "fill.reversed")["fill_id"] == "f1"
    assert outputs_of([*setup, bust, the_fill]) == expected


def test_source_clocks_that_disagree_the_prerequisite_stamped_after_its_dependent() -> None:
    s = Scenario(parking=True)
    register, verify, opened, validated = onboarding(s)
    deposit = s.event("deposit", client_id="c1", account_id="c1-a", deposit_id="d1", amount="200",
                      source="external", bonus_percent=50)
    s.advance(seconds=2)
    late_open = {**opened, "ts": s.ts()}  # the CRM stamps the opening two seconds after the deposit
    out = outputs_of([register, verify, deposit, late_open, validated])
    assert one(out, "bonus.granted")["amount"] == "100"
    assert not of_type(out, "event.rejected")


def test_an_input_whose_prerequisite_never_comes_gets_its_usual_refusal_after_the_window() -> None:
    rules = Rules.from_toml("[parking]\nwindow_seconds = 60")
    s = Scenario(rules, parking=True)
    for event in onboarding(s, "c2"):
        s.send(event)
    ghost = s.event("wallet.allocate", client_id="ghost", account_id="x", amount="1")
    assert s.send(ghost) == []
    allocate_nowhere = s.event("wallet.allocate", client_id="c2", account_id="nope", amount="1")
    assert s.send(allocate_nowhere) == []
    s.advance(seconds=50)
    assert s.send(fill(s, "f1", "c2")) == [], "within the window: still waiting, and c2's fill waits behind"
    s.advance(seconds=30)
    released = s.send(fill(s, "f2", "c2"))  # event time now past both windows
    rejected = one(released, "event.rejected")
    assert (rejected["reason"], rejected["cause_id"]) == ("unknown_client", ghost["id"])
    assert one(released, "wallet.allocation_rejected")["reason"] == "unknown_account"
    assert [o["fill_id"] for o in of_type(released, "cashback.accrued")] == ["f1", "f2"]
    assert s.engine.shared.parked_events == 0


def test_the_window_is_event_time_not_arrival() -> None:
    rules = Rules.from_toml("[parking]\nwindow_seconds = 60")
    s = Scenario(rules, parking=True)
    ghost = s.event("wallet.allocate", client_id="ghost", account_id="x", amount="1")
    s.send(ghost)
    for n in range(40):  # many inputs (each a second after the last), all within the minute
        s.advance(seconds=0.2)
        s.send(s.event("client.registered", client_id=f"k{n}", country="DE"))
    assert not of_type(s.outputs, "event.rejected")


def test_parked_inputs_are_bounded_per_client() -> None:
    rules = Rules.from_toml("[parking]\nmax_per_client = 2")
    s = Scenario(rules, parking=True)
    assert s.send(fill(s, "f1")) == [] and s.send(fill(s, "f2")) == []
    third = s.send(fill(s, "f3"))
    assert one(third, "event.rejected")["reason"] == "parking_full"
    assert s.engine.shared.parked_events == 2


def test_a_rejection_is_final_for_its_id() -> None:
    rules = Rules.from_toml("[parking]\nwindow_seconds = 60")
    s = Scenario(rules, parking=True)
    deposit = s.event("deposit", client_id="c1", account_id="c1-a", deposit_id="d1", amount="500",
                      source="external", bonus_percent=100)
    s.send(deposit)
    s.advance(minutes=5)
    refused = s.send(s.event("client.registered", client_id="other", country="DE"))
    assert one(refused, "event.rejected")["reason"] == "unknown_client"
    for event in onboarding(s):
        s.send(event)
    again = s.send(deposit)
    assert one(again, "event.rejected")["reason"] == "duplicate"
    assert not of_type(s.outputs, "bonus.granted")


def test_parking_off_refuses_at_once() -> None:
    s = Scenario(Rules.from_toml("[parking]\nwindow_seconds = 0"), parking=True)
    assert one(s.send(fill(s, "f1")), "event.rejected")["reason"] == "unknown_client"


def test_a_fill_of_a_closed_day_is_marked_late_and_paid_at_the_next_close() -> None:
    s = Scenario(parking=True)
    s.plan("p1", {"standard": "5"}, {"standard": "10"})
    for event in onboarding(s):
        s.send(event)
    s.emit("partner.linked", client_id="c1", partner_id="p1")
    on_time = s.send(fill(s, "f1"))
    assert one(on_time, "rebate.accrued")["late"] is False
    late_fill = fill(s, "f2")  # of 2026-11-24, delayed past the close
    s.close_day("2026-11-24")
    assert one(s.send(late_fill), "rebate.accrued")["late"] is True
    s.advance(days=1)
    paid = s.close_day("2026-11-25")
    assert one(paid, "rebate.payout")["amount"] == "5"
    assert one(paid, "commission.payout")["amount"] == "10"


def test_parked_inputs_survive_the_worker_between_batches() -> None:
    """The worker keeps the queue in its state changelog: a ledger rebuilt from it (a restart)
    releases the parked input when its prerequisite comes in the next batch."""
    s = Scenario()
    register, verify, opened, validated = onboarding(s)
    deposit = s.event("deposit", client_id="c1", account_id="c1-a", deposit_id="d1", amount="500",
                      source="external", bonus_percent=100)
    log = records([orjson.dumps(e) for e in (register, verify, deposit, opened, validated)])
    first = PartitionLedger(0, 1, Rules.default(), TOPICS, {})
    assert not any(orjson.loads(value)["type"] == "bonus.granted" for _, value in run(first, log[:3]))
    changelog: dict[bytes, bytes] = {}
    apply_writes(changelog, first.store.flush()[1])
    assert first.shared.parked_events == 1
    restarted = PartitionLedger(0, 1, Rules.default(), TOPICS, changelog)
    sent = [orjson.loads(value) for _, value in run(restarted, log[3:])]
    assert one(sent, "bonus.granted")["cause_id"] == deposit["id"]
    assert restarted.shared.parked_events == 0
