"""The sequencer agent: every input copied, untouched, into the sequenced log, with its own
aiokafka consumer in its own group, ``<app>-sequencer``, reading batches straight from Kafka.

It does not go through a Faust stream, whose per-message machinery held the worker below the
rate of a naive Faust agent. Copying is at-least-once: a batch's offsets are committed after
Kafka has acknowledged its copies, so a crash or a rebalance in between copies the batch again,
and the ledger recognises each such copy by its source position (streams.ledger)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams import wire
from streams.ledger import Send
from streams.ledgerloop import consume_batches, group_consumer
from streams.partitioning import partition_for

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger("rewards.sequencer")


class SequencerLoop:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.consumer: AIOKafkaConsumer = None  # made in the worker's event loop, by run
        self.copied: dict[TopicPartition, int] = {}  # the next offset to copy, per partition
        self.started = False

    async def run(self) -> None:
        self.consumer = consumer = group_consumer(self.settings, self.settings.sequencer_group,
                                                  *self.settings.input_topics)
        await consumer.start()
        self.started = True
        try:
            await consume_batches(consumer, self.settings, self._copy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("sequencer batch failed; stopping so the worker restarts from committed offsets",
                         exc_info=exc)
            await self.worker.app.crash(exc)
            raise
        finally:
            self.started = False
            await consumer.stop()

    async def _copy(self, batch: dict[TopicPartition, list[Any]]) -> None:
        n, broadcast = self.settings.partitions, set(self.settings.broadcast_topics)
        sequenced = self.settings.sequenced_topic
        sends: list[Send] = []
        for tp, messages in batch.items():
            for message in messages:
                source = wire.Source(tp.topic, tp.partition, message.offset).header()
                if tp.topic in broadcast:
                    headers = [(wire.H_SOURCE, source), (wire.H_KIND, wire.KIND_BROADCAST)]
                    sends += [Send(sequenced, None, message.value, p, headers) for p in range(n)]
                else:
                    key = message.key or b""
                    headers = [(wire.H_SOURCE, source), (wire.H_KIND, wire.KIND_INPUT)]
                    sends.append(Send(sequenced, key, message.value, partition_for(key, n), headers))
        await self.worker.send_all(sends)
        positions = {tp: messages[-1].offset + 1 for tp, messages in batch.items()}
        self.copied.update(positions)
        try:
            await self.consumer.commit(positions)
        except KafkaError as exc:  # a rebalance under way: the next holder copies these again
            log.info("commit of copied offsets failed (%r); they will be copied again", exc)

    def offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, next offset to copy, end offset) of each input partition held."""
        if not self.started:
            return []
        return [(tp.topic, tp.partition, self.copied.get(tp), self.consumer.highwater(tp))
                for tp in sorted(self.consumer.assignment())]
