"""Which partition a key lands in: Kafka's default partitioner (murmur2 of the key bytes), so
that records the worker places by hand sit where a keyed producer would have put them."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions
