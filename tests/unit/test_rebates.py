"""Partner rebates and commissions, daily payouts with cent carry (programs.md section 4)."""

import pytest

from tests.support import Scenario, of_type, one

PLAN_REBATE = {"standard": "21.5", "standard_cent": "10", "pro": "5"}
PLAN_COMMISSION = {"standard": "25", "standard_cent": "20", "pro": "8"}


@pytest.fixture
def s() -> Scenario:
    s = Scenario()
    s.plan("P", PLAN_REBATE, PLAN_COMMISSION)
    s.client("c1")
    s.account("std", "standard")
    s.account("cent", "standard_cent")
    s.account("raw", "raw_spread")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    return s


def test_closing_fill_accrues_lots_times_rate(s: Scenario) -> None:
    accrued = one(s.fill("std", "f1", action="close", lots="2"), "rebate.accrued")
    assert (accrued["partner_id"], accrued["rebate"], accrued["commission"]) == ("P", "43", "50")
    assert accrued["client_id"] == "c1" and accrued["fill_id"] == "f1"


def test_opening_fills_accrue_nothing(s: Scenario) -> None:
    assert not of_type(s.fill("std", "f1", action="open", lots="2"), "rebate.accrued")


def test_cent_lots_are_standard_lots(s: Scenario) -> None:
    accrued = one(s.fill("cent", "f1", action="close", lots="50"), "rebate.accrued")  # 0.5 lots
    assert (accrued["rebate"], accrued["commission"]) == ("5", "10")


def test_account_type_missing_from_the_plan_earns_nothing(s: Scenario) -> None:
    assert not of_type(s.fill("raw", "f1", action="close", lots="3"), "rebate.accrued")


def test_unlinked_client_accrues_nothing() -> None:
    s = Scenario()
    s.plan("P", PLAN_REBATE, PLAN_COMMISSION)
    s.client("c1")
    s.account("std")
    assert not of_type(s.fill("std", "f1", action="close"), "rebate.accrued")


def test_a_newer_plan_replaces_the_older_for_fills_after_it(s: Scenario) -> None:
    assert one(s.fill("std", "f1", lots="1"), "rebate.accrued")["rebate"] == "21.5"
    s.plan("P", {"standard": "10"}, {"standard": "12"})
    accrued = one(s.fill("std", "f2", lots="1"), "rebate.accrued")
    assert (accrued["rebate"], accrued["commission"]) == ("10", "12")


def test_a_plan_dated_after_a_fill_does_not_apply_to_it() -> None:
    s = Scenario()
    s.client("c1")
    s.account("std")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    future = s.event("partner.plan", partner_id="P", rebate_per_lot=PLAN_REBATE,
                     commission_per_lot=PLAN_COMMISSION)
    future["ts"] = "2026-11-25T00:00:00Z"
    s.send(future)
    assert not of_type(s.fill("std", "f1"), "rebate.accrued")


def test_a_plan_whose_rebate_exceeds_its_commission_is_rejected() -> None:
    s = Scenario()
    out = s.plan("P", {"standard": "26"}, {"standard": "25"})
    assert one(out, "event.rejected")["reason"] == "invalid_field"


def test_daily_payout_rounds_down_to_cents_and_carries_the_rest(s: Scenario) -> None:
    s.plan("P", {"standard": "0.333333"}, {"standard": "0.333333"})
    for n in range(3):
        s.fill("std", f"f{n}", lots="1")                   # 3 x 0.333333 = 0.999999
    out = s.close_day("2026-11-24")
    payout = one(out, "rebate.payout")
    assert (payout["amount"], payout["carried"], payout["date"]) == ("0.99", "0.009999", "2026-11-24")
    assert (payout["client_id"], payout["partner_id"]) == ("c1", "P")
    commission = one(out, "commission.payout")
    assert (commission["amount"], commission["carried"]) == ("0.99", "0.009999")
    assert "client_id" not in commission
    # the carry joins the next day's accruals: 0.009999 + 0.333333 = 0.343332
    s.advance(days=1)
    s.fill("std", "f9", lots="1")
    payout = one(s.close_day("2026-11-25"), "rebate.payout")
    assert (payout["amount"], payout["carried"]) == ("0.34", "0.003332")


def test_nothing_is_paid_below_one_cent(s: Scenario) -> None:
    s.plan("P", {"standard": "0.004"}, {"standard": "0.009"})
    s.fill("std", "f1", lots="1")
    assert s.close_day("2026-11-24") == []
    s.fill("std", "f2", lots="1")                           # 0.008 / 0.018 accrued in all
    out = s.close_day("2026-11-24")
    assert not of_type(out, "rebate.payout")
    assert one(out, "commission.payout")["amount"] == "0.01"


def test_closing_a_day_pays_that_day_and_before_not_after(s: Scenario) -> None:
    s.fill("std", "f1", lots="1")                           # 2026-11-24
    s.advance(days=1)
    s.fill("std", "f2", lots="2")                           # 2026-11-25
    payout = one(s.close_day("2026-11-24"), "rebate.payout")
    assert payout["amount"] == "21.5"
    payout = one(s.close_day("2026-11-25"), "rebate.payout")
    assert payout["amount"] == "43"


def test_partner_commission_is_aggregated_across_clients(s: Scenario) -> None:
    s.client("c2")
    s.account("std2", "standard", client_id="c2")
    s.emit("partner.linked", client_id="c2", partner_id="P")
    s.fill("std", "f1", lots="1")
    s.fill("std2", "f2", lots="1", client_id="c2")
    out = s.close_day("2026-11-24")
    assert [p["client_id"] for p in of_type(out, "rebate.payout")] == ["c1", "c2"]
    assert one(out, "commission.payout")["amount"] == "50"


def test_min_holding_time_blocks_rebate_and_turnover() -> None:
    from handlers.rules import Rules

    s = Scenario(Rules.from_toml("[rebates]\nmin_hold_seconds = 60"))
    s.plan("P", PLAN_REBATE, PLAN_COMMISSION)
    s.client("c1")
    s.account("std")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    s.deposit("std", "100", 50)
    quick = s.fill("std", "f1", lots="1", spread_cost="10", opened_at=_ago(s, 59))
    assert [o["type"] for o in quick] == ["cashback.accrued"]   # cashback still accrues
    held = s.fill("std", "f2", lots="1", opened_at=_ago(s, 60))
    assert {o["type"] for o in held} == {"bonus.progress", "rebate.accrued"}


def _ago(s: Scenario, seconds: int) -> str:
    from datetime import timedelta, timezone

    # the fill about to be sent is stamped one second after s.now
    return (s.now + timedelta(seconds=1 - seconds)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
