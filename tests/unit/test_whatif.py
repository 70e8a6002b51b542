"""`rewards whatif`: two rule sets over one history, read once. Its figures are checked against
two separate `rewards replay` runs (one per rules file) summed here from their output lines,
and a change with a known effect gives exactly that effect."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from handlers.engine import Engine
from handlers.rules import Rules
from schemas.codec import encode_output
from streams.devtools.sample_day import SampleDay
from streams.offline.replay import replay
from streams.offline.whatif import PROGRAMS, compare, report

CANDIDATE_12 = '[cashback]\nrate = "0.12"\n'


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    """Two generated broker days: onboarding, deposits and bonuses, fills, busts, plans, closes."""
    return list(SampleDay(clients=300, fills=12_000, days=2, seed=5).lines())


def replayed(lines: list[bytes], rules: Rules) -> list[dict[str, object]]:
    sink = io.BytesIO()
    replay(io.BytesIO(b"\n".join(lines) + b"\n"), sink, rules)
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


def totals(outputs: list[dict[str, object]]) -> dict[str, Decimal]:
    """Each program's total, summed from output lines as finance would."""
    found: defaultdict[str, Decimal] = defaultdict(Decimal)
    for o in outputs:
        kind = o["type"]
        if kind == "cashback.accrued":
            found["cashback_accrued"] += Decimal(str(o["amount"]))
        elif kind == "coverage.applied":
            found["cashback_covered"] += Decimal(str(o["covered"]))
        elif kind == "fill.reversed":
            found["cashback_accrued"] -= Decimal(str(o["cashback"]))
            found["cashback_covered"] -= Decimal(str(o["covered"]))
        elif kind == "welcome.granted":
            found["welcome_granted"] += Decimal(str(o["amount"]))
        elif kind == "bonus.granted":
            found["bonus_granted"] += Decimal(str(o["amount"]))
        elif kind == "bonus.unlocked":
            found["bonus_unlocked"] += Decimal(str(o["amount"]))
        elif kind == "bonus.released":
            found["bonus_released"] += Decimal(str(o["amount"]))
        elif kind == "rebate.payout":
            found["rebates_paid"] += Decimal(str(o["amount"]))
        elif kind == "commission.payout":
            found["commissions_paid"] += Decimal(str(o["amount"]))
        elif kind == "override.payout":
            found["overrides_paid"] += Decimal(str(o["amount"]))
    return found


def about() -> dict[str, object]:
    return {"base": {"rules": "a", "sha256": "0" * 64}, "candidate": {"rules": "b", "sha256": "1" * 64},
            "history": "test"}


def test_the_two_rule_sets_in_two_processes_report_what_one_after_the_other_reports(history: list[bytes]) -> None:
    """On two cores each rule set runs in a process of its own; the outputs are compared through
    fingerprints. The report is the same as in one process, and counts the outputs that changed
    as the outputs themselves do (by id: under one rule set only, or different)."""
    from streams.offline.whatif import OUTPUT_TYPES

    base, candidate = Rules.default(), Rules.from_toml(CANDIDATE_12)
    apart = report(compare(history, base, candidate), about())
    together = report(compare(history, base, candidate, parallel=False), about())
    assert apart == together
    changed: dict[str, int] = {}
    engines = Engine(base), Engine(candidate)
    for n, raw in enumerate(history, 1):
        outs = [{o.id: encode_output(o) for o in engine.process(raw, {"line": n})} for engine in engines]
        types = {o_id: orjson.loads(encoded)["type"] for out in outs for o_id, encoded in out.items()}
        for o_id in set(outs[0]) | set(outs[1]):
            if outs[0].get(o_id) != outs[1].get(o_id):
                changed[types[o_id]] = changed.get(types[o_id], 0) + 1
    assert together["outputs"]["changed_by_type"] == dict(sorted(changed.items())) != {}
    assert set(changed) <= set(OUTPUT_TYPES)


def test_each_rule_set_gives_what_its_own_replay_gives(history: list[bytes]) -> None:
    base, candidate = Rules.default(), Rules.from_toml(CANDIDATE_12)
    content = report(compare(history, base, candidate), about())
    alone = [replayed(history, rules) for rules in (base, candidate)]
    expected = [totals(outputs) for outputs in alone]
    programs = {p["program"]: p for p in content["programs"]}
    assert list(programs) == [key for key, _, _ in PROGRAMS]
    for key, program in programs.items():
        assert Decimal(program["base"]) == expected[0][key], key
        assert Decimal(program["candidate"]) == expected[1][key], key
        # the day and account-type breakdowns add up to the totals
        for part in ("by_day", "by_account_type"):
            for side in ("base", "candidate"):
                assert sum((Decimal(r[side]) for r in program[part]), Decimal(0)) == Decimal(program[side]), (key, part)
    assert all(Decimal(programs[key]["base"]) > 0 for key in programs if key not in ("overrides_paid", "bonus_released")), \
        "the history exercises every program of the default rules (no hierarchy, no convertible bonus)"
    assert content["outputs"]["base"] == len(alone[0]) and content["outputs"]["candidate"] == len(alone[1])
    # outputs changed, counted by id between the two replays
    by_id = [{o["id"]: o for o in outputs} for outputs in alone]
    differ = {i for i in by_id[0].keys() | by_id[1].keys() if by_id[0].get(i) != by_id[1].get(i)}
    assert content["outputs"]["changed"] == len(differ) > 0
    assert sum(content["outputs"]["changed_by_type"].values()) == len(differ)
    # allocations are capped by the wallet, so a higher rate moves coverage too: not exactly 20 %
    assert programs["cashback_covered"]["difference"] != "0"
    assert programs["welcome_granted"]["difference"] == programs["rebates_paid"]["difference"] == "0"


