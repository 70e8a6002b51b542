"""Which partition a key lands in: Kafka's default partitioner (murmur2 of the key bytes), so
that records the worker places by hand sit where a keyed producer would have put them. Touch it
only if Kafka's partitioner changes: every keyed record of the worker depends on it."""

from __future__ import annotations

from typing import Final

from aiokafka.partitioner import murmur2

# murmur2 is pure Python in aiokafka (~3 us for a client id), and the worker hashes a key for
# every record it places and every input it checks; keys (client and partner ids) come again
# and again, so each hash is remembered, up to a bound.
HASHES_KEPT_MAX: Final = 65_536
_hashes: dict[bytes, int] = {}


def partition_for(key: bytes, partitions: int) -> int:
    hashed = _hashes.get(key)
    if hashed is None:
        if len(_hashes) >= HASHES_KEPT_MAX:
            _hashes.clear()
        hashed = _hashes[key] = murmur2(key) & 0x7FFFFFFF
    return hashed % partitions


def hashes_remembered() -> int:
    """How many key hashes are remembered now (at most HASHES_KEPT_MAX)."""
    return len(_hashes)


def partition_of_value(value: bytes, partitions: int) -> int:
    """A record without a key: by the hash of its value (each value once: not remembered)."""
    hashed: int = murmur2(value)
    return (hashed & 0x7FFFFFFF) % partitions
