"""The position half of a processor that keeps its position in its state (streams.worker.processor):
``last``, and whether a record is new. Touch it only with the runtime's skip rule in mind."""

from __future__ import annotations

from typing import Protocol


class _Stamped(Protocol):
    last: int  # the last input offset the state has applied (-1: none)


class OwnPosition:
    """For a processor whose state (``self.state``) carries ``last``."""

    state: _Stamped

    @property
    def last(self) -> int:
        return self.state.last

    def start_at(self, offset: int) -> None:
        """Nothing applied yet: the first record is at ``offset`` (the log's first)."""
        assert self.state.last == -1
        self.state.last = offset - 1

    def advance(self, offset: int) -> bool:
        """Whether the record at ``offset`` is new: True (it is now the last applied), False
        (applied before a restart: skip it). Offsets have holes where transaction markers
        stand; a batch read before the consumer was sought is dropped by the runtime."""
        state = self.state
        if offset <= state.last:
            return False
        state.last = offset
        return True