def test_cashback_from_10_to_12_percent_accrues_exactly_a_fifth_more(history: list[bytes]) -> None:
    """Without allocations (they spend the wallet, whose balance the rate moves), every fill's
    cashback is its cost times the rate, kept exactly: 12 % is 10 % times 1.2, to the micro-dollar."""
    without_allocations = [line for line in history if b'"wallet.allocate"' not in line]
    content = report(compare(without_allocations, Rules.default(), Rules.from_toml(CANDIDATE_12)), about())
    cashback = next(p for p in content["programs"] if p["program"] == "cashback_accrued")
    assert Decimal(cashback["base"]) > 1000
    assert Decimal(cashback["candidate"]) == Decimal(cashback["base"]) * Decimal("1.2")
    assert cashback["difference_pct"] == "20.00"
    assert all(row["difference_pct"] == "20.00" for row in cashback["by_day"] + cashback["by_account_type"])
    others = [p for p in content["programs"] if p["program"] != "cashback_accrued"]
    assert all(p["difference"] == "0" for p in others)
    # every client that trades gets more; the most affected first
    moved = content["clients_most_affected"]
    assert len(moved) == 10 and all(Decimal(r["difference"]) > 0 for r in moved)
    assert [Decimal(r["difference"]) for r in moved] == sorted((Decimal(r["difference"]) for r in moved), reverse=True)
    assert content["partners_most_affected"] == []


def test_the_same_rules_change_nothing(history: list[bytes]) -> None:
    content = report(compare(history[:3000], Rules.default(), Rules.default()), about())
    assert content["outputs"]["changed"] == 0 and content["outputs"]["base"] > 0
    assert all(p["difference"] == "0" for p in content["programs"])
    assert content["clients_most_affected"] == [] == content["partners_most_affected"]


