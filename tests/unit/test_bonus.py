"""Deposit Bonus: tiers, the 40,000 USD cap, FIFO turnover (programs.md section 3)."""

import pytest

from handlers.rules import Rules
from tests.support import Scenario, of_type, one


@pytest.fixture
def s() -> Scenario:
    s = Scenario()
    s.client("c1")
    s.account("std", "standard")
    s.account("pro", "pro")
    s.account("cent", "standard_cent")
    s.account("raw", "raw_spread")
    s.account("w", "welcome")
    return s


def test_120_percent_of_500_is_600_needing_300_lots(s: Scenario) -> None:
    granted = one(s.deposit("std", "500", 120, deposit_id="d-1"), "bonus.granted")
    assert (granted["percent"], granted["amount"], granted["required_lots"]) == (120, "600", "300")
    assert (granted["deposit_id"], granted["account_id"]) == ("d-1", "std")


@pytest.mark.parametrize(("account", "amount", "percent", "bonus", "lots"), [
    ("std", "100", 50, "50", "25"),
    ("pro", "250", 100, "250", "125"),
    ("cent", "10000", 50, "50", "25"),       # 10,000 USC = 100 USD: the 50 % minimum exactly
    ("std", "123.45", 100, "123.45", "61.725"),
])
def test_tiers(s: Scenario, account: str, amount: str, percent: int, bonus: str, lots: str) -> None:
    granted = one(s.deposit(account, amount, percent), "bonus.granted")
    assert (granted["amount"], granted["required_lots"]) == (bonus, lots)


@pytest.mark.parametrize(("account", "amount", "percent", "source", "reason"), [
    ("std", "499.99", 120, "external", "below_minimum"),
    ("std", "99.99", 50, "external", "below_minimum"),
    ("cent", "9999", 50, "external", "below_minimum"),      # 99.99 USD
    ("cent", "50000", 100, "external", "ineligible_account"),
    ("raw", "1000", 50, "external", "ineligible_account"),
    ("w", "1000", 50, "external", "ineligible_account"),
    ("std", "1000", 100, "internal", "internal_transfer"),
    ("nope", "1000", 100, "external", "unknown_account"),
])
def test_refusals(s: Scenario, account: str, amount: str, percent: int, source: str, reason: str) -> None:
    refused = one(s.deposit(account, amount, percent, source=source), "bonus.rejected")
    assert refused["reason"] == reason


def test_a_deposit_without_a_bonus_choice_emits_nothing(s: Scenario) -> None:
    assert s.deposit("std", "1000") == []


def test_cap_of_40000_across_accounts_and_tiers(s: Scenario) -> None:
    assert one(s.deposit("std", "20000", 120), "bonus.granted")["amount"] == "24000"
    assert one(s.deposit("pro", "10000", 100), "bonus.granted")["amount"] == "10000"
    cut = one(s.deposit("cent", "2000000", 50), "bonus.granted")   # 20,000 USD at 50 % = 10,000
    assert (cut["amount"], cut["required_lots"]) == ("6000", "3000")  # cut to what is left
    refused = one(s.deposit("std", "1000", 100), "bonus.rejected")
    assert refused["reason"] == "cap_reached"


def test_turnover_counts_closing_fills_only_and_unlocks(s: Scenario) -> None:
    bonus = one(s.deposit("std", "100", 50), "bonus.granted")    # 50 USD, 25 lots
    assert s.fill("std", "o1", action="open", lots="20") == []
    progress = one(s.fill("std", "c1", action="close", lots="20"), "bonus.progress")
    assert (progress["bonus_id"], progress["lots_traded"], progress["required_lots"]) == (bonus["bonus_id"], "20", "25")
    out = s.fill("std", "c2", action="close", lots="5")
    assert one(out, "bonus.progress")["lots_traded"] == "25"
    unlocked = one(out, "bonus.unlocked")
    assert (unlocked["bonus_id"], unlocked["amount"]) == (bonus["bonus_id"], "50")
    assert s.fill("std", "c3", action="close", lots="5") == []   # nothing left to count towards


def test_several_bonuses_fill_up_oldest_first(s: Scenario) -> None:
    first = one(s.deposit("std", "100", 50), "bonus.granted")     # 25 lots
    second = one(s.deposit("std", "100", 100), "bonus.granted")   # 50 lots
    out = s.fill("std", "c1", action="close", lots="30")
    progress = of_type(out, "bonus.progress")
    assert [(p["bonus_id"], p["lots_traded"]) for p in progress] == [(first["bonus_id"], "25"), (second["bonus_id"], "5")]
    assert [u["bonus_id"] for u in of_type(out, "bonus.unlocked")] == [first["bonus_id"]]


def test_turnover_is_per_account(s: Scenario) -> None:
    s.deposit("std", "100", 50)
    assert not of_type(s.fill("pro", "c1", action="close", lots="30"), "bonus.progress")


def test_cent_account_lots_count_as_standard_lots(s: Scenario) -> None:
    s.deposit("cent", "10000", 50)                                 # 50 USD -> 25 standard lots
    progress = one(s.fill("cent", "c1", action="close", lots="150"), "bonus.progress")
    assert progress["lots_traded"] == "1.5"


def test_usd_per_lot_is_a_rule() -> None:
    s = Scenario(Rules.from_toml('[deposit_bonus]\nusd_per_lot = "4"'))
    s.client("c1")
    s.account("std")
    assert one(s.deposit("std", "500", 120), "bonus.granted")["required_lots"] == "150"
