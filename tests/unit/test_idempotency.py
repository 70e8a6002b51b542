"""Exactly one effect per event; bad input is rejected and the stream goes on; the history that
makes it so keeps each entry as long as its window needs it, no longer.

Every test runs against both stores of the one history (handlers.history ClientHistory): the
offline engine's, and the worker's ledger journaling it to its changelog (tests.support
WorkerEngine), where each test ends by checking that the changelog, read back, holds exactly
the entries the store holds."""

import base64
import hashlib
from collections.abc import Iterator

import orjson
import pytest

from handlers.engine import rejection_digest
from tests.support import Scenario, assert_journal_is_the_store, of_type, one


@pytest.fixture(params=["offline", "worker"])
def s(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    s = Scenario(store=request.param)
    s.client("c1")
    s.account("std")
    yield s
    if request.param == "worker":
        assert_journal_is_the_store(s.engine.ledger, s.engine.recovered())




def test_exact_redelivery_has_no_second_effect(s: Scenario) -> None:
    fill = s.event("trade.fill", client_id="c1", account_id="std", fill_id="f1", symbol="EURUSD",
                   action="open", lots="1", spread_cost="10", commission="0")
    assert one(s.send(fill), "cashback.accrued")["wallet_balance"] == "1"
    # the same payload in other bytes (key order, spacing) is still the same event
    again = orjson.dumps(dict(reversed(list(fill.items())))).replace(b",", b", ")
    refused = one(s.send_raw(again), "event.rejected")
    assert refused["reason"] == "duplicate"
    assert s.wallet().balance == 1


def test_each_rejected_redelivery_has_an_id_of_its_own(s: Scenario) -> None:
    """An output id names one payload: the rejections of one event id's redeliveries (read at
    different places, so with different `source`s) are told apart by a count."""
    fill = s.event("trade.fill", client_id="c1", account_id="std", fill_id="f1", symbol="EURUSD",
                   action="open", lots="1", spread_cost="10", commission="0")
    s.send(fill)
    raw = orjson.dumps(fill)
    ids = [one(s.send_raw(raw), "event.rejected")["id"] for _ in range(3)]
    other = one(s.send({**fill, "spread_cost": "20"}), "event.rejected")
    base = f"event.rejected:{fill['id']}:{rejection_digest(raw)}"  # the documented form
    assert ids == [f"{base}:2", f"{base}:3", f"{base}:4"]
    assert other["reason"] == "conflicting_duplicate" and other["id"].endswith(":5")
    assert s.wallet().balance == 1


def test_a_rejected_event_and_its_redelivery_have_two_ids(s: Scenario) -> None:
    """The original rejected (here: its client unknown), then delivered again: the same bytes,
    two rejections with two reasons, so two ids."""
    fill = s.event("trade.fill", client_id="ghost", account_id="std", fill_id="f1", symbol="EURUSD",
                   action="open", lots="1", spread_cost="10", commission="0")
    first, again = (one(s.send(fill), "event.rejected") for _ in range(2))
    assert (first["reason"], again["reason"]) == ("unknown_client", "duplicate")
    assert again["id"] == f"{first['id']}:2"


def test_same_id_other_payload_is_a_conflict(s: Scenario) -> None:
    fill = s.event("trade.fill", client_id="c1", account_id="std", fill_id="f1", symbol="EURUSD",
                   action="open", lots="1", spread_cost="10", commission="0")
    s.send(fill)
    refused = one(s.send({**fill, "spread_cost": "20"}), "event.rejected")
    assert refused["reason"] == "conflicting_duplicate"
    assert refused["cause_id"] == fill["id"]
    assert s.wallet().balance == 1


def test_a_fill_id_applied_twice_under_two_event_ids_is_a_conflict(s: Scenario) -> None:
    s.fill("std", "f1", spread_cost="10")
    refused = one(s.fill("std", "f1", spread_cost="10"), "event.rejected")
    assert refused["reason"] == "conflicting_duplicate"


def test_a_deposit_id_applied_twice_is_a_conflict(s: Scenario) -> None:
    s.deposit("std", "100", 50, deposit_id="d1")
    refused = one(s.deposit("std", "100", 50, deposit_id="d1"), "event.rejected")
    assert refused["reason"] == "conflicting_duplicate"


def test_events_older_than_the_dedupe_window_are_stale(s: Scenario) -> None:
    s.advance(days=8)
    s.fill("std", "f1", spread_cost="10")
    late = s.event("trade.fill", client_id="c1", account_id="std", fill_id="f0", symbol="EURUSD",
                   action="open", lots="1", spread_cost="10", commission="0")
    late["ts"] = "2026-11-24T10:00:00Z"
    assert one(s.send(late), "event.rejected")["reason"] == "stale_event"


def test_unknown_client(s: Scenario) -> None:
    refused = one(s.fill("std", "f1", client_id="ghost"), "event.rejected")
    assert (refused["reason"], refused["client_id"]) == ("unknown_client", "ghost")


def test_unknown_account_on_a_fill(s: Scenario) -> None:
    assert one(s.fill("nope", "f1"), "event.rejected")["reason"] == "unknown_account"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "malformed"),
    (b"[1, 2]", "malformed"),
    (b"\xff\xfe\x00", "malformed"),
    (b'{"type": "trade.amend", "id": "x1"}', "unknown_type"),
    (b'{"id": "x1"}', "unknown_type"),
    (b'{"type": "deposit", "id": "x1", "ts": "2026-11-24T10:00:00Z", "client_id": "c1", '
     b'"account_id": "std", "deposit_id": "d", "amount": 100.5, "source": "external"}', "invalid_field"),
    (b'{"type": "deposit", "id": "x1", "ts": "2026-11-24T10:00:00Z", "client_id": "c1", '
     b'"account_id": "std", "deposit_id": "d", "amount": "-100", "source": "external"}', "invalid_field"),
    (b'{"type": "deposit", "id": "x1", "ts": "2026-11-24T10:00:00+02:00", "client_id": "c1", '
     b'"account_id": "std", "deposit_id": "d", "amount": "100", "source": "external"}', "invalid_field"),
    (b'{"type": "trade.bust", "id": "x1", "ts": "2026-11-24T10:00:00Z", "client_id": "c1"}', "invalid_field"),
])
def test_bad_input_is_rejected_with_its_raw_bytes_and_processing_goes_on(
        s: Scenario, raw: bytes, reason: str) -> None:
    refused = one(s.send_raw(raw), "event.rejected")
    assert refused["reason"] == reason
    assert refused["error"]
    if refused["raw_encoding"] == "utf-8":
        assert refused["raw"].encode() == raw
    else:
        import base64

        assert base64.b64decode(refused["raw"]) == raw
    assert refused["raw_size"] == len(raw) and refused["raw_blake2b"] == hashlib.blake2b(raw, digest_size=8).hexdigest()
    assert refused["source"] == s.last_source()
    # and the stream goes on
    assert of_type(s.fill("std", "after", spread_cost="10"), "cashback.accrued")


