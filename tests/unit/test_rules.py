"""The rules file: programs.md defaults, key-by-key overrides, clear refusals."""

from decimal import Decimal

import pytest

from handlers.rules import Rules, RulesError


def test_defaults_are_the_numbers_of_programs_md() -> None:
    r = Rules.default()
    assert (r.cashback_rate, r.coverage_share) == (Decimal("0.10"), Decimal("0.50"))
    assert r.welcome_amount_usd == 30 and r.welcome_transfer_min_deposit_usd == 100
    assert r.welcome_excluded_countries == frozenset()
    assert (r.bonus_usd_per_lot, r.bonus_cap_usd) == (2, 40000)
    assert {p: (sorted(t.account_types), t.min_deposit_usd) for p, t in r.bonus_tiers.items()} == {
        50: (["pro", "standard", "standard_cent"], 100),
        100: (["pro", "standard"], 100),
        120: (["pro", "standard"], 500),
    }
    assert r.min_hold_us == 0
    assert r.bust_window_us == 7 * 86_400 * 10**6


def test_an_override_changes_only_the_keys_it_names() -> None:
    r = Rules.from_toml('[cashback]\nrate = "0.12"\n[busts]\nwindow_days = 3')
    assert r.cashback_rate == Decimal("0.12")
    assert r.coverage_share == Decimal("0.50")
    assert r.bust_window_us == 3 * 86_400 * 10**6
    assert r.bonus_tiers == Rules.default().bonus_tiers


@pytest.mark.parametrize(("text", "message"), [
    ("[cashback]\nrate = 0.1", "decimal string"),
    ("[cashbak]\nrate = \"0.1\"", "unknown rules key `cashbak`"),
    ("[cashback]\nratee = \"0.1\"", "unknown rules key `cashback.ratee`"),
    ("[busts]\nwindow_days = \"7\"", "integer"),
    ("[deposit_bonus.tiers.120]\naccount_types = [\"welcome\"]", "unknown account types"),
    ("[cashback]\nrate = \"1.5\"", "at most 1"),
    ("not toml [", "not valid TOML"),
])
def test_bad_rules_are_refused_with_the_key_named(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message.replace("[", r"\[")):
        Rules.from_toml(text)

