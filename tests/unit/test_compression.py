"""lz4 in its fast mode (streams.connect.fast_lz4): the record batches a producer with
REWARDS_COMPRESSION=lz4 builds are compressed at lz4 level 1, not aiokafka's level 9, and read back
to the same records."""

from __future__ import annotations

import cramjam
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from streams import connect
from streams.settings import Settings

LZ4 = 3  # the attributes' codec bits for lz4 in a record batch


HEADER = 61  # a record batch's header (magic 2), before its records


def lz4(payload: bytes, level: int) -> bytes:
    compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
    compressor.compress(payload)
    return bytes(compressor.finish())


async def test_a_producer_with_lz4_compresses_in_lz4s_fast_mode() -> None:
    values = [b'{"type":"trade.fill","event_id":"ev-%d","client_id":"c%d","lots":"1.25"}' % (i, i % 97)
              for i in range(2000)]
    producer = connect.producer(Settings.from_env({}, compression="lz4"))
    del producer  # never started: made for what making one sets up
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=LZ4, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=10 * 1024 * 1024)
    for offset, value in enumerate(values):
        assert builder.append(offset, timestamp=None, key=None, value=value, headers=[]) is not None
    batch = bytes(builder.build())
    compressed = batch[HEADER:]
    records = bytes(cramjam.lz4.decompress(compressed))
    assert lz4(records, 1) != lz4(records, 9)  # lz4 is deterministic: the bytes say which level made them
    assert compressed == lz4(records, connect.LZ4_LEVEL) == lz4(records, 1)
    read = MemoryRecords(batch).next_batch()
    assert read is not None
    assert [record.value for record in read] == values
