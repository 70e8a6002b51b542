"""One contract for both places a client's history (handlers.history.ClientHistory) lives: the
offline engine's store, and the worker's, the same store journaling its changes to the state
changelog (inside a partition ledger whose batches are committed to a changelog and recovered
from it between the operations). The same operations must give the same answers from both."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.history import ClientHistory
from handlers.rules import Rules
from handlers.state import FillRecord, Parked, Seen
from streams.worker.ledger import PartitionLedger
from tests.support import TOPICS, apply_writes
KEYS = st.sampled_from(["a", "b", "c"])
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("remember"), KEYS, st.integers(0, 9)),
    st.tuples(st.just("put_fill"), KEYS, st.integers(0, 9)),
    st.tuples(st.just("put_deposit"), KEYS, st.integers(0, 9)),
    st.tuples(st.just("put_parked"), st.lists(st.integers(0, 9), max_size=3), st.just(0)),
    st.tuples(st.just("commit"), st.just(""), st.just(0)),       # the worker: end of a batch
    st.tuples(st.just("recover"), st.just(""), st.just(0)),      # the worker: restart from its table
), max_size=40)


class MemoryStore:
    def __init__(self) -> None:
        self.history = ClientHistory()

    def __call__(self) -> ClientHistory:
        return self.history

    def commit(self) -> None:
        pass

    def recover(self) -> None:
        pass


class JournaledStore:
    """A worker's partition: every operation is a record of the batch under way."""

    def __init__(self) -> None:
        self.changelog: dict[bytes, bytes] = {}
        self.ledger = self._ledger()

    def _ledger(self) -> PartitionLedger:
        ledger = PartitionLedger(0, 1, Rules.default(), TOPICS, dict(self.changelog))
        if ledger.last < 0:
            ledger.start_at(0)
        return ledger

    def __call__(self) -> ClientHistory:
        self.ledger.store.last += 1  # the write belongs to the next record
        return self.ledger.store.history("c1")

    def commit(self) -> None:
        apply_writes(self.changelog, self.ledger.store.flush()[1])

    def recover(self) -> None:
        self.commit()
        self.ledger = self._ledger()


def fill(n: int) -> FillRecord:
    return FillRecord(cause_id=f"e{n}", ts_us=n, account_id="a1", cashback=Decimal(n), covered=Decimal(0),
                      turnover=[("b1", Decimal("0.5"))], rebate=Decimal("0.1"), commission=Decimal(0),
                      partner_id="p1", pnl=Decimal("-2.5"))


def run(store: Any, operations: list[tuple[str, Any, int]]) -> list[object]:
    answers: list[object] = []
    for name, key, n in operations:
        if name == "commit":
            store.commit()
        elif name == "recover":
            store.recover()
        elif name == "remember":
            store().remember(key, Seen(bytes([n]), n, f"t:0:{n}"))
        elif name == "put_fill":
            store().put_fill(key, fill(n))
        elif name == "put_deposit":
            store().put_deposit(key, n)
        else:
            store().put_parked([Parked(ts, b"raw", "", {"line": ts}) for ts in key])
        history = store()
        answers.append([(history.seen(k), history.fill(k), history.deposit(k)) for k in "abc"] + [history.parked()])
    return answers


@settings(max_examples=200)
@given(OPERATIONS)
def test_both_history_stores_give_the_same_answers(operations: list[tuple[str, Any, int]]) -> None:
    assert run(JournaledStore(), operations) == run(MemoryStore(), operations)


@pytest.mark.parametrize("make", [MemoryStore, JournaledStore], ids=["memory", "journaled"])
def test_a_store_gives_back_what_was_put(make: Callable[[], Any]) -> None:
    answers = run(make(), [("remember", "a", 1), ("put_fill", "a", 2), ("commit", "", 0), ("put_deposit", "b", 3),
                           ("recover", "", 0), ("put_parked", [5, 6], 0)])
    seen, filled, _ = answers[-1][0]  # type: ignore[index]
    assert seen == Seen(b"\x01", 1, "t:0:1") and filled == fill(2)
    assert answers[-1][1][2] == 3  # type: ignore[index]
    assert [p.ts_us for p in answers[-1][3]] == [5, 6]  # type: ignore[index]
