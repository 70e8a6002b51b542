"""Program terms over time (docs/events.md, "Terms over time"; docs/programs.md, "Changing the
terms"): every input under the version in force at its ts, and the refusals that keep paid
rewards as they were paid."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from handlers.engine import Engine
from handlers.rules import Rules
from schemas.codec import encode_output
from streams.worker import wire
from streams.worker.ledger import PartitionLedger, Record
from streams.worker.ports import Topics
from tests.support import sequenced

DAY = "2026-12-{:02d}T{}Z"


def at(day: int, clock: str = "12:00:00") -> str:
    return DAY.format(day, clock)


class Life:
    """One engine and a client with a standard account, fed events by hand."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.engine = Engine(rules)
        self.n = 0
        self.send("client.registered", at(1, "00:00:00"), client_id="c1", country="DE")
        self.send("client.verified", at(1, "00:00:01"), client_id="c1", id_document=True, phone=True,
                  identity_hash="h1")
        self.send("account.opened", at(1, "00:00:02"), client_id="c1", account_id="a1", account_type="standard",
                  currency="USD")
        self.send("account.validated", at(1, "00:00:03"), client_id="c1", account_id="a1")

    def send(self, kind: str, ts: str, **fields: Any) -> list[dict[str, Any]]:
        self.n += 1
        raw = orjson.dumps({"type": kind, "id": fields.pop("id", f"e{self.n}"), "ts": ts, **fields})
        return [orjson.loads(encode_output(o)) for o in self.engine.process(raw, {"line": self.n})]

    def terms(self, version: str, ts: str, effective: str, rules: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
        return self.send("program.terms", ts, version=version, effective=effective, rules=rules, **extra)

    def fill(self, ts: str, cost: str = "10") -> list[dict[str, Any]]:
        self.n += 1
        return self.send("trade.fill", ts, client_id="c1", account_id="a1", fill_id=f"f{self.n}", symbol="EURUSD",
                         action="open", lots="1", spread_cost=cost, commission="0")

    def cashback(self, ts: str) -> str:
        (accrued,) = [o for o in self.fill(ts) if o["type"] == "cashback.accrued"]
        return str(accrued["amount"])


def test_a_rate_change_applies_from_its_effective_instant_on() -> None:
    life = Life()
    out = life.terms("2027-rate", at(1), at(10, "00:00:00"), {"cashback": {"rate": "0.12"}}, note="12 % from the 10th")
    assert [o["type"] for o in out] == ["terms.accepted"]
    assert out[0]["version"] == "2027-rate" and out[0]["effective"] == at(10, "00:00:00") and len(out[0]["digest"]) == 64
    assert life.cashback(at(9, "23:59:59")) == "1"       # 10 % of 10, the terms before it
    assert life.cashback(at(10, "00:00:00")) == "1.2"    # at the instant: the new version
    assert life.cashback(at(11)) == "1.2"


def test_a_version_stands_alone_and_a_promotion_ends_with_the_next_version() -> None:
    life = Life()
    life.terms("promo", at(1), at(5, "00:00:00"), {"cashback": {"rate": "0.20"}})
    life.terms("after-promo", at(2), at(8, "00:00:00"), {"cashback": {"coverage_share": "0.40"}})
    assert [life.cashback(at(day)) for day in (4, 5, 7, 8, 20)] == ["1", "2", "2", "1", "1"]


def test_a_tier_offered_only_inside_its_window() -> None:
    promo = {"deposit_bonus": {"tiers": {"200": {"account_types": ["standard"], "min_deposit_usd": "100"}}}}
    life = Life()
    life.terms("december-200", at(1), at(5, "00:00:00"), promo)
    life.terms("december-end", at(1, "13:00:00"), at(10, "00:00:00"), {"deposit_bonus": {"usd_per_lot": "4"}})
    results = []
    for day in (4, 5, 9, 10):
        out = life.send("deposit", at(day), client_id="c1", account_id="a1", deposit_id=f"d{day}", amount="100",
                        source="external", bonus_percent=200)
        results.append([(o["type"], o.get("reason") or o.get("required_lots")) for o in out])
    assert results == [[("bonus.rejected", "ineligible_account")], [("bonus.granted", "100")],
                       [("bonus.granted", "100")], [("bonus.rejected", "ineligible_account")]]
    # a grant keeps its turnover requirement (2 USD a lot then) after the terms change to 4
    bonuses = life.engine.clients["c1"].bonuses
    assert [b.required_lots for b in bonuses] == [Decimal(100), Decimal(100)]


def test_a_country_excluded_from_a_date() -> None:
    life = Life()
    life.send("account.opened", at(1, "00:00:04"), client_id="c1", account_id="w1", account_type="welcome",
              currency="USD", conditions="standard")
    life.terms("no-de", at(1), at(3, "00:00:00"), {"welcome": {"excluded_countries": ["DE"]}})
    other = Life()
    other.send("account.opened", at(1, "00:00:04"), client_id="c1", account_id="w1", account_type="welcome",
               currency="USD", conditions="standard")
    other.terms("no-de", at(1), at(3, "00:00:00"), {"welcome": {"excluded_countries": ["DE"]}})
    before = life.send("welcome.claim", at(2), client_id="c1", account_id="w1")
    after = other.send("welcome.claim", at(3), client_id="c1", account_id="w1")
    assert [o["type"] for o in before] == ["welcome.granted"]
    assert [(o["type"], o["reason"]) for o in after] == [("welcome.rejected", "country_excluded")]


@pytest.mark.parametrize("version, ts, effective, rules, reason, named", [
    ("late", at(3), at(3), {"cashback": {"rate": "0.5"}}, "terms_retroactive", "not after it was published"),
    ("late", at(3), at(2), {"cashback": {"rate": "0.5"}}, "terms_retroactive", "never recomputed"),
    ("v1", at(2), at(9, "00:00:00"), {"cashback": {"rate": "0.5"}}, "terms_conflict", "other content"),
    ("v1", at(2), at(9, "00:00:00"), {"cashback": {"rate": "0.12"}}, "terms_conflict", "other content"),
    ("v2", at(2), at(8, "00:00:00"), {"cashback": {"rate": "0.5"}}, "terms_conflict", "already takes effect"),
    ("v1", at(2), at(8, "00:00:00"), {"cashback": {"rate": "0.12"}}, "duplicate", "already accepted"),
    ("v3", at(2), at(9, "00:00:00"), {"parking": {"window_seconds": 5}}, "terms_invalid", "`parking.window_seconds`"),
    ("v3", at(2), at(9, "00:00:00"), {"busts": {"window_days": 1}}, "terms_invalid", "`busts.window_days`"),
    ("v3", at(2), at(9, "00:00:00"), {"dedupe": {}}, "terms_invalid", "`dedupe`"),
    ("v3", at(2), at(9, "00:00:00"), {"cashback": {"rate": 0.5}}, "terms_invalid", "`cashback.rate`"),
    ("v3", at(2), at(9, "00:00:00"), {"cashback": {"ratio": "0.5"}}, "terms_invalid", "`cashback.ratio`"),
])
def test_a_refused_version_changes_nothing(version: str, ts: str, effective: str, rules: dict[str, Any],
                                           reason: str, named: str) -> None:
    life = Life()
    life.terms("v1", at(1), at(8, "00:00:00"), {"cashback": {"rate": "0.12"}})
    before = [{f: getattr(v, f) for f in v.__struct_fields__} for v in life.engine.shared.terms]
    (rejected,) = life.terms(version, ts, effective, rules)
    assert rejected["type"] == "event.rejected" and rejected["reason"] == reason and named in rejected["error"]
    assert [{f: getattr(v, f) for f in v.__struct_fields__} for v in life.engine.shared.terms] == before
    assert [life.cashback(at(day)) for day in (7, 8, 9)] == ["1", "1.2", "1.2"]


def test_the_same_version_event_delivered_again_is_a_duplicate_of_the_event() -> None:
    life = Life()
    first = life.terms("v1", at(1), at(8, "00:00:00"), {"cashback": {"rate": "0.12"}}, id="t1")
    again = life.terms("v1", at(1), at(8, "00:00:00"), {"cashback": {"rate": "0.12"}}, id="t1")
    assert first[0]["type"] == "terms.accepted"
    assert again[0]["reason"] == "duplicate" and "no second effect" in again[0]["error"]
    assert len(life.engine.shared.terms) == 1


@pytest.mark.parametrize("in_time", [True, False])
def test_every_partition_takes_the_sequencer_s_verdict_whatever_it_applied_before(in_time: bool) -> None:
    """Partition 0 has applied an input past the version's effective, partition 1 nothing: both
    hold the version until the sequencer's verdict (one for all: streams.worker.sequencer), then
    both take it alike, and only partition 0 reports it."""
    topics = Topics("ledger", "deadletter", "identity", "commissions", "sequenced")
    ledgers = [PartitionLedger(p, 2, Rules.default(), topics, {}) for p in range(2)]
    early = orjson.dumps({"type": "client.registered", "id": "r", "ts": at(20), "client_id": "c1", "country": "DE"})
    ledgers[0].handle(sequenced(early, 0))
    version = orjson.dumps({"type": "program.terms", "id": "t", "ts": at(1), "version": "v",
                            "effective": at(9), "rules": {"cashback": {"rate": "0.2"}}})
    verdict = Record(0, None, wire.encode(wire.TermsVerdict("t", in_time)), {wire.H_KIND: wire.KIND_TERMS})
    for offset, ledger in ((1, ledgers[0]), (0, ledgers[1])):
        ledger.handle(sequenced(version, offset))
        assert ledger.shared.terms == [] and [p.version.version for p in ledger.shared.terms_pending] == ["v"]
        assert ledger.outbox.outputs == [] or ledger.partition == 0
        ledger.handle(Record(offset + 1, None, verdict.value, verdict.headers))
        ledger.handle(Record(offset + 2, None, verdict.value, verdict.headers))  # again: nothing
    assert [[v.version for v in ledger.shared.terms] for ledger in ledgers] == [["v"], ["v"]] if in_time else [[], []]
    assert [ledger.shared.terms_pending for ledger in ledgers] == [[], []]
    assert [ledger.shared.terms_late for ledger in ledgers] == ([0, 0] if in_time else [1, 1])
    reported = [[(o.type, getattr(o, "reason", None)) for o in ledger.outbox.outputs] for ledger in ledgers]
    assert reported == [[("terms.accepted", None)] if in_time else [("event.rejected", "terms_late")], []]


def test_offline_a_version_after_an_input_past_its_effective_is_late() -> None:
    life = Life()
    life.fill(at(9, "00:00:00"))
    (late,) = life.terms("v", at(1), at(8, "00:00:00"), {"cashback": {"rate": "0.2"}})
    assert late["reason"] == "terms_late" and "refused on every partition" in late["error"]
    assert life.engine.shared.terms == [] and life.cashback(at(10)) == "1"


def test_the_replay_summary_lists_what_still_waits_and_settle_applies_it(tmp_path: Any) -> None:
    from streams.offline.replay import replay_files

    events = tmp_path / "in.jsonl"
    lines = [{"type": "trade.bust", "id": "b1", "ts": at(1), "client_id": "c1", "fill_id": "F9"},
             {"type": "client.registered", "id": "r1", "ts": at(1, "12:00:01"), "client_id": "c1", "country": "DE"},
             {"type": "client.verified", "id": "v1", "ts": at(1, "12:00:02"), "client_id": "c1", "id_document": True,
              "phone": True, "identity_hash": "h"}]
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    summary = replay_files(events, tmp_path / "out.jsonl", Rules.default(), show_progress=False)
    # the registration the bust's client needed is applied ahead of it; the bust waits for its fill
    assert summary.waiting == [("b1", "fill", "F9"), ("v1", "behind", "b1")]
    assert "b1: waits for fill F9" in summary.render() and "v1: waits behind b1" in summary.render()
    assert (tmp_path / "out.jsonl").read_bytes() == b""
    settled = replay_files(events, tmp_path / "out.jsonl", Rules.default(), show_progress=False, settle_at_end=True)
    outputs = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert settled.settled == 2 and settled.waiting == []
    assert [(o["cause_id"], o.get("reason")) for o in outputs] == [("b1", "unknown_fill")]
