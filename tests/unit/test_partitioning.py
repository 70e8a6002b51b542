"""The worker places records where Kafka's default partitioner would: murmur2 of the key."""

from aiokafka.partitioner import murmur2

from streams.worker import partitioning
from streams.worker.partitioning import hashes_remembered, partition_for, partition_of_value

# Kafka's own test vectors for its murmur2 (clients' UtilsTest.testMurmur2), signed 32-bit.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_the_partition_is_kafkas_for_its_test_vectors_first_time_and_remembered() -> None:
    for _ in range(2):  # computed, then remembered
        for key, signed in KAFKA_MURMUR2.items():
            for partitions in (1, 3, 24, 72):
                assert partition_for(key, partitions) == (signed & 0x7FFFFFFF) % partitions


def test_remembered_hashes_are_bounded_and_stay_right_past_the_bound() -> None:
    keys = [f"c{n:07d}".encode() for n in range(partitioning.HASHES_KEPT_MAX + 10)]
    for key in keys:
        partition_for(key, 24)
    assert hashes_remembered() <= partitioning.HASHES_KEPT_MAX
    for key in keys[:50] + keys[-50:]:
        assert partition_for(key, 24) == (murmur2(key) & 0x7FFFFFFF) % 24


def test_a_value_hash_is_not_remembered() -> None:
    partition_for(b"c0000001", 24)
    before = hashes_remembered()
    value = b'{"type":"x","id":"unique-value-never-a-key"}'
    assert partition_of_value(value, 24) == (murmur2(value) & 0x7FFFFFFF) % 24
    assert hashes_remembered() == before
