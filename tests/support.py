"""Builds input events the way a broker's systems would send them, and runs them through the
engine (or, with ``store="worker"``, through the worker's ledger). Ids and timestamps advance by
themselves so tests state only what matters."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from handlers.engine import Engine
from handlers.history import ClientHistory
from handlers.rules import Rules
from handlers.clientstate import ClientState
from schemas.outputs import OutputEvent
from streams.worker import wire
from streams.worker.ledger import PartitionLedger, Record
from streams.worker.ports import Topics
from schemas.codec import encode_output

TOPICS = Topics(ledger="ledger", deadletter="dead", identity="identity", commissions="commissions", sequenced="seq")


def without_parking(rules: Rules) -> Rules:
    """The rules of each program are tested one input at a time: an input whose prerequisite is
    missing gets its answer at once. Parking has tests of its own (tests/unit/test_parking.py)."""
    return dataclasses.replace(rules, park_window_us=0)


def apply_writes(changelog: dict[bytes, bytes], writes: list[tuple[bytes, bytes | None]]) -> None:
    """State writes reaching a compacted changelog, read back as a table: a tombstone removes its key."""
    for key, value in writes:
        if value is None:
            changelog.pop(key, None)
        else:
            changelog[key] = value


def sequenced(raw: bytes, offset: int) -> Record:
    """An input as the sequencer copies it into the one partition of a log of one: keyed by its
    client, or a broadcast when it names none."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    client = doc.get("client_id") if isinstance(doc, dict) else None
    kind = wire.KIND_BROADCAST if isinstance(doc, dict) and not isinstance(client, str) else wire.KIND_INPUT
    return Record(offset, client.encode() if isinstance(client, str) else None, raw,
                  {wire.H_SOURCE: wire.Source("in", 0, offset).header(), wire.H_KIND: kind})


def history_entries(history: ClientHistory) -> tuple[Any, ...]:
    return history.seen_ids, history.fills, history.deposits, history.queue


def assert_journal_is_the_store(running: PartitionLedger, recovered: PartitionLedger) -> None:
    """What a worker recovers from the changelog, every history entry a tombstone has not
    removed, is what the running one holds."""
    held = {c: history_entries(h) for c, h in running.store.histories.items() if any(history_entries(h))}
    assert {c: history_entries(h) for c, h in recovered.store.histories.items()} == held


class WorkerEngine:
    """The worker's ledger behind the offline engine's ``process``: each input is a record of a
    sequenced log of one partition and a batch of its own, whose state writes reach
    ``changelog``. Its commission reports go to the worker's commission book (of one
    partition), whose payouts come out with the ledger's outputs. Welcome claims wait for a
    registry that is not here."""

    def __init__(self, rules: Rules) -> None:
        from streams.worker.commissions import CommissionPartition

        self.rules = rules
        self.changelog: dict[bytes, bytes] = {}
        self.ledger = PartitionLedger(0, 1, rules, TOPICS, {})
        self.ledger.start_at(0)
        self.book = CommissionPartition(0, 1, rules, TOPICS, {})

    def process(self, raw: bytes, source: dict[str, Any]) -> list[OutputEvent]:
        self.ledger.handle(sequenced(raw, self.ledger.last + 1))
        outbox = self.ledger.outbox.take()
        outputs = list(outbox.outputs)
        for send in outbox.sends:
            if send.topic == TOPICS.commissions and send.value is not None:
                outputs += self.book.receive(wire.commission_reports.decode(send.value))
        apply_writes(self.changelog, self.ledger.store.flush()[1])
        return outputs

    def recovered(self) -> PartitionLedger:
        """The partition as a worker starting now would recover it from the changelog."""
        return PartitionLedger(0, 1, self.rules, TOPICS, dict(self.changelog))

    @property
    def histories(self) -> Any:
        return self.ledger.store.histories

    @property
    def clients(self) -> dict[str, ClientState]:
        return {c: state for c in self.ledger.store.histories if (state := self.ledger.store.get(c)) is not None}


