"""The worker's changelog holds client states and the partition's shared state encoded by
msgspec (msgpack maps). The bytes must stay those written before (commit 34b38aa wrote the ones
below), or a worker upgraded in place would misread its changelog: a pin for any change to the
state's classes (compiled dataclasses decoded by their declared types, handlers.clientstate and
handlers.sharedstate; the parts left msgspec Structs, handlers.shared says why)."""

import ast
import dataclasses
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from handlers.history import ClientHistory, seen_ts
from handlers.money import ZERO
from handlers.sharedstate import Shared
from handlers import clientstate, sharedstate
from handlers.clientstate import Account, Bonus, ClientState, Wallet
from handlers.state import FillRecord, PayoutLedger, Seen

# Written by 34b38aa (the state as msgspec Structs) for the objects `sample` makes.
CLIENT_BYTES = bytes.fromhex(
    "de0010a9636c69656e745f6964a26331a7636f756e747279a24445ac6c61746573745f74735f7573cf00060a24181e40"
    "00ab69645f646f63756d656e74c3a570686f6e65c3ad6964656e746974795f68617368a26831a86163636f756e747382"
    "a2613189aa6163636f756e745f6964a26131ac6163636f756e745f74797065a87374616e64617264a863757272656e63"
    "79a3555344aa636f6e646974696f6e73c0a976616c696461746564c3a9616c6c6f6361746564a3312e35b27175616c69"
    "6679696e675f6465706f736974c3a670726f666974a130ab7472616e73666572726564a130a2773189aa6163636f756e"
    "745f6964a27731ac6163636f756e745f74797065a777656c636f6d65a863757272656e6379a3555343aa636f6e646974"
    "696f6e73a3632d31a976616c696461746564c2a9616c6c6f6361746564a130b27175616c696679696e675f6465706f73"
    "6974c2a670726f666974a52d322e3235ab7472616e73666572726564a4302e3031a677616c6c657485a762616c616e63"
    "65a8332e303030303031a9616c6c6f6361746564a3312e35a761636372756564a135a87265766572736564a3302e35a7"
    "636f7665726564a130af77656c636f6d655f6772616e746564c3b1626f6e75735f6772616e7465645f757364a3323530"
    "b165787465726e616c5f6465706f7369747302a7626f6e757365739189a8626f6e75735f6964a26231aa6163636f756e"
    "745f6964a26131aa6465706f7369745f6964a26431a770657263656e7432a6616d6f756e74a3323530ad726571756972"
    "65645f6c6f7473a431322e35ab6c6f74735f747261646564a3302e33a8756e6c6f636b6564c2af72656c656173655f70"
    "65725f6c6f74a132aa706172746e65725f6964a27031a77265626174657381a2703184a770656e64696e6781aa323032"
    "362d31312d3233a8302e313233343536a763617272696564a5302e303034a761636372756564a137a470616964a4362e"
    "3837a872656c656173657381a2623184a770656e64696e6780a763617272696564a130a761636372756564a130a47061"
    "6964a130ae70656e64696e675f636c61696d7391a465762d39"
)
SHARED_BYTES = bytes.fromhex(
    "8ba5706c616e7380a7706172656e747380a7686973746f727985a87365656e5f69647380a566696c6c7380a86465706f"
    "7369747380a5717565756590ad6e6578745f7072756e655f757300ac6c61746573745f74735f757305ab636f6d6d6973"
    "73696f6e7381a2703184a770656e64696e6780a763617272696564a130a761636372756564a131a470616964a130a96f"
    "766572726964657380ae7265626174655f636c69656e747390a8636c6f636b5f757306a67061726b656481a2633107ad"
    "7061726b65645f6576656e747301ae636c6f7365645f7468726f756768aa323032362d31312d3232"
)


def sample():
    c = ClientState(client_id="c1", country="DE", latest_ts_us=1_700_000_000_000_000, id_document=True, phone=True,
                    identity_hash="h1", welcome_granted=True, bonus_granted_usd=Decimal("250"), external_deposits=2,
                    partner_id="p1", pending_claims=["ev-9"])
    c.accounts["a1"] = Account(account_id="a1", account_type="standard", currency="USD", validated=True,
                               allocated=Decimal("1.5"), qualifying_deposit=True)
    c.accounts["w1"] = Account(account_id="w1", account_type="welcome", currency="USC", conditions="c-1",
                               profit=Decimal("-2.25"), transferred=Decimal("0.01"))
    c.wallet = Wallet(balance=Decimal("3.000001"), allocated=Decimal("1.5"), accrued=Decimal("5"), reversed=Decimal("0.5"))
    c.bonuses.append(Bonus(bonus_id="b1", account_id="a1", deposit_id="d1", percent=50, amount=Decimal("250"),
                           required_lots=Decimal("12.5"), lots_traded=Decimal("0.3"), release_per_lot=Decimal("2")))
    c.rebates["p1"] = PayoutLedger(pending={"2026-11-23": Decimal("0.123456")}, carried=Decimal("0.004"),
                                   accrued=Decimal("7"), paid=Decimal("6.87"))
    c.releases["b1"] = PayoutLedger()
    s = Shared(latest_ts_us=5, clock_us=6, parked={"c1": 7}, parked_events=1, closed_through="2026-11-22")
    s.commissions["p1"] = PayoutLedger(accrued=Decimal("1"))
    return c, s


