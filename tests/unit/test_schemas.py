"""The wire contract: models, JSON Schema documents, output shapes."""

import msgspec
import orjson

from handlers.engine import Engine
from schemas import jsonschema
from schemas.codec import encode_output, encode_outputs
from schemas.inputs import INPUT_MODELS
from schemas.outputs import OUTPUT_MODELS, type_of
from streams.devtools.sample_day import SampleDay
from tests.support import Scenario

CONTRACT_INPUT_TYPES = {
    "client.registered", "client.verified", "account.opened", "account.validated", "trade.fill",
    "trade.bust", "deposit", "wallet.allocate", "welcome.claim", "welcome.transfer",
    "partner.linked", "partner.plan", "partner.parent", "settlement.day_closed", "program.terms",
}
CONTRACT_OUTPUT_FIELDS = {  # events.md, "Output events": the fields every consumer relies on
    "coverage.applied": {"account_id", "fill_id", "cost", "covered", "charged", "allocated_left"},
    "cashback.accrued": {"account_id", "fill_id", "amount", "wallet_balance"},
    "wallet.allocated": {"account_id", "amount", "wallet_balance", "allocated"},
    "wallet.allocation_rejected": {"account_id", "amount", "reason"},
    "welcome.granted": {"account_id", "amount"},
    "welcome.rejected": {"account_id", "reason"},
    "welcome.transfer_approved": {"account_id", "to_account_id", "amount"},
    "welcome.transfer_rejected": {"account_id", "to_account_id", "amount", "reason"},
    "bonus.granted": {"account_id", "deposit_id", "bonus_id", "percent", "amount", "required_lots"},
    "bonus.rejected": {"account_id", "deposit_id", "reason"},
    "bonus.progress": {"account_id", "bonus_id", "lots_traded", "required_lots"},
    "bonus.unlocked": {"account_id", "bonus_id", "amount"},
    "rebate.accrued": {"partner_id", "account_id", "fill_id", "rebate", "commission"},
    "rebate.payout": {"partner_id", "date", "amount", "carried"},
    "commission.payout": {"partner_id", "date", "amount", "carried"},
    "override.payout": {"partner_id", "date", "amount", "carried"},
    "bonus.released": {"account_id", "bonus_id", "date", "amount", "carried"},
    "fill.reversed": {"account_id", "fill_id", "cashback", "covered", "lots", "rebate", "commission"},
    "event.rejected": {"reason", "error", "raw", "source"},
    "terms.accepted": {"version", "effective", "digest"},  # events.md, "Terms over time"
}


def test_every_contract_type_has_a_model() -> None:
    assert set(INPUT_MODELS) == CONTRACT_INPUT_TYPES
    outputs = {type_of(m): set(m.__struct_fields__) for m in OUTPUT_MODELS}
    assert set(outputs) == set(CONTRACT_OUTPUT_FIELDS)
    for output_type, fields in CONTRACT_OUTPUT_FIELDS.items():
        partner_only = output_type in ("commission.payout", "override.payout", "terms.accepted")
        envelope = {"type", "id", "cause_id", "ts"} | (set() if partner_only else {"client_id"})
        assert fields | envelope <= outputs[output_type], output_type


def test_checked_in_json_schemas_are_current() -> None:
    assert jsonschema.main(["--check"]) == 0
    assert len(jsonschema.documents()) == len(INPUT_MODELS) + len(OUTPUT_MODELS)


def test_outputs_of_a_busy_scenario_match_their_models() -> None:
    s = Scenario()
    s.plan("P", {"standard": "1"}, {"standard": "2"})
    s.client("c1")
    s.account("std")
    s.account("w", "welcome")
    s.emit("partner.linked", client_id="c1", partner_id="P")
    s.deposit("std", "500", 120)
    s.deposit("std", "50", 50)
    s.fill("std", "f1", lots="2", spread_cost="30")
    s.allocate("std", "1")
    s.allocate("std", "1000")
    s.emit("welcome.claim", client_id="c1", account_id="w")
    s.emit("welcome.claim", client_id="c1", account_id="w")
    s.emit("welcome.transfer", client_id="c1", account_id="w", to_account_id="std", amount="1")
    s.fill("std", "f2", lots="1", spread_cost="10")
    s.emit("trade.bust", client_id="c1", fill_id="f1")
    s.close_day("2026-11-24")
    s.send_raw(b"garbage")
    by_type = {type_of(m): m for m in OUTPUT_MODELS}
    seen = set()
    for output in s.outputs:
        model = by_type[output["type"]]
        msgspec.json.decode(orjson.dumps(output), type=model, strict=True)
        seen.add(output["type"])
    assert len(seen) >= 14


def test_outputs_encoded_together_are_the_lines_of_each() -> None:
    engine = Engine()
    lines = list(SampleDay(clients=20, fills=300, seed=3, bad_share=0.05).lines())
    outputs = [output for n, raw in enumerate(lines, 1) for output in engine.process(raw, {"line": n})]
    assert len({output.type for output in outputs}) >= 4  # rejections among them
    assert encode_outputs(outputs) == b"".join(encode_output(output) + b"\n" for output in outputs)


def test_extra_input_fields_are_ignored_but_renamed_ones_are_missing() -> None:
    s = Scenario()
    assert s.emit("client.registered", client_id="c1", country="DE", crm_ref="x") == []
    out = s.emit("client.registered", client_id="c2", nation="DE")
    assert out[0]["reason"] == "invalid_field" and "country" in out[0]["error"]


def test_an_empty_ts_is_refused_when_it_is_the_first_timestamp_a_process_reads() -> None:
    """The parser remembers the text it read last, by identity; before any, that must not be "",
    which is one object for every empty text (an empty first ts once read as 1970-01-01)."""
    import subprocess
    import sys

    first = (b'{"type":"client.registered","id":"ev-1","ts":"","client_id":"c1","country":"DE"}')
    code = ("import sys; from handlers.engine import Engine\n"
            "out = Engine().process(sys.stdin.buffer.read(), {'line': 1})\n"
            "print(out[0].type, out[0].reason)")
    done = subprocess.run([sys.executable, "-c", code], input=first, capture_output=True, check=True)
    assert done.stdout.decode().split() == ["event.rejected", "invalid_field"]
