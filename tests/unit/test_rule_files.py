"""The program shapes other brokers run, as rule files in rules/: each loads, changes what its
note says, and pays what its terms say on a generated broker day (the worker gives the same
outputs: tests/integration/test_contract.py)."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from handlers.money import q6
from handlers.rules import Rules
from streams.devtools.sample_day import SampleDay
from streams.offline.replay import replay

RULES = Path(__file__).parents[2] / "rules"


def rules_of(name: str) -> Rules:
    return Rules.from_toml((RULES / f"{name}.toml").read_text())


def replayed(lines: list[bytes], rules: Rules) -> list[dict[str, Any]]:
    sink = io.BytesIO()
    replay(io.BytesIO(b"\n".join(lines) + b"\n"), sink, rules)
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


@pytest.mark.parametrize("path", sorted(RULES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_rule_file_loads_with_a_note_and_changes_the_defaults(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#") and len([line for line in text.splitlines() if line.startswith("#")]) >= 4
    assert Rules.from_toml(text) != Rules.default()


def test_notional_commissions_are_volume_times_rate_per_100k_per_side() -> None:
    lines = list(SampleDay(clients=120, fills=3000, days=2, seed=9, notional=True).lines())
    outputs = replayed(lines, rules_of("notional-commissions"))
    events = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:  # the day's share of broken lines
            continue
        if isinstance(event, dict):
            events.append(event)
    plans = {e["partner_id"]: e for e in events if e.get("type") == "partner.plan"}
    account_types = {e["account_id"]: e["account_type"] for e in events if e.get("type") == "account.opened"}
    fills = {e["fill_id"]: e for e in events if e.get("type") == "trade.fill"}
    accrued = [o for o in outputs if o["type"] == "rebate.accrued"]
    assert len(accrued) > 200
    for o in accrued:
        fill, plan = fills[o["fill_id"]], plans[o["partner_id"]]
        rate = Decimal(plan["commission_per_lot"][account_types[o["account_id"]]])
        rebate = Decimal(plan["rebate_per_lot"].get(account_types[o["account_id"]], "0"))
        volume = Decimal(fill["notional_usd"])
        assert Decimal(o["commission"]) == q6(volume * rate / 100_000), o
        assert Decimal(o["rebate"]) == q6(volume * rebate / 100_000), o
    sides = {fills[o["fill_id"]]["action"] for o in accrued}
    assert sides == {"open", "close"}, "per side: opening fills earn too"
    # the reference rules on the same day: per lot, closing fills only
    by_lot = [o for o in replayed(lines, Rules.default()) if o["type"] == "rebate.accrued"]
    assert {fills[o["fill_id"]]["action"] for o in by_lot} == {"close"}


def test_a_fill_without_notional_earns_nothing_per_notional() -> None:
    lines = list(SampleDay(clients=60, fills=800, seed=4).lines())  # no notional_usd
    outputs = replayed(lines, rules_of("notional-commissions"))
    assert not [o for o in outputs if o["type"] in ("rebate.accrued", "commission.payout", "rebate.payout")]
    assert not [o for o in outputs if o["type"] == "event.rejected" and "notional" in o["error"]]


def test_the_credit_bonus_is_60_percent_of_the_first_deposit_only_up_to_1000() -> None:
    lines = []
    for line in SampleDay(clients=300, fills=2000, days=2, seed=6).lines():
        if b'"type":"deposit"' in line:  # every client that chose a tier chooses the credit bonus
            for tier in (b"50", b"100", b"120"):
                line = line.replace(b'"bonus_percent":' + tier, b'"bonus_percent":60')
        lines.append(line)
    outputs = replayed(lines, rules_of("credit-bonus-first-deposit"))
    events = [orjson.loads(line) for line in lines if b'"type":"deposit"' in line or b'"type":"account.opened"' in line]
    cent = {e["account_id"] for e in events if e["type"] == "account.opened" and e["currency"] == "USC"}
    granted = {o["deposit_id"]: o for o in outputs if o["type"] == "bonus.granted"}
    refused = {o["deposit_id"]: o["reason"] for o in outputs if o["type"] == "bonus.rejected"}
    seen_external: set[str] = set()
    checked = 0
    for event in (e for e in events if e["type"] == "deposit"):
        first = event["source"] == "external" and event["client_id"] not in seen_external
        if event["source"] == "external":
            seen_external.add(event["client_id"])
        if event["bonus_percent"] is None:
            continue
        usd = Decimal(event["amount"]) / (100 if event["account_id"] in cent else 1)
        if event["source"] == "internal":
            assert refused[event["deposit_id"]] == "internal_transfer"
        elif not first:
            assert refused[event["deposit_id"]] == "not_first_deposit", event
        elif usd < 50:
            assert refused[event["deposit_id"]] == "below_minimum", event
        else:
            bonus = granted[event["deposit_id"]]
            assert bonus["percent"] == 60 and bonus["required_lots"] == "0"
            assert Decimal(bonus["amount"]) == min(q6(usd * Decimal("0.6")), Decimal(1000)), (bonus, usd)
            checked += 1
    assert checked > 20 and len(granted) == checked
    assert any(Decimal(b["amount"]) == 1000 for b in granted.values()), "some first deposits reach the cap"
    assert len({b["client_id"] for b in granted.values()}) == len(granted), "one credit bonus per client"
    assert not [o for o in outputs if o["type"] in ("bonus.progress", "bonus.unlocked")], "no turnover to trade"


def test_per_notional_both_sides_earn_and_a_bust_takes_it_back() -> None:
    from tests.support import Scenario, of_type, one

    s = Scenario(rules_of("notional-commissions"))
    s.plan("P", {"standard": "1.5"}, {"standard": "4"})  # per 100,000 USD, per side
    s.client("c1")
    s.account("std")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    opened = one(s.fill("std", "f1", action="open", lots="2", notional_usd="216000"), "rebate.accrued")
    assert (opened["rebate"], opened["commission"]) == ("3.24", "8.64")
    closed = one(s.fill("std", "f2", action="close", lots="2", notional_usd="217500.5"), "rebate.accrued")
    assert (closed["rebate"], closed["commission"]) == ("3.262508", "8.70002")
    assert not of_type(s.fill("std", "f3", action="close", lots="1"), "rebate.accrued")  # no notional_usd
    reversed_ = one(s.emit("trade.bust", client_id="c1", fill_id="f2"), "fill.reversed")
    assert (reversed_["rebate"], reversed_["commission"]) == ("3.262508", "8.70002")
    paid = s.close_day("2026-11-24")
    assert one(paid, "commission.payout")["amount"] == "8.64" and one(paid, "rebate.payout")["amount"] == "3.24"


def test_a_first_deposit_tier_and_a_credit_bonus() -> None:
    from tests.support import Scenario, one

    s = Scenario(rules_of("credit-bonus-first-deposit"))
    s.client("c1")
    s.account("std")
    s.account("pro", "pro")
    s.deposit("std", "100", source="internal", bonus_percent=60)        # not new money: not the first
    first = one(s.deposit("pro", "2000", bonus_percent=60), "bonus.granted")
    assert (first["amount"], first["required_lots"], first["percent"]) == ("1000", "0", 60)  # the cap
    assert one(s.deposit("std", "100", bonus_percent=60), "bonus.rejected")["reason"] == "not_first_deposit"
    assert one(s.deposit("std", "100", bonus_percent=120), "bonus.rejected")["reason"] == "ineligible_account"
    assert not [o for o in s.fill("pro", "f1", lots="500") if o["type"].startswith("bonus.")]  # no turnover


@pytest.mark.parametrize(("text", "message"), [
    ('[deposit_bonus.tiers.60]\naccount_types = ["pro"]\nmin_deposit_usd = "1"\nfirst_deposit = true\n',
     "unknown rules key `deposit_bonus.tiers.60.first_deposit`"),
    ('[deposit_bonus.tiers.2000]\naccount_types = ["pro"]\nmin_deposit_usd = "1"\n', "at most 1000 percent"),
    ('[deposit_bonus.tiers.60]\naccount_types = ["pro"]\nmin_deposit_usd = "1"\nturnover = "no"\n',
     "`deposit_bonus.tiers.60.turnover` must be true or false"),
    ('[deposit_bonus.tiers.50]\nturnover = 1\n', "must be true or false"),
    ('[rebates]\nbasis = "volume"\n', "`rebates.basis` must be one of 'lots', 'notional'"),
])
def test_bad_tier_and_basis_settings_are_named(text: str, message: str) -> None:
    from handlers.rules import RulesError

    with pytest.raises(RulesError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        Rules.from_toml(text)


def test_a_tier_not_offered_is_ineligible_and_a_percent_out_of_range_is_invalid() -> None:
    from tests.support import Scenario, one

    s = Scenario()
    s.client("c1")
    s.account("std")
    assert one(s.deposit("std", "500", bonus_percent=75), "bonus.rejected")["reason"] == "ineligible_account"
    assert one(s.deposit("std", "500", bonus_percent=1001), "event.rejected")["reason"] == "invalid_field"
    assert one(s.emit("deposit", client_id="c1", account_id="std", deposit_id="dx", amount="500", source="external",
                      bonus_percent="0"), "event.rejected")["reason"] == "invalid_field"


def test_a_convertible_bonus_is_released_per_lot_at_each_close() -> None:
    from tests.support import Scenario, of_type, one

    s = Scenario(rules_of("convertible-bonus"))
    s.client("c1")
    s.account("std")
    granted = one(s.deposit("std", "200", bonus_percent=50), "bonus.granted")  # 100 USD, 50 lots at 2 USD
    assert (granted["amount"], granted["required_lots"]) == ("100", "50")
    opened_at = s.ts()
    s.advance(minutes=6)
    s.fill("std", "f1", lots="10.005", opened_at=opened_at)              # 20.01 USD
    s.fill("std", "f2", lots="3", opened_at=s.ts())                      # held 1 s: not counted
    s.fill("std", "f3", lots="0.0025", opened_at=opened_at)              # 0.005: carried
    released = one(s.close_day("2026-11-24"), "bonus.released")
    assert (released["amount"], released["carried"], released["bonus_id"]) == ("20.01", "0.005", granted["bonus_id"])
    assert released["date"] == "2026-11-24" and released["account_id"] == "std"
    s.advance(days=1)
    s.emit("trade.bust", client_id="c1", fill_id="f1")                   # takes back 20.01
    s.fill("std", "f4", lots="15", opened_at=opened_at)                  # 30
    released = one(s.close_day("2026-11-25"), "bonus.released")
    assert (released["amount"], released["carried"]) == ("9.99", "0.005")  # 0.005 - 20.01 + 30
    s.advance(days=1)
    s.fill("std", "f5", lots="500", opened_at=opened_at)                 # past the rest: up to 100 in all
    closed = s.close_day("2026-11-26")
    assert (one(closed, "bonus.released")["amount"], one(closed, "bonus.released")["carried"]) == ("70", "0")
    assert not of_type(s.outputs, "bonus.unlocked"), "released, never unlocked whole"
    released_all = sum(Decimal(o["amount"]) for o in of_type(s.outputs, "bonus.released"))
    assert released_all == Decimal("100"), "the whole bonus, once every lot is traded"
    assert not of_type(s.fill("std", "f6", lots="5", opened_at=opened_at), "bonus.progress")  # nothing left


def test_convertible_bonuses_on_a_generated_day_release_two_dollars_a_lot() -> None:
    lines = list(SampleDay(clients=300, fills=4000, days=3, seed=8).lines())
    outputs = replayed(lines, rules_of("convertible-bonus"))
    granted = {o["bonus_id"]: Decimal(o["amount"]) for o in outputs if o["type"] == "bonus.granted"}
    lots: dict[str, Decimal] = {}
    for o in outputs:
        if o["type"] == "bonus.progress":
            lots[o["bonus_id"]] = Decimal(o["lots_traded"])  # the last one: where it stands
    released: dict[str, Decimal] = {}
    carried: dict[str, Decimal] = {}
    for o in outputs:
        if o["type"] == "bonus.released":
            released[o["bonus_id"]] = released.get(o["bonus_id"], Decimal(0)) + Decimal(o["amount"])
            carried[o["bonus_id"]] = Decimal(o["carried"])
    assert len(released) > 10
    assert not [o for o in outputs if o["type"] == "bonus.unlocked"]
    for bonus_id, paid in released.items():
        assert paid <= granted[bonus_id]
        # every close paid what the lots released by then, to the cent; the last close saw them all
        # (the generated day's closes come after its fills), so paid + carried = 2 USD a lot
        assert paid + carried[bonus_id] == q6(lots[bonus_id] * 2), bonus_id