# The terms timeline (handlers.terms) added three fields at the end of the shared state: a map
# of 14 entries now (0x8e, was 0x8b), the same 11 first, then `terms` (empty), `terms_late` (0)
# and `terms_pending` (empty).
SHARED_BYTES_WITH_TERMS = (b"\x8e" + SHARED_BYTES[1:] + msgspec.msgpack.encode("terms") + b"\x90"
                           + msgspec.msgpack.encode("terms_late") + b"\x00"
                           + msgspec.msgpack.encode("terms_pending") + b"\x90")


def test_states_encode_to_the_bytes_the_structs_wrote() -> None:
    client, shared = sample()
    assert msgspec.msgpack.encode(client) == CLIENT_BYTES
    assert msgspec.msgpack.encode(shared) == SHARED_BYTES_WITH_TERMS


def test_a_shared_state_written_before_the_terms_reads_with_an_empty_timeline() -> None:
    _, shared = sample()
    decoded = msgspec.msgpack.Decoder(Shared).decode(SHARED_BYTES)
    assert decoded == shared and decoded.terms == [] == decoded.terms_pending and decoded.terms_late == 0


def test_what_the_structs_wrote_decodes_to_the_same_state() -> None:
    client, shared = sample()
    decoded = msgspec.msgpack.Decoder(ClientState).decode(CLIENT_BYTES)
    assert decoded == client and decoded.accounts["w1"].profit == Decimal("-2.25")
    assert msgspec.msgpack.Decoder(Shared).decode(SHARED_BYTES) == shared


def test_a_new_fill_is_kept_as_the_bytes_of_its_record() -> None:
    """``record_fill`` (a fill's record without making it, handlers.history) keeps the bytes
    ``put_fill`` of the FillRecord keeps, whether an amount is the ZERO constant, another zero, or not."""
    cases = [
        (ZERO, ZERO, [], ZERO, ZERO, None, ZERO),
        (Decimal("0.012300"), Decimal("0.000000"), [("b1", Decimal("0.01"))], Decimal("-0.5"), Decimal("3"), "p1",
         Decimal("-12.25")),
        (Decimal("1E-7"), Decimal("-0"), [("b1", ZERO), ("b2", Decimal("2.50"))], ZERO, Decimal("0.0"), None, ZERO),
    ]
    for n, (cashback, covered, turnover, rebate, commission, partner_id, pnl) in enumerate(cases):
        fields = dict(cause_id=f"ev-{n}", ts_us=1_700_000_000_000_000 + n, account_id="a1", cashback=cashback,
                      covered=covered, turnover=turnover, rebate=rebate, commission=commission,
                      partner_id=partner_id, pnl=pnl)
        made, recorded = ClientHistory(), ClientHistory()
        made.put_fill("f1", FillRecord(**fields))  # type: ignore[arg-type]
        recorded.record_fill("f1", *fields.values())  # type: ignore[arg-type]
        assert recorded.fills["f1"] == made.fills["f1"], n
        assert recorded.fill("f1") == FillRecord(**fields)  # type: ignore[arg-type]


def test_a_seen_id_is_kept_as_the_bytes_its_changelog_entry_was() -> None:
    """A client's seen ids are kept encoded (handlers.history): ``remember_new`` keeps the bytes
    the worker's changelog held for a Seen before (its encoding by msgspec), and they decode, and
    sweep, as that Seen; a redelivery's ``remember`` keeps its Seen's bytes the same way."""
    encode = msgspec.msgpack.Encoder().encode
    cases = [(b"\x00" * 10, 1_700_000_000_000_000, ""), (bytes(range(10)), 0, "in:3:41"),
             (b"\xff" * 10, -5, "t\u00e9:0:1"), (b"\x01" * 10, 2**40, "in:0:" + "9" * 30)]
    for n, (event_digest, ts_us, source) in enumerate(cases):
        history = ClientHistory()
        history.remember_new(f"e{n}", event_digest, ts_us, source)
        assert history.seen_ids[f"e{n}"] == encode(Seen(event_digest, ts_us, source)), n
        assert history.seen(f"e{n}") == Seen(event_digest, ts_us, source)
        assert seen_ts(history.seen_ids[f"e{n}"]) == ts_us
        again = Seen(event_digest, ts_us, source, ("in:1:2", ""))
        history.remember(f"e{n}", again)
        assert history.seen_ids[f"e{n}"] == encode(again) and history.seen(f"e{n}") == again


@pytest.mark.parametrize("module", [clientstate, sharedstate], ids=lambda m: m.__name__)
def test_the_state_classes_declare_their_fields_as_written(module: ModuleType) -> None:
    """msgspec decodes the changelog by ``DECLARED`` (mypyc erases a compiled class's generic and
    union annotations, handlers.clientstate): it must name each field of each class, in order,
    with the type the source writes."""
    source = Path(__file__).parents[2] / "handlers" / (module.__name__.split(".")[-1] + ".py")
    tree = ast.parse(source.read_text())
    written = {node.name: {item.target.id: eval(ast.unparse(item.annotation), vars(module))  # noqa: S307
                           for item in node.body
                           if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
               for node in tree.body if isinstance(node, ast.ClassDef)}
    assert set(written) == {cls.__name__ for cls in module.DECLARED}
    for cls, declared in module.DECLARED.items():
        assert list(declared.items()) == list(written[cls.__name__].items()), cls.__name__
        assert [f.name for f in dataclasses.fields(cls)] == list(declared), cls.__name__