def test_output_ids_are_deterministic_and_name_their_cause() -> None:
    def run() -> list[dict]:
        s = Scenario()
        s.client("c1")
        s.account("std")
        s.deposit("std", "100", 100)
        s.fill("std", "f1", lots="3", spread_cost="5")
        s.emit("trade.bust", client_id="c1", fill_id="f1")
        return s.outputs

    first, second = run(), run()
    assert first == second
    ids = [o["id"] for o in first]
    assert len(ids) == len(set(ids)), "output ids are unique"
    assert all(o["cause_id"] in o["id"] for o in first)


def test_history_forgets_what_its_windows_no_longer_need(s: Scenario) -> None:
    s.fill("std", "f1", spread_cost="10")
    history = s.engine.histories["c1"]
    assert "f1" in history.fills and len(history.seen_ids) == 5   # register, verify, open, validate, fill
    s.advance(days=8)
    s.fill("std", "f2", spread_cost="10")
    assert set(history.seen_ids) == {f"e{s.count}"}      # ids older than the dedupe window go
    # a fill is kept while an admissible bust (up to 7 days behind the newest event) could still
    # find it within twice the bust window: 7 + 14 days
    s.advance(days=12, hours=23)
    s.fill("std", "f3", spread_cost="10")
    assert set(history.fills) == {"f1", "f2", "f3"}
    s.advance(days=2)
    s.fill("std", "f4", spread_cost="10")
    assert set(history.fills) == {"f2", "f3", "f4"}


def test_a_forgotten_fill_is_unknown_and_a_late_one_expired(s: Scenario) -> None:
    s.fill("std", "f1", spread_cost="10")
    s.fill("std", "f2", spread_cost="10")
    s.advance(days=8)
    assert one(s.emit("trade.bust", client_id="c1", fill_id="f1"), "event.rejected")["reason"] == "bust_window_expired"
    s.advance(days=7)
    assert one(s.emit("trade.bust", client_id="c1", fill_id="f2"), "event.rejected")["reason"] == "unknown_fill"


@pytest.mark.parametrize(("raw", "kept"), [
    (b'{"type": "trade.fill", "note": "' + b"x" * 50_000_000 + b'"}', 4096),
    # a cut inside a 3-byte character keeps the characters before it
    (b'{"note": "' + "\u20ac".encode() * 30_000 + b'"}', 4096 - (4096 - 10) % 3),
    (b"\xff" + b"y" * 100_000, 4096),
])
def test_a_long_input_is_rejected_with_its_first_bytes_its_size_and_its_hash(
        s: Scenario, raw: bytes, kept: int) -> None:
    refused = one(s.send_raw(raw), "event.rejected")
    copy = refused["raw"].encode() if refused["raw_encoding"] == "utf-8" else base64.b64decode(refused["raw"])
    assert copy == raw[:kept]
    assert refused["raw_size"] == len(raw)
    assert refused["raw_blake2b"] == hashlib.blake2b(raw, digest_size=8).hexdigest()
    assert len(orjson.dumps(refused)) < 8 * 1024


def test_text_that_is_not_utf8_is_refused_in_plain_words(s: Scenario) -> None:
    raw = b'{"type": "deposit", "id": "caf\xe9"}'  # Latin-1, as a misconfigured source writes it
    refused = one(s.send_raw(raw), "event.rejected")
    assert refused["reason"] == "malformed"
    assert refused["error"] == (f"not UTF-8 text: byte 0xe9 at offset {raw.index(0xe9)} is not part of a UTF-8 "
                                "character (inputs are JSON objects in UTF-8)")