class Scenario:
    def __init__(self, rules: Rules | None = None, start: str = "2026-11-24T09:00:00Z",
                 parking: bool = False, store: str = "offline") -> None:
        rules = rules or Rules.default()
        rules = rules if parking else without_parking(rules)
        self.engine: Any = Engine(rules) if store == "offline" else WorkerEngine(rules)
        self.now = datetime.fromisoformat(start)
        self.count = 0
        self.outputs: list[dict[str, Any]] = []

    # -- time and raw sending ------------------------------------------------------------
    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def ts(self) -> str:
        return self.now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        self.count += 1
        self.advance(seconds=1)
        return {"type": event_type, "id": f"e{self.count}", "ts": self.ts(), **fields}

    def send_raw(self, raw: bytes) -> list[dict[str, Any]]:
        outs = [orjson.loads(encode_output(o)) for o in self.engine.process(raw, {"line": self.count})]
        self.outputs.extend(outs)
        return outs

    def send(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self.send_raw(orjson.dumps(event))

    def emit(self, event_type: str, **fields: Any) -> list[dict[str, Any]]:
        return self.send(self.event(event_type, **fields))

    def last_source(self) -> dict[str, Any]:
        """Where the last input was read, as a rejection's ``source`` tells it."""
        if isinstance(self.engine, WorkerEngine):
            return {"topic": "in", "partition": 0, "offset": self.engine.ledger.last}
        return {"line": self.count}

    # -- the usual steps of a client's life ----------------------------------------------
    def client(self, client_id: str = "c1", country: str = "DE", verified: bool = True,
               identity: str | None = None) -> None:
        self.emit("client.registered", client_id=client_id, country=country)
        if verified:
            self.emit("client.verified", client_id=client_id, id_document=True, phone=True,
                      identity_hash=identity or f"person-{client_id}")

    def account(self, account_id: str, account_type: str = "standard", client_id: str = "c1",
                currency: str | None = None, validated: bool = True, conditions: str | None = None) -> None:
        currency = currency or ("USC" if account_type == "standard_cent" else "USD")
        fields: dict[str, Any] = {"account_type": account_type, "currency": currency}
        if account_type == "welcome":
            fields["conditions"] = conditions or "standard"
        self.emit("account.opened", client_id=client_id, account_id=account_id, **fields)
        if validated:
            self.emit("account.validated", client_id=client_id, account_id=account_id)

    def fill(self, account_id: str, fill_id: str, action: str = "close", lots: str = "1",
             spread_cost: str = "0", commission: str = "0", client_id: str = "c1",
             **extra: Any) -> list[dict[str, Any]]:
        return self.emit("trade.fill", client_id=client_id, account_id=account_id, fill_id=fill_id,
                         symbol="EURUSD", action=action, lots=lots, spread_cost=spread_cost,
                         commission=commission, **extra)

    def deposit(self, account_id: str, amount: str, bonus_percent: int | None = None,
                source: str = "external", client_id: str = "c1", deposit_id: str | None = None) -> list[dict[str, Any]]:
        return self.emit("deposit", client_id=client_id, account_id=account_id,
                         deposit_id=deposit_id or f"d{self.count + 1}", amount=amount,
                         source=source, bonus_percent=bonus_percent)

    def allocate(self, account_id: str, amount: str, client_id: str = "c1") -> list[dict[str, Any]]:
        return self.emit("wallet.allocate", client_id=client_id, account_id=account_id, amount=amount)

    def plan(self, partner_id: str, rebate: dict[str, str], commission: dict[str, str]) -> list[dict[str, Any]]:
        return self.emit("partner.plan", partner_id=partner_id, rebate_per_lot=rebate,
                         commission_per_lot=commission)

    def close_day(self, date: str) -> list[dict[str, Any]]:
        return self.emit("settlement.day_closed", date=date)

    # -- reading state -------------------------------------------------------------------
    def wallet(self, client_id: str = "c1") -> Any:
        return self.engine.clients[client_id].wallet


def of_type(outputs: list[dict[str, Any]], output_type: str) -> list[dict[str, Any]]:
    return [o for o in outputs if o["type"] == output_type]


def one(outputs: list[dict[str, Any]], output_type: str) -> dict[str, Any]:
    found = of_type(outputs, output_type)
    assert len(found) == 1, f"expected one {output_type}, got {outputs}"
    return found[0]


def default_signals() -> None:
    """``preexec_fn`` of a child process a test signals: SIGINT and SIGTERM back to their
    defaults there, since the suite may run with them ignored (a background job), which a child
    inherits."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
