"""Welcome Bonus: eligibility, one per person, profit transfer (programs.md section 2)."""

import pytest

from handlers.rules import Rules
from tests.support import Scenario


def claimant(rules: Rules | None = None, **client: object) -> Scenario:
    s = Scenario(rules)
    s.client("c1", **client)  # type: ignore[arg-type]
    s.account("w", "welcome", conditions="standard")
    s.account("live", "standard")
    return s


def claim(s: Scenario, account: str = "w", client_id: str = "c1") -> dict:
    out = s.emit("welcome.claim", client_id=client_id, account_id=account)
    assert len(out) == 1
    return out[0]


def test_claim_credits_thirty_usd() -> None:
    s = claimant()
    granted = claim(s)
    assert granted["type"] == "welcome.granted"
    assert (granted["account_id"], granted["amount"]) == ("w", "30")


def test_pro_conditions_are_eligible() -> None:
    s = Scenario()
    s.client("c1")
    s.account("w", "welcome", conditions="pro")
    assert claim(s)["type"] == "welcome.granted"


@pytest.mark.parametrize(("arrange", "reason"), [
    ("unverified", "not_verified"),
    ("excluded_country", "country_excluded"),
    ("live_account", "ineligible_account"),
    ("pro_only_rules", "ineligible_account"),
    ("claimed_before", "already_claimed"),
    ("unknown_account", "unknown_account"),
])
def test_claim_refusals(arrange: str, reason: str) -> None:
    rules = None
    if arrange == "excluded_country":
        rules = Rules.from_toml('[welcome]\nexcluded_countries = ["DE"]')
    if arrange == "pro_only_rules":
        rules = Rules.from_toml('[welcome]\neligible_conditions = ["pro"]')
    s = claimant(rules, verified=arrange != "unverified")
    if arrange == "claimed_before":
        assert claim(s)["type"] == "welcome.granted"
    account = {"live_account": "live", "unknown_account": "nope"}.get(arrange, "w")
    refused = claim(s, account)
    assert (refused["type"], refused["reason"]) == ("welcome.rejected", reason)


def test_one_bonus_per_person_not_per_sign_up() -> None:
    s = Scenario()
    s.client("c1", identity="same-person")
    s.account("w1", "welcome", client_id="c1")
    s.client("c2", identity="same-person")
    s.account("w2", "welcome", client_id="c2")
    assert claim(s, "w1", "c1")["type"] == "welcome.granted"
    refused = claim(s, "w2", "c2")
    assert (refused["type"], refused["reason"]) == ("welcome.rejected", "duplicate_identity")


def test_a_refused_claim_does_not_reserve_the_identity() -> None:
    s = Scenario()
    s.client("c1", identity="p", country="DE")
    s.account("w1", "welcome", client_id="c1", conditions="standard")
    s.emit("account.opened", client_id="c1", account_id="live1", account_type="standard", currency="USD")
    assert claim(s, "live1", "c1")["reason"] == "ineligible_account"
    s.client("c2", identity="p")
    s.account("w2", "welcome", client_id="c2")
    assert claim(s, "w2", "c2")["type"] == "welcome.granted"


def transfer(s: Scenario, amount: str, to: str = "live", source: str = "w") -> dict:
    out = s.emit("welcome.transfer", client_id="c1", account_id=source, to_account_id=to, amount=amount)
    assert len(out) == 1
    return out[0]


def profitable(profit: str = "50") -> Scenario:
    s = claimant()
    claim(s)
    s.fill("w", "wf1", action="open")
    s.fill("w", "wf2", action="close", realized_pnl=profit)
    return s


def test_profit_transfer_after_a_fresh_deposit() -> None:
    s = profitable("50")
    s.deposit("live", "100")
    approved = transfer(s, "20")
    assert approved["type"] == "welcome.transfer_approved"
    assert (approved["to_account_id"], approved["amount"]) == ("live", "20")
    # only profit not yet transferred can go: 30 left
    assert transfer(s, "30.01")["reason"] == "insufficient_profit"
    assert transfer(s, "30")["type"] == "welcome.transfer_approved"


def test_losses_reduce_the_transferable_profit() -> None:
    s = profitable("50")
    s.fill("w", "wf3", action="close", realized_pnl="-45")
    s.deposit("live", "100")
    assert transfer(s, "5.01")["reason"] == "insufficient_profit"
    assert transfer(s, "5")["type"] == "welcome.transfer_approved"


def test_the_bonus_itself_is_never_transferable() -> None:
    s = claimant()
    claim(s)
    s.deposit("live", "500")
    assert transfer(s, "30")["reason"] == "insufficient_profit"


@pytest.mark.parametrize(("deposit", "reason"), [
    ({"amount": "99.99"}, "no_qualifying_deposit"),
    ({"amount": "100", "source": "internal"}, "no_qualifying_deposit"),
    (None, "no_qualifying_deposit"),
])
def test_transfer_needs_an_external_deposit_of_the_minimum(deposit: dict | None, reason: str) -> None:
    s = profitable()
    if deposit:
        s.deposit("live", **deposit)
    assert transfer(s, "10")["reason"] == reason


def test_deposits_are_not_summed_for_the_transfer_minimum() -> None:
    s = profitable()
    s.deposit("live", "60")
    s.deposit("live", "60")
    assert transfer(s, "10")["reason"] == "no_qualifying_deposit"


def test_the_deposit_account_must_be_validated_by_the_time_of_the_transfer() -> None:
    s = profitable()
    s.account("late", "pro", validated=False)
    s.deposit("late", "150")
    assert transfer(s, "10")["reason"] == "no_qualifying_deposit"
    s.emit("account.validated", client_id="c1", account_id="late")
    assert transfer(s, "10")["type"] == "welcome.transfer_approved"


@pytest.mark.parametrize(("amount", "to", "source", "reason"), [
    ("0", "live", "w", "invalid_amount"),
    ("-5", "live", "w", "invalid_amount"),
    ("5", "nope", "w", "unknown_account"),
    ("5", "w", "w", "unknown_account"),
    ("5", "live", "live", "unknown_account"),
])
def test_transfer_refusals(amount: str, to: str, source: str, reason: str) -> None:
    s = profitable()
    s.deposit("live", "100")
    refused = transfer(s, amount, to, source)
    assert (refused["type"], refused["reason"]) == ("welcome.transfer_rejected", reason)
