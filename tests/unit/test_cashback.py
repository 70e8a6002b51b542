"""Loyalty cashback, JM USD coverage and allocation (programs.md section 1)."""

from decimal import Decimal

import pytest

from tests.support import Scenario, of_type, one


@pytest.fixture
def s() -> Scenario:
    s = Scenario()
    s.client("c1")
    s.account("a1", "standard")
    return s


def test_ten_percent_of_cost_is_credited(s: Scenario) -> None:
    out = s.fill("a1", "f1", action="open", spread_cost="7", commission="3")
    credit = one(out, "cashback.accrued")
    assert credit["amount"] == "1"           # 10 % of 7 + 3
    assert credit["wallet_balance"] == "1"
    assert credit["cause_id"] == "e" + str(s.count) and credit["fill_id"] == "f1"
    assert not of_type(out, "coverage.applied")  # nothing allocated: no coverage


def test_opening_and_closing_fills_both_earn(s: Scenario) -> None:
    s.fill("a1", "f1", action="open", spread_cost="4")
    out = s.fill("a1", "f2", action="close", spread_cost="6")
    assert one(out, "cashback.accrued")["wallet_balance"] == "1"


def test_cent_account_costs_are_converted_to_usd() -> None:
    s = Scenario()
    s.client("c1")
    s.account("cent", "standard_cent")          # USC
    out = s.fill("cent", "f1", spread_cost="850", commission="150")  # 1000 USC = 10 USD
    assert one(out, "cashback.accrued")["amount"] == "1"


def test_cashback_is_quantised_half_even_to_micro_usd(s: Scenario) -> None:
    # 10 % of 0.0000125 = 0.00000125 -> 0.000001 (half-even rounds the 2 down)
    s2 = Scenario()
    s2.client("c1")
    s2.account("cent", "standard_cent")
    out = s2.fill("cent", "f1", spread_cost="0.00125")   # USC -> 0.0000125 USD
    assert one(out, "cashback.accrued")["amount"] == "0.000001"
    # 10 % of 0.000035 = 0.0000035 -> 0.000004 (half-even rounds the 3 up to 4)
    out = s.fill("a1", "f9", spread_cost="0.000035")
    assert one(out, "cashback.accrued")["amount"] == "0.000004"


def test_zero_cost_fill_emits_nothing(s: Scenario) -> None:
    assert s.fill("a1", "f1", spread_cost="0", commission="0") == []


def test_welcome_account_fills_earn_no_cashback(s: Scenario) -> None:
    s.account("w", "welcome")
    assert s.fill("w", "f1", spread_cost="10") == []


def test_unverified_client_still_accrues() -> None:
    s = Scenario()
    s.client("c1", verified=False)
    s.account("a1")
    assert one(s.fill("a1", "f1", spread_cost="10"), "cashback.accrued")["amount"] == "1"


def test_allocation_moves_jm_usd_from_wallet_to_account(s: Scenario) -> None:
    s.fill("a1", "f1", spread_cost="100")             # wallet 10
    out = s.allocate("a1", "4")
    moved = one(out, "wallet.allocated")
    assert (moved["amount"], moved["wallet_balance"], moved["allocated"]) == ("4", "6", "4")


def test_coverage_is_capped_at_half_the_cost(s: Scenario) -> None:
    s.fill("a1", "f1", spread_cost="1000")            # wallet 100
    s.allocate("a1", "100")
    out = s.fill("a1", "f2", spread_cost="8", commission="2")   # cost 10
    cover = one(out, "coverage.applied")
    assert (cover["cost"], cover["covered"], cover["charged"], cover["allocated_left"]) == ("10", "5", "5", "95")
    # cashback on what the client paid: 10 % of 5
    assert one(out, "cashback.accrued")["amount"] == "0.5"


def test_coverage_is_limited_by_what_is_allocated_and_then_runs_out(s: Scenario) -> None:
    s.fill("a1", "f1", spread_cost="10")              # wallet 1
    s.allocate("a1", "1")
    cover = one(s.fill("a1", "f2", spread_cost="10"), "coverage.applied")
    assert (cover["covered"], cover["charged"], cover["allocated_left"]) == ("1", "9", "0")
    assert not of_type(s.fill("a1", "f3", spread_cost="10"), "coverage.applied")


def test_coverage_applies_only_to_the_account_allocated_to(s: Scenario) -> None:
    s.account("a2", "pro")
    s.fill("a1", "f1", spread_cost="100")
    s.allocate("a1", "10")
    assert not of_type(s.fill("a2", "f2", spread_cost="10"), "coverage.applied")


def test_allocation_to_a_cent_account_is_in_usc_and_shown_in_usd() -> None:
    s = Scenario()
    s.client("c1")
    s.account("a1")
    s.account("cent", "standard_cent")
    s.fill("a1", "f1", spread_cost="100")             # wallet 10
    moved = one(s.allocate("cent", "500"), "wallet.allocated")   # 500 USC = 5 USD
    assert (moved["amount"], moved["wallet_balance"], moved["allocated"]) == ("5", "5", "5")


@pytest.mark.parametrize(("setup", "account", "amount", "reason"), [
    ("unverified", "a1", "1", "not_verified"),
    ("phone_missing", "a1", "1", "not_verified"),
    ("unvalidated", "a2", "1", "account_not_validated"),
    ("", "nope", "1", "unknown_account"),
    ("", "w", "1", "ineligible_account"),
    ("", "a1", "0", "invalid_amount"),
    ("", "a1", "-1", "invalid_amount"),
    ("", "a1", "10.000001", "insufficient_balance"),
])
def test_allocation_refusals(setup: str, account: str, amount: str, reason: str) -> None:
    s = Scenario()
    s.client("c1", verified=setup not in ("unverified", "phone_missing"))
    if setup == "phone_missing":
        s.emit("client.verified", client_id="c1", id_document=True, phone=False, identity_hash="x")
    s.account("a1")
    s.account("a2", validated=False)
    s.account("w", "welcome")
    s.fill("a1", "f1", spread_cost="100")             # wallet 10
    out = s.allocate(account, amount)
    refused = one(out, "wallet.allocation_rejected")
    assert refused["reason"] == reason
    assert s.wallet().balance == Decimal("10")        # nothing moved


def test_wallet_conservation_holds_through_a_life(s: Scenario) -> None:
    s.fill("a1", "f1", spread_cost="100")
    s.allocate("a1", "6")
    s.fill("a1", "f2", spread_cost="4")
    w = s.wallet()
    allocated = sum(a.allocated for a in s.engine.clients["c1"].accounts.values())
    assert w.accrued - w.reversed == w.balance + allocated + w.covered
    assert (w.accrued, w.covered, allocated) == (Decimal("10.2"), Decimal("2"), Decimal("4"))


def test_coverage_rounds_down_so_it_never_passes_half_the_cost(s: Scenario) -> None:
    s.fill("a1", "f1", spread_cost="100")
    s.allocate("a1", "1")
    cover = one(s.fill("a1", "f2", spread_cost="0.000035"), "coverage.applied")
    assert cover["covered"] == "0.000017"        # 50 % is 0.0000175; half-even would give 0.000018
    assert cover["charged"] == "0.000018"
