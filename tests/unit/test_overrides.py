"""Multi-level partners (programs.md section 4, "Master partners"): a master partner earns a
share of each sub-partner's commission per level, on top of it, paid daily with commissions,
rounded down to cents with carry, reversed by busts; a cycle is refused `partner_cycle`."""

from decimal import Decimal
from typing import Any

import orjson
import pytest

from handlers.rules import Rules, RulesError
from tests.support import Scenario, of_type, one

SHARES = '[partners]\noverride_shares = ["0.20", "0.05"]\n'


def scenario(store: str = "offline", shares: str = SHARES) -> Scenario:
    """Partner P (commission 25 per standard lot) under M1, M1 under M2, M2 under M3; client c1
    brought by P."""
    s = Scenario(Rules.from_toml(shares), store=store)
    s.plan("P", {"standard": "5"}, {"standard": "25"})
    s.emit("partner.parent", partner_id="P", parent_id="M1")
    s.emit("partner.parent", partner_id="M1", parent_id="M2")
    s.emit("partner.parent", partner_id="M2", parent_id="M3")
    s.client("c1")
    s.account("std", "standard")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    return s


def payouts(outputs: list[dict[str, Any]], kind: str) -> dict[str, tuple[str, str]]:
    return {o["partner_id"]: (o["amount"], o["carried"]) for o in of_type(outputs, kind)}


@pytest.mark.parametrize("store", ["offline", "worker"])
def test_each_level_earns_its_share_on_top_of_the_commission(store: str) -> None:
    s = scenario(store)
    s.fill("std", "f1", lots="2")  # commission 50
    closed = s.close_day("2026-11-24")
    assert payouts(closed, "commission.payout") == {"P": ("50", "0")}  # never deducted
    # level 1: 20 % of 50; level 2: 5 %; M3 is level 3, beyond the shares
    assert payouts(closed, "override.payout") == {"M1": ("10", "0"), "M2": ("2.5", "0")}
    payout = of_type(closed, "override.payout")[0]
    assert payout["id"] == f"override.payout:{payout['cause_id']}:M1" and "client_id" not in payout


def test_overrides_are_rounded_down_to_cents_with_the_rest_carried() -> None:
    s = scenario()
    s.fill("std", "f1", lots="0.01")  # commission 0.25: M1 0.05, M2 0.0125
    closed = s.close_day("2026-11-24")
    assert payouts(closed, "override.payout") == {"M1": ("0.05", "0"), "M2": ("0.01", "0.0025")}
    s.advance(days=1)
    s.fill("std", "f2", lots="0.03")  # M2 0.0375 + 0.0025 carried = 0.04
    assert payouts(s.close_day("2026-11-25"), "override.payout")["M2"] == ("0.04", "0")


def test_a_bust_takes_the_overrides_back_with_the_commission() -> None:
    s = scenario()
    s.fill("std", "f1", lots="2")
    s.close_day("2026-11-24")
    s.advance(days=1)
    s.fill("std", "f2", lots="4")  # commission 100: M1 20, M2 5
    s.emit("trade.bust", client_id="c1", fill_id="f1")  # takes back 50: M1 10, M2 2.5
    closed = s.close_day("2026-11-25")
    assert payouts(closed, "commission.payout") == {"P": ("50", "0")}
    assert payouts(closed, "override.payout") == {"M1": ("10", "0"), "M2": ("2.5", "0")}


def test_a_bust_uses_the_hierarchy_of_its_fill() -> None:
    """M1 leaves between the fill and its bust: the bust takes back from M1 what the fill gave it."""
    s = scenario()
    s.fill("std", "f1", lots="2")
    s.emit("partner.parent", partner_id="P", parent_id=None)
    s.emit("trade.bust", client_id="c1", fill_id="f1")
    assert of_type(s.close_day("2026-11-24"), "override.payout") == []  # 10 - 10, 2.5 - 2.5: nothing due


def test_the_hierarchy_applies_by_the_fills_ts() -> None:
    s = scenario()
    s.fill("std", "f1", lots="1")  # under M1 and M2
    s.emit("partner.parent", partner_id="P", parent_id="M3")
    s.fill("std", "f2", lots="1")  # under M3 (and nothing above it)
    closed = s.close_day("2026-11-24")
    assert payouts(closed, "override.payout") == {"M1": ("5", "0"), "M2": ("1.25", "0"), "M3": ("5", "0")}


@pytest.mark.parametrize("store", ["offline", "worker"])
def test_a_cycle_is_refused_and_the_refusal_is_final(store: str) -> None:
    s = scenario(store)
    refused = one(s.emit("partner.parent", partner_id="M2", parent_id="P"), "event.rejected")
    assert refused["reason"] == "partner_cycle" and "'P' is already below partner 'M2'" in refused["error"]
    # the hierarchy is as it was
    s.fill("std", "f1", lots="2")
    assert payouts(s.close_day("2026-11-24"), "override.payout") == {"M1": ("10", "0"), "M2": ("2.5", "0")}
    # the same id again is a duplicate even once it would be accepted
    s.emit("partner.parent", partner_id="P", parent_id=None)
    again = s.send(orjson.loads(refused["raw"]))
    assert one(again, "event.rejected")["reason"] == "duplicate"


def test_own_parent_is_invalid() -> None:
    s = scenario()
    refused = one(s.emit("partner.parent", partner_id="P", parent_id="P"), "event.rejected")
    assert refused["reason"] == "invalid_field" and "own parent" in refused["error"]


def test_without_override_shares_nobody_earns_an_override() -> None:
    s = scenario(shares="")
    s.fill("std", "f1", lots="2")
    closed = s.close_day("2026-11-24")
    assert of_type(closed, "override.payout") == [] and payouts(closed, "commission.payout") == {"P": ("50", "0")}


def test_override_shares_are_checked() -> None:
    with pytest.raises(RulesError, match="decimal strings"):
        Rules.from_toml('[partners]\noverride_shares = [0.2]\n')
    with pytest.raises(RulesError, match="at most 1"):
        Rules.from_toml('[partners]\noverride_shares = ["0.8", "0.3"]\n')
    assert Rules.from_toml(SHARES).override_shares == (Decimal("0.20"), Decimal("0.05"))
