"""Issue 25, property: with random versions of the terms (some retroactive, some taking effect
between others) and random inputs, the engine's outputs equal those of a reference that knows
nothing of versions: an engine whose rules file, before each input, is set to the file of the
version in force at that input's ts (written as TOML, read by ``Rules.from_toml``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.engine import Engine
from handlers.rules import Rules
from schemas.codec import encode_output

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
RATES = ("0.05", "0.10", "0.12", "0.2")
SHARES = ("0.25", "0.5", "1")


def ts(hours: int) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the events, in ts order, hour by hour; the versions published among them)."""
    events: list[dict[str, Any]] = [
        {"type": "client.registered", "id": "r", "ts": ts(0), "client_id": "c", "country": "DE"},
        {"type": "client.verified", "id": "v", "ts": ts(0), "client_id": "c", "id_document": True, "phone": True,
         "identity_hash": "h"},
        {"type": "account.opened", "id": "o", "ts": ts(0), "client_id": "c", "account_id": "a",
         "account_type": "standard", "currency": "USD"},
        {"type": "account.validated", "id": "val", "ts": ts(0), "client_id": "c", "account_id": "a"},
    ]
    versions = []
    for hour in range(1, draw(st.integers(5, 40))):
        kind = draw(st.sampled_from(["fill", "fill", "fill", "terms", "allocate"]))
        if kind == "fill":
            events.append({"type": "trade.fill", "id": f"f{hour}", "ts": ts(hour), "client_id": "c", "account_id": "a",
                           "fill_id": f"F{hour}", "symbol": "EURUSD", "action": "open", "lots": "1",
                           "spread_cost": draw(st.sampled_from(["3", "7.5", "10"])), "commission": "1"})
        elif kind == "allocate":
            events.append({"type": "wallet.allocate", "id": f"w{hour}", "ts": ts(hour), "client_id": "c",
                           "account_id": "a", "amount": "0.5"})
        else:
            rules: dict[str, Any] = {}
            if draw(st.booleans()):
                rules["cashback"] = {"rate": draw(st.sampled_from(RATES))}
            if draw(st.booleans()):
                rules.setdefault("cashback", {})["coverage_share"] = draw(st.sampled_from(SHARES))
            version = {"type": "program.terms", "id": f"t{hour}", "ts": ts(hour), "version": f"v{hour}",
                       "effective": ts(hour + draw(st.integers(-3, 12))), "rules": rules}
            events.append(version)
            versions.append(version)
    return events, versions


def toml(rules: dict[str, Any]) -> str:
    return "".join(f"[{section}]\n" + "".join(f'{key} = "{value}"\n' for key, value in table.items())
                   for section, table in rules.items())


def reference(events: list[dict[str, Any]], versions: list[dict[str, Any]]) -> tuple[list[bytes], set[str]]:
    """Versions accepted when they take effect after their ts at an instant no earlier one has;
    each input under the file of the version in force at its ts."""
    timeline: dict[str, Rules] = {}
    accepted = set()
    for version in versions:
        if version["effective"] > version["ts"] and version["effective"] not in timeline:
            timeline[version["effective"]] = Rules.from_toml(toml(version["rules"]))
            accepted.add(version["version"])
    engine = Engine()
    out = []
    for n, event in enumerate(events, 1):
        if event["type"] == "program.terms":
            continue
        in_force = [when for when in timeline if when <= event["ts"]]
        engine.partition.rules = timeline[max(in_force)] if in_force else Rules.default()
        out += [encode_output(o) for o in engine.process(orjson.dumps(event), {"line": n})]
    return out, accepted


@settings(max_examples=150, deadline=None)
@given(histories())
def test_each_input_is_applied_under_the_version_in_force_at_its_ts(history: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    events, versions = history
    engine = Engine()
    got = []
    for n, event in enumerate(events, 1):
        got += [encode_output(o) for o in engine.process(orjson.dumps(event), {"line": n})
                if o.type not in ("terms.accepted", "event.rejected") or event["type"] != "program.terms"]
    expected, accepted = reference(events, versions)
    assert got == expected
    assert {v.version for v in engine.shared.terms} == accepted
