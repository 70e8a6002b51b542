"""The engine machine's random event sequences (test_engine_machine) also go through a worker's
partition ledger, as the sequenced log it would read, with what the worker lives through: random
batch cuts, crashes at a batch's commit (its transaction committed or aborted), restarts that
apply the log again from the state's own position, records the sequencer copied twice, a cache
that forgets, and days passing, so that histories are swept and their entries tombstoned. At
the end the worker must have sent exactly the offline engine's outputs (every id, byte for
byte, the ledger's in the same order; a second copy only ever repeats the first), hold the same
client states, and its changelog must hold exactly the history its stores hold.

The identity registry and the commission book are played in process: a verdict record follows
each identity request in the log (the first claimant owns the identity, as the offline engine
decides), and the commission reports go to a CommissionPartition of one partition."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from handlers.welcome import IdentityRegistry
from streams.worker import wire
from streams.worker.commissions import CommissionPartition
from streams.worker.ledger import PartitionLedger, Record
from streams.worker.ports import Topics
from streams.worker.wire import Send
from tests.property.test_engine_machine import RULES, EngineMachine
from tests.support import apply_writes, assert_journal_is_the_store
from schemas.codec import encode_output

def normal(value: bytes) -> tuple[str, bytes]:
    """(id, content): a rejection's ``source`` says where the input was read (a file line
    offline, a sequenced offset in the worker), so it is left out of the comparison."""
    doc = orjson.loads(value)
    doc.pop("source", None)
    return doc["id"], orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


TOPICS = Topics(ledger="ledger", deadletter="dead", identity="identity", commissions="commissions", sequenced="seq")


class LedgerMachine(EngineMachine):
    def __init__(self) -> None:
        self.log: list[Record] = []
        self.changelog: dict[bytes, bytes] = {}  # what reached the state changelog
        self.ledger = self._recovered()
        self.book = CommissionPartition(0, 1, RULES, TOPICS, {})
        self.owners = IdentityRegistry()
        self.worker_sent: dict[tuple[str, bytes], int] = {}  # (output id, content) -> order first sent
        self.commits = self.crashes = self.recopies = 0
        super().__init__()

    # -- the worker's side ----------------------------------------------------------------------
    def _recovered(self) -> PartitionLedger:
        ledger = PartitionLedger(0, 1, RULES, TOPICS, dict(self.changelog))
        if ledger.last < 0:
            ledger.start_at(0)
        return ledger

    def send_raw(self, raw: bytes) -> list[dict[str, Any]]:
        outputs = super().send_raw(raw)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = {}
        client = doc.get("client_id") if isinstance(doc, dict) else None
        kind = wire.KIND_INPUT if isinstance(client, str) or not isinstance(doc, dict) else wire.KIND_BROADCAST
        key = client.encode() if isinstance(client, str) else None
        self._append(key, raw, {wire.H_SOURCE: wire.Source("in", 0, len(self.log)).header(), wire.H_KIND: kind})
        return outputs

    def _append(self, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        self.log.append(Record(len(self.log), key, value, headers))
        self._apply_to_end()

    def _apply_to_end(self) -> None:
        while self.ledger.last + 1 < len(self.log):
            record = self.log[self.ledger.last + 1]
            self.ledger.handle(record)
            assert self.ledger.last == record.offset
            for send in self.ledger.outbox.take().sends:
                self._deliver(send)

    def _deliver(self, send: Send) -> None:
        if send.topic == TOPICS.identity:
            request = wire.identity_requests.decode(send.value)
            verdict = wire.Verdict(request.client_id, request.claim,
                                   self.owners.claim(request.identity_hash, request.client_id))
            self.log.append(Record(len(self.log), request.client_id.encode(), wire.encode(verdict),
                                   {wire.H_KIND: wire.KIND_VERDICT}))
        elif send.topic == TOPICS.commissions:
            for payout in self.book.receive(wire.commission_reports.decode(send.value)):
                self._sent(encode_output(payout))
        else:
            self._sent(send.value)

    def _sent(self, value: bytes) -> None:
        """A second copy of an output (the same id and content) is what a re-applied batch
        sends; any other output must be the offline engine's too. (One id may carry two
        contents: the same raw bytes rejected twice for different reasons, offline as well.)"""
        self.worker_sent.setdefault(normal(value), len(self.worker_sent))

    # -- what the worker lives through -----------------------------------------------------
    @rule(crash=st.booleans(), committed=st.booleans())
    def commit(self, crash: bool, committed: bool) -> None:
        """The batch's state writes go to the changelog in its transaction; with ``crash``, the
        worker is killed at the commit, which went through or not (``committed``), and the next
        one applies the log again from the position its recovered state gives."""
        _, writes = self.ledger.store.flush()
        if committed or not crash:
            apply_writes(self.changelog, writes)
        self.commits += 1
        if crash:
            self.restart()

    @rule()
    def restart(self) -> None:
        """Killed: everything since the last commit that landed is applied again."""
        self.crashes += 1
        self.ledger = self._recovered()
        self._apply_to_end()

    @precondition(lambda self: len(self.log) > 3)
    @rule(back=st.integers(1, 3))
    def recopy(self, back: int) -> None:
        """The sequencer copied a recent input again (it crashed between copying and committing).
        Only one within the dedupe window of the newest event: an older one is dead-lettered
        ``stale_event`` instead of skipped (docs/design.md, Known problems)."""
        original = self.log[-back]
        try:
            ts = datetime.fromisoformat(orjson.loads(original.value)["ts"].replace("Z", "+00:00"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if wire.H_SOURCE in original.headers and ts > self.now - timedelta(days=6):
            self.recopies += 1
            before = len(self.worker_sent)
            self._append(original.key, original.value, original.headers)
            assert len(self.worker_sent) == before, "a second copy had a new effect"

    @rule()
    def forget_cache(self) -> None:
        self.commit(False, True)
        self.ledger.store.forget_cache()

    # -- the comparison ----------------------------------------------------------------------
    @invariant()
    def the_worker_sent_what_the_engine_sent(self) -> None:
        offline = list(dict.fromkeys(map(normal, self.all_outputs)))
        worker = sorted(self.worker_sent, key=self.worker_sent.__getitem__)
        assert set(worker) == set(offline)

        def ledger(outputs: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            # the commission book's payouts come after the ledger's outputs of their close
            return [o for o in outputs if not o[0].startswith(("commission.payout:", "override.payout:"))]
        assert ledger(worker) == ledger(offline)

    def teardown(self) -> None:
        super().teardown()
        self.commit(False, True)
        recovered = self._recovered()
        for client_id, client in self.engine.clients.items():
            assert msgspec.msgpack.encode(recovered.store.get(client_id)) == msgspec.msgpack.encode(client), client_id
        assert recovered.last == len(self.log) - 1
        assert_journal_is_the_store(self.ledger, recovered)


LedgerMachine.TestCase.settings = settings(
    settings.default, max_examples=max(100, settings.default.max_examples), stateful_step_count=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestLedgerMachine = LedgerMachine.TestCase