def test_the_command_writes_both_files_and_names_a_bad_rules_file(history: list[bytes], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(history[:2000]) + b"\n")
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(CANDIDATE_12)
    folder = tmp_path / "report"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", "whatif", *args], capture_output=True, text=True,
                              timeout=120)

    done = run("--input", str(events), "--candidate", str(candidate), "--report", str(folder))
    assert done.returncode == 0, done.stderr
    content = json.loads((folder / "report.json").read_text())
    assert content["events"] == 2000 and content["candidate"]["rules"] == str(candidate)
    html = (folder / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html and "http" not in html.split("<body>")[1]
    assert html.count("<svg ") == sum(1 for p in content["programs"] if p["by_day"])
    assert "Cashback accrued" in done.stderr and "report.html" in done.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text('[cashback]\nrate = 0.12\n')  # a float
    done = run("--input", str(events), "--candidate", str(bad), "--report", str(folder))
    assert done.returncode == 2 and f"bad rules file {bad} (--candidate)" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("--candidate", str(candidate), "--report", str(folder))
    assert done.returncode == 2 and "--input FILE or --from-kafka" in done.stderr
    done = run("--input", str(tmp_path / "missing.jsonl"), "--candidate", str(candidate), "--report", str(folder))
    assert done.returncode == 2 and "missing.jsonl" in done.stderr and "Traceback" not in done.stderr


def test_overrides_on_a_partner_hierarchy_cost_the_shares_of_the_commissions(history: list[bytes]) -> None:
    """p0001 under p0000, p0002 under p0001; the candidate pays 20 % and 5 % overrides."""
    links = [orjson.dumps({"type": "partner.parent", "id": f"link-{child}", "ts": "2026-11-23T00:00:00.000000Z",
                           "partner_id": child, "parent_id": parent})
             for child, parent in (("p0001", "p0000"), ("p0002", "p0001"))]
    plans = sum(1 for line in history if b'"partner.plan"' in line[:40])
    with_links = history[:plans] + links + history[plans:]
    candidate = Rules.from_toml('[partners]\noverride_shares = ["0.20", "0.05"]\n')
    content = report(compare(with_links, Rules.default(), candidate), about())
    programs = {p["program"]: p for p in content["programs"]}
    assert programs["commissions_paid"]["difference"] == "0", "overrides are on top, never deducted"
    assert programs["overrides_paid"]["base"] == "0"
    paid: defaultdict[str, Decimal] = defaultdict(Decimal)
    for o in replayed(with_links, candidate):
        if o["type"] == "commission.payout":
            paid[str(o["partner_id"])] += Decimal(str(o["amount"]))
    expected = {"p0000": paid["p0001"] * Decimal("0.20") + paid["p0002"] * Decimal("0.05"),
                "p0001": paid["p0002"] * Decimal("0.20")}
    got = {r["partner_id"]: Decimal(r["difference"]) for r in content["partners_most_affected"]}
    assert set(got) == {"p0000", "p0001"} and all(expected[p] > 100 for p in expected)
    for partner, amount in expected.items():
        # per fill to the micro-dollar, paid daily to the cent with carry: within cents of the shares
        assert abs(got[partner] - amount) < Decimal("0.05"), (partner, got[partner], amount)
    assert Decimal(programs["overrides_paid"]["candidate"]) == sum(got.values(), Decimal(0))


def test_a_candidate_from_an_instant_changes_only_what_comes_after_it(history: list[bytes]) -> None:
    """`--candidate B --from TS`: the history's own terms before TS, B from it on (and in place of
    the history's versions taking effect from TS on)."""
    from streams.offline.whatif import WhatifRefused, pinned_version

    without_allocations = [line for line in history if b'"wallet.allocate"' not in line]
    days = sorted({orjson.loads(line)["ts"][:10] for line in without_allocations})
    second_day = f"{days[1]}T00:00:00Z"
    later_version = orjson.dumps({"type": "program.terms", "id": "t-hist", "ts": f"{days[0]}T00:00:00Z",
                                  "version": "history's", "effective": f"{days[1]}T12:00:00Z",
                                  "rules": {"cashback": {"rate": "0.5"}}})
    pinned = pinned_version(CANDIDATE_12, second_day, Rules.default())
    found = compare([later_version] + without_allocations, Rules.default(),
                    Rules.default(), pinned=pinned)
    cashback = next(p for p in report(found, about())["programs"] if p["program"] == "cashback_accrued")
    by_day = {row["day"]: row for row in cashback["by_day"]}
    assert by_day[days[0]]["difference"] == "0"
    # the base pays 10 % until noon of the second day and 50 % after; the candidate 12 % all day
    assert by_day[days[1]]["difference"] != "0" and Decimal(by_day[days[1]]["candidate"]) > 0
    with pytest.raises(WhatifRefused, match="`parking.window_seconds` is not a program term"):
        pinned_version("[parking]\nwindow_seconds = 1\n", second_day, Rules.default())


def test_a_candidate_from_an_instant_alone_is_a_fifth_more_after_it(history: list[bytes]) -> None:
    from streams.offline.whatif import pinned_version

    without_allocations = [line for line in history if b'"wallet.allocate"' not in line]
    days = sorted({orjson.loads(line)["ts"][:10] for line in without_allocations})
    found = compare(without_allocations, Rules.default(), Rules.default(),
                    pinned=pinned_version(CANDIDATE_12, f"{days[1]}T00:00:00Z", Rules.default()))
    cashback = next(p for p in report(found, about())["programs"] if p["program"] == "cashback_accrued")
    by_day = {row["day"]: row for row in cashback["by_day"]}
    assert by_day[days[0]]["difference"] == "0" and by_day[days[1]]["difference_pct"] == "20.00"


def test_outputs_are_compared_by_id_whatever_their_order() -> None:
    """changed_outputs compares an input's outputs pair by pair while their ids agree, then by id:
    the same count as a comparison by id alone, whether the outputs come in another order, are
    missing on one side or carry other contents."""
    from array import array

    from handlers.tally import OUTPUT_TYPES, changed_outputs

    def fp(output_id: int, contents: int, kind: int) -> bytes:
        return output_id.to_bytes(8, "little") + contents.to_bytes(8, "little") + bytes([kind])

    a_inputs = [[fp(1, 10, 0), fp(2, 20, 1)], [fp(3, 30, 2), fp(4, 40, 1), fp(5, 50, 0)], [fp(6, 60, 1)], []]
    b_inputs = [[fp(1, 10, 0), fp(2, 21, 1)], [fp(4, 40, 1), fp(3, 31, 2)], [], [fp(7, 70, 2)]]

    def side(inputs: list[list[bytes]]) -> tuple[bytes, array[int]]:
        prints, ends = b"", array("Q")
        for outputs in inputs:
            prints += b"".join(outputs)
            ends.append(len(prints))
        return prints, ends

    expected = [0] * len(OUTPUT_TYPES)
    for outputs_a, outputs_b in zip(a_inputs, b_inputs):  # by id, the plain way
        by_id_a = {p[:8]: p for p in outputs_a}
        by_id_b = {p[:8]: p for p in outputs_b}
        for key in by_id_a.keys() | by_id_b.keys():
            if by_id_a.get(key) != by_id_b.get(key):
                expected[(by_id_a.get(key) or by_id_b[key])[-1]] += 1
    assert changed_outputs(*side(a_inputs), *side(b_inputs)) == expected
    # by type: 5 gone (0); 2 changed and 6 gone (1); 3 changed and 7 new (2)
    assert expected[:3] == [1, 2, 2]
