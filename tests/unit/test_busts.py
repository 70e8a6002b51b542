"""Trade busts reverse every effect of a fill, as new entries (programs.md, beyond)."""

from decimal import Decimal

import pytest

from tests.support import Scenario, of_type, one


@pytest.fixture
def s() -> Scenario:
    s = Scenario()
    s.plan("P", {"standard": "10"}, {"standard": "20"})
    s.client("c1")
    s.account("std", "standard")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    return s


def bust(s: Scenario, fill_id: str) -> list[dict]:
    return s.emit("trade.bust", client_id="c1", fill_id=fill_id)


def test_bust_reverses_cashback_coverage_turnover_rebate_and_commission(s: Scenario) -> None:
    s.fill("std", "f0", action="open", spread_cost="100")        # wallet 10
    s.allocate("std", "10")
    s.deposit("std", "100", 50)                                  # 25 lots to trade
    s.fill("std", "f1", action="close", lots="2", spread_cost="8", commission="2")
    # covered 5, charged 5, cashback 0.5; 2 lots of turnover; rebate 20, commission 40
    out = bust(s, "f1")
    reversed_ = one(out, "fill.reversed")
    assert {k: reversed_[k] for k in ("cashback", "covered", "lots", "rebate", "commission")} == {
        "cashback": "0.5", "covered": "5", "lots": "2", "rebate": "20", "commission": "40"}
    assert one(out, "bonus.progress")["lots_traded"] == "0"
    client = s.engine.clients["c1"]
    assert client.wallet.balance == Decimal("0")
    assert client.accounts["std"].allocated == Decimal("10")     # coverage given back
    # the reversal is an entry of its own: nothing is left to pay for the day
    assert not of_type(s.close_day("2026-11-24"), "rebate.payout")


def test_a_wallet_may_go_negative_and_is_repaid_by_later_accruals(s: Scenario) -> None:
    s.fill("std", "f1", spread_cost="100")                       # wallet 10
    s.allocate("std", "10")                                      # wallet 0
    bust(s, "f1")
    assert s.wallet().balance == Decimal("-10")
    out = s.fill("std", "f2", spread_cost="40")   # coverage min(20, 10 allocated) = 10
    assert one(out, "cashback.accrued")["wallet_balance"] == "-7"  # -10 + 10 % of (40 - 10)


def test_a_bust_after_payout_reduces_the_next_payout(s: Scenario) -> None:
    s.fill("std", "f1", lots="1")
    s.fill("std", "f2", lots="1")
    assert one(s.close_day("2026-11-24"), "rebate.payout")["amount"] == "20"
    bust(s, "f1")
    s.fill("std", "f3", lots="3")                                # +30 - 10 = 20
    assert one(s.close_day("2026-11-24"), "rebate.payout")["amount"] == "20"


def test_bust_window(s: Scenario) -> None:
    s.fill("std", "f1", spread_cost="10")
    s.advance(days=7, seconds=1)
    refused = one(bust(s, "f1"), "event.rejected")
    assert refused["reason"] == "bust_window_expired"


def test_bust_inside_the_window(s: Scenario) -> None:
    s.fill("std", "f1", spread_cost="10")
    s.advance(days=6, hours=23)
    assert one(bust(s, "f1"), "fill.reversed")["cashback"] == "1"


@pytest.mark.parametrize("twice", [False, True])
def test_unknown_or_already_busted_fill(s: Scenario, twice: bool) -> None:
    if twice:
        s.fill("std", "f1", spread_cost="10")
        one(bust(s, "f1"), "fill.reversed")
    refused = one(bust(s, "f1" if twice else "never"), "event.rejected")
    assert refused["reason"] == "unknown_fill"


def test_bust_of_a_welcome_fill_reverses_its_profit() -> None:
    s = Scenario()
    s.client("c1")
    s.account("w", "welcome")
    s.account("live")
    s.emit("welcome.claim", client_id="c1", account_id="w")
    s.fill("w", "f1", realized_pnl="40")
    s.deposit("live", "100")
    s.emit("trade.bust", client_id="c1", fill_id="f1")
    out = s.emit("welcome.transfer", client_id="c1", account_id="w", to_account_id="live", amount="1")
    assert one(out, "welcome.transfer_rejected")["reason"] == "insufficient_profit"
