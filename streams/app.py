"""The stream worker: a Faust app (web server, tables, one agent) and three loops of its own.

    sequencer   input topics -> <app>.sequenced   (one recorded order per client; broadcasts)
                (its own aiokafka consumer, group <app>-sequencer: streams.sequencerloop)
    ledger      <app>.sequenced -> ledger, dead letters, identity requests, commission reports
                (its own consumer, group <app>-ledger, and state changelog: streams.ledgerloop)
    identity    identity requests, ledger progress -> verdicts back into <app>.sequenced
                (one bonus per person, in ts order; its own consumer, group <app>-identity,
                and changelog: streams.registryloop)
    commissions commission reports -> commission.payout (a partner's total over all partitions)

Everything runs at-least-once, one batch or message at a time; effectively-once is built in
``streams.ledger`` (Faust's exactly_once mode is not relied on). The sequencer's and the Faust
agent's re-reads are harmless (see Worker._watch_progress); the ledger's and the registry's would
not be, which is why they keep their own positions in their state.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TP

import orjson

from handlers.rules import Rules
from streams import wire
from streams.commissions import CommissionAggregator
from streams.metrics import Metrics
from streams.ledger import Send, Topics
from streams.ledgerloop import LedgerLoop
from streams.registryloop import RegistryLoop
from streams.sequencerloop import SequencerLoop
from streams.partitioning import partition_for
from streams.readmodel import ReadModel
from streams.settings import Settings

log = logging.getLogger("rewards")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("rewards", "faust-streaming", "aiokafka"):
        try:
            found[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            found[package.replace("-", "_")] = "unknown"
    return found


class Worker:
    def __init__(self, settings: Settings, rules: Rules) -> None:
        self.settings, self.rules = settings, rules
        n = settings.partitions
        self.app = app = faust.App(
            settings.group,
            broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
            store="memory://",
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=n,
            topic_replication_factor=settings.replication,
            processing_guarantee="at_least_once",
            producer_acks=-1,
            producer_max_request_size=4 * 1024 * 1024,
            producer_max_batch_size=512 * 1024,
            consumer_auto_offset_reset="earliest",
            web_enabled=True,
            web_host=settings.web_host,
            web_port=settings.web_port,
            datadir=settings.data_dir,
            stream_wait_empty=False,
            broker_commit_every=settings.batch_max,
            broker_commit_interval=1.0,
            # A worker killed outright holds its partitions until its session expires: keep that
            # short, so that a replacement takes over in seconds, not a minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            # Faust stops fetching a partition whose stream queue is "under pressure" and counts
            # on a pressure-drop callback to resume it; that callback was seen never to come,
            # leaving one partition stalled for good (faust-streaming issues #175, #640). The
            # queue is made large enough that this pause never triggers.
            stream_buffer_maxsize=262_144,
        )
        self.topics = Topics(ledger=settings.ledger_topic, deadletter=settings.deadletter_topic,
                             identity=settings.identity_topic, commissions=settings.commission_topic,
                             sequenced=settings.sequenced_topic)
        self.commission_reports = app.topic(settings.commission_topic, partitions=n, key_serializer="raw",
                                            value_serializer="raw")
        self.partner_ledgers = app.Table("partners", partitions=n, key_type=bytes, value_type=bytes)
        self.closes = app.Table("closes", partitions=n, key_type=bytes, value_type=bytes)
        self.metrics = Metrics()
        self._partition_counts: dict[str, int] = {}
        self._consumed = {settings.commission_topic}
        self.read_model = ReadModel(settings.redis_url, settings.redis_prefix, rules)
        self.applied = 0
        self.skipped = 0
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()

        app.agent(self.commission_reports, name="commissions", concurrency=1)(self.commissions)
        # The sequencer, the ledger and the identity registry read with consumers of their own
        # (their modules say why).
        self.sequencer = SequencerLoop(self)
        self.ledger = LedgerLoop(self)
        self.registry = RegistryLoop(self)
        app.task(self.sequencer.run)
        app.task(self.ledger.run)
        app.task(self.registry.run)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_before_shutdown.connect(self._stop_producer)
        app.timer(interval=5.0)(self._watch_progress)
        app.task(self._quiet_client_logs)
        self.versions = versions()
        self.metrics.info.info(self.versions)
        self.started_at = time.time()
        self._progress: dict[TP, tuple[int | None, float]] = {}

        from streams import api

        api.register(self)

    # -- commissions -----------------------------------------------------------------------------------
    async def commissions(self, stream: Any) -> None:
        """A partner's commission is paid once every partition has reported its share."""
        aggregator = CommissionAggregator(self.settings.partitions, self.rules, self.closes, self.partner_ledgers)
        async for event in stream.events():
            report = wire.commission_reports.decode(event.message.value)
            payouts = aggregator.receive(report, event.message.partition)
            await self.send_all([Send(self.topics.ledger, p.partner_id.encode(), orjson.dumps(p))  # type: ignore[attr-defined]
                                  for p in payouts])
            aggregator.flush()

    def assigned_partitions(self) -> list[int]:
        """The partitions of the sequenced log this worker holds now."""
        return self.ledger.assignment()

    async def _watch_progress(self) -> None:
        """Every 5 s: the offsets and lag of the partitions held, for /metrics and the status
        page; and the repair of a partition whose commit is stuck.

        Faust commits a partition up to its first offset not yet acknowledged. A message that
        its stream skipped (it does so, without acknowledging it, for a message fetched across
        a rebalance or while flow control is off) therefore holds the partition's commit back
        for good, while reading goes on: the group's lag never reaches zero, and a restart
        re-reads everything after it. Seen here under a large backlog. The repair is to
        re-read the partition from its committed offset: the skipped message is then
        processed, and what follows it again is recognised (commission reports by their close
        and partition), so re-reading has no second effect. The sequencer, the ledger and the
        identity registry read with consumers of their own and are not concerned."""
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:  # not started yet
            return
        now = asyncio.get_running_loop().time()
        rows = []
        for tp in sorted(assignment):
            if tp.topic not in self._consumed:
                continue  # changelogs, Faust's own assignor topic
            read = consumer._read_offset.get(tp)  # the last offset handed to the streams
            committed = consumer._committed_offset.get(tp)  # where a restart would resume
            end = consumer.highwater(tp)
            rows.append((tp.topic, tp.partition, committed, end))
            last = self._progress.get(tp)
            if (last is None or last[0] != committed or end is None or committed is None or committed >= end
                    or read is None or read < committed):
                self._progress[tp] = (committed, now)
            elif now - last[1] > self.settings.stall_s:
                log.warning("commit of %s stuck at %s for %.0f s while read reached %s (end %s): "
                            "re-reading it from the committed offset", tp, committed, now - last[1], read, end)
                self.metrics.rewinds.labels(tp.topic, str(tp.partition)).inc()
                self._progress[tp] = (committed, now)
                await consumer.seek(tp, committed)
        self.metrics.set_offsets(rows + self.sequencer.offsets() + self.ledger.offsets()
                                 + self.registry.offsets())
        self.metrics.read_model_backlog.set(len(self.read_model.backlog))

    # -- plumbing --------------------------------------------------------------------------------
    async def send_all(self, sends: list[Send]) -> None:
        """Send, then wait until Kafka has acknowledged every one.

        The records are appended to one record batch per topic partition and handed to the
        producer whole: a record costs an append to a (C-built) batch, not a trip through
        ``producer.send`` with a future of its own, which was a quarter of the worker's time.
        A record without a partition goes where Kafka's default partitioner would put its key
        (murmur2, ``streams.partitioning``); one without a key, by the hash of its value."""
        if not sends:
            return
        producer = await self.producer()
        groups: dict[tuple[str, int], list[Send]] = {}
        for send in sends:
            partition = send.partition
            if partition is None:
                count = self._partition_counts.get(send.topic)
                if count is None:
                    count = self._partition_counts[send.topic] = len(await producer.partitions_for(send.topic))
                partition = partition_for(send.key if send.key is not None else send.value, count)
            group = groups.get((send.topic, partition))
            if group is None:
                group = groups[(send.topic, partition)] = []
            group.append(send)
        futures = []
        for (topic, partition), group in groups.items():
            batch = producer.create_batch()
            for send in group:
                # A full batch refuses the record: send it and start the next. An empty batch
                # takes any record (one over Kafka's size limit fails at the broker).
                while batch.append(key=send.key, value=send.value, timestamp=None, headers=send.headers or []) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def producer(self) -> AIOKafkaProducer:
        """The worker's one producer, the project's own (not Faust's): started on first use,
        stopped with the app."""
        if self._producer is None:
            async with self._producer_lock:
                if self._producer is None:
                    producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                                max_request_size=4 * 1024 * 1024, max_batch_size=512 * 1024)
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def _stop_producer(self, app: Any, **kwargs: Any) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _quiet_client_logs(self) -> None:
        """aiokafka logs a debug line per record sent; at the worker's rates, building those
        lines cost 6 % of its time even when not shown."""
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))

    async def _on_revoked(self, app: Any, revoked: set[TP], **kwargs: Any) -> None:
        self._forget(revoked)

    def _forget(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._progress.pop(tp, None)
