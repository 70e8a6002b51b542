"""The worker's Prometheus metrics (served on ``/metrics``) and the short history behind the
status page.

Every name here is listed in ``EXPORTED``; the dashboard and alert rules in ``deploy/`` may
only query these or the lag exporter's (``tests/unit/test_deploy.py`` checks it).

The money totals are for watching, not for accounting: a Prometheus counter is a float, and a
batch sent again after a crash counts twice here while downstream sees the same output ids.
The ledger topic is the record.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from schemas.outputs import (BonusGranted, BonusReleased, BonusUnlocked, CashbackAccrued, CommissionPayout, CoverageApplied,
                             EventRejected, OutputEvent, OverridePayout, RebateAccrued, RebatePayout, WalletAllocated,
                             WelcomeGranted)

TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)

# What a sum of outputs of each type adds to: (metric, field).
_AMOUNTS: dict[type, tuple[str, str]] = {
    CashbackAccrued: ("jm_usd_accrued", "amount"),
    WalletAllocated: ("jm_usd_allocated", "amount"),
    CoverageApplied: ("jm_usd_covered", "covered"),
    BonusGranted: ("bonus_granted", "amount"),
    WelcomeGranted: ("welcome_granted", "amount"),
    BonusUnlocked: ("bonus_unlocked", "amount"),
    BonusReleased: ("bonus_released", "amount"),
    RebateAccrued: ("rebate_accrued", "rebate"),
    RebatePayout: ("rebate_paid", "amount"),
    CommissionPayout: ("commission_paid", "amount"),
    OverridePayout: ("override_paid", "amount"),
}


class BatchHistogram:
    """A Prometheus histogram observed a batch at a time (``observe_many``), exposed as
    prometheus_client's own are (buckets, count, sum). The worker observes two latencies per
    event; prometheus_client's ``observe`` takes a lock and searches the buckets for each value,
    3.5 % of the worker's time in a profile of ``make bench-worker``."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = [float(bound) for bound in buckets]
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, the last one past every bound (+Inf)
        self.sum = 0.0
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds = self.counts, self.bounds
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value: "le"
            total += value
        self.sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        les = [floatToGoString(bound) for bound in [*self.bounds, math.inf]]  # type: ignore[no-untyped-call]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=list(zip(les, accumulate(self.counts))),
                                    sum_value=self.sum)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self.events = Counter("rewards_events_applied", "Input events applied by the ledger, by type",
                              ["type"], registry=registry)
        self.redeliveries = Counter("rewards_redeliveries_skipped",
                                    "Records skipped because their effects were already applied", registry=registry)
        self.rejections = Counter("rewards_rejections", "Inputs sent to the dead-letter topic, by reason",
                                  ["reason"], registry=registry)
        self.outputs = Counter("rewards_outputs", "Output events sent, by type", ["type"], registry=registry)
        self.latency = BatchHistogram("rewards_end_to_end_latency_seconds",
                                      "From an event's own ts to its outputs acknowledged by Kafka",
                                      LATENCY_BUCKETS, registry)
        self.pipeline = BatchHistogram("rewards_pipeline_latency_seconds",
                                       "From the sequenced record's append to Kafka to its outputs acknowledged",
                                       LATENCY_BUCKETS, registry)
        self.amounts = {name: Counter(f"rewards_{name}_usd", f"Sum of {name.replace('_', ' ')} outputs, USD",
                                      registry=registry)
                        for name, _ in _AMOUNTS.values()}
        self.lag = Gauge("rewards_consumer_lag", "End offset minus committed offset, per assigned partition",
                         ["topic", "partition"], registry=registry)
        self.committed = Gauge("rewards_committed_offset", "The group's committed offset, per assigned partition",
                               ["topic", "partition"], registry=registry)
        self.end = Gauge("rewards_end_offset", "The partition's end offset (high watermark)",
                         ["topic", "partition"], registry=registry)
        self.rewinds = Counter("rewards_partition_rewinds", "Partitions a processor read again from its "
                               "own position: a batch read across a rebalance, dropped (streams.worker.processor)",
                               ["topic", "partition"], registry=registry)
        self.transactions = Counter("rewards_transactions", "Kafka transactions committed, by processor (a turn "
                                    "commits one per partition it changed)", ["processor"], registry=registry)
        self.transaction_seconds = Histogram(
            "rewards_transaction_seconds", "A Kafka transaction from its begin to its commit acknowledged, by "
            "processor: its sends, the group offsets, the commit (what a batch waits for before the next)",
            ["processor"], buckets=TRANSACTION_BUCKETS, registry=registry)
        self.rebalances = Counter("rewards_rebalances", "Partition assignments received", registry=registry)
        self.last_rebalance = Gauge("rewards_last_rebalance_timestamp_seconds", "When the last assignment came",
                                    registry=registry)
        self.assigned = Gauge("rewards_assigned_partitions", "Partitions of the sequenced log held by this worker",
                              registry=registry)
        self.parked = Gauge("rewards_parked_inputs", "Inputs waiting for a prerequisite (their client's "
                            "registration, an account's opening, a busted fill) in the partitions held",
                            registry=registry)
        self.parked_total = Counter("rewards_parked", "Inputs that waited for a prerequisite", registry=registry)
        self.parked_expired = Counter("rewards_parked_expired", "Parked inputs that waited out the parking "
                                      "window and got their usual refusal", registry=registry)
        self.read_model_up = Gauge("rewards_read_model_up", "1 when Redis (the read model) answered the last "
                                   "check, 0 when it did not: the worker is degraded, not down", registry=registry)
        self.read_model_backlog = Gauge("rewards_read_model_backlog",
                                        "Client views waiting for Redis to come back", registry=registry)
        self.terms_version = Gauge("rewards_terms_version", "1 for the version of the program terms each held "
                                   "ledger partition applies at its event time ('rules-file' before the first)",
                                   ["partition", "version"], registry=registry)
        self.terms_late = Gauge("rewards_terms_late", "Versions of the terms refused as late (terms_late: they came "
                                "after inputs at or past their effective on some partition, their topic lagging beyond "
                                "the ordering grace), counted in the partitions held", registry=registry)
        self.sources_waited = Gauge("rewards_sources_waited", "Source partitions the sequencer's merge waits for: "
                                    "unanswered (their leader does not answer), settling (a new leader answers; "
                                    "their producers may still hold inputs)", ["state"], registry=registry)
        self.source_wait = Gauge("rewards_source_wait_seconds", "The longest the merge has waited for one source "
                                 "partition (0: none waited for)", registry=registry)
        self.source_waits_given_up = Counter("rewards_source_waits_given_up", "Source partitions waited for past "
                                             "REWARDS_SOURCE_WAIT_MAX_S: merged on without them", registry=registry)
        self.waiting_sources: list[tuple[str, int, str, float]] = []  # for the status page
        self.info = Info("rewards_build", "Versions of the worker", registry=registry)
        self.history = StatusHistory()

    def observe_outputs(self, outputs: Iterable[OutputEvent]) -> None:
        sums: dict[str, Decimal] = {}
        types: Tally[str] = Tally()
        reasons: Tally[str] = Tally()
        for output in outputs:
            types[output.type] += 1
            if isinstance(output, EventRejected):
                reasons[output.reason] += 1
            amount = _AMOUNTS.get(type(output))
            if amount is not None:
                name, attribute = amount
                sums[name] = sums.get(name, Decimal(0)) + Decimal(getattr(output, attribute))
        for name, count in types.items():
            self.outputs.labels(name).inc(count)
        for reason, count in reasons.items():
            self.rejections.labels(reason).inc(count)
        for name, total in sums.items():
            self.amounts[name].inc(float(total))
        self.history.add(rejected=sum(reasons.values()))

    def observe_applied(self, types: Tally[str], event_ts_us: list[int], appended_s: list[float]) -> None:
        for name, count in types.items():
            self.events.labels(name).inc(count)
        now = time.time()
        self.latency.observe_many([max(0.0, now - ts_us / 1e6) for ts_us in event_ts_us])
        self.pipeline.observe_many([max(0.0, now - appended) for appended in appended_s])
        self.history.add(applied=sum(types.values()))

    def observe_waits(self, waiting: list[tuple[str, int, str, float]]) -> None:
        """The sequencer's merge waits for these source partitions: (topic, partition, state, seconds)."""
        self.waiting_sources = waiting
        for state in ("unanswered", "settling"):
            self.sources_waited.labels(state).set(sum(1 for row in waiting if row[2] == state))
        self.source_wait.set(max((row[3] for row in waiting), default=0))

    def rebalanced(self, partitions: int) -> None:
        self.rebalances.inc()
        self.last_rebalance.set(time.time())
        self.assigned.set(partitions)
        self.history.last_rebalance = time.time()

    def set_offsets(self, rows: Iterable[tuple[str, int, int | None, int | None]]) -> None:
        """(topic, partition, committed, end) for every partition held now; forgets the others."""
        self.lag.clear()
        self.committed.clear()
        self.end.clear()
        lags = []
        for topic, partition, committed, end in rows:
            labels = (topic, str(partition))
            if end is not None:
                self.end.labels(*labels).set(end)
            if committed is not None:
                self.committed.labels(*labels).set(committed)
            lag = max(0, (end or 0) - (committed or 0))
            self.lag.labels(*labels).set(lag)
            lags.append({"topic": topic, "partition": partition, "committed": committed, "end": end, "lag": lag})
        self.history.lags = lags


@dataclass
class StatusHistory:
    """What the status page charts: events applied and rejected per 10-second slot, over the
    last 15 minutes, with the partitions' lag as last seen."""

    slot_s: int = 10
    slots: int = 90
    series: deque[tuple[int, int, int]] = field(default_factory=deque)  # (slot start, applied, rejected)
    lags: list[dict[str, Any]] = field(default_factory=list)
    last_rebalance: float | None = None

    def add(self, applied: int = 0, rejected: int = 0, now: float | None = None) -> None:
        slot = int((time.time() if now is None else now) // self.slot_s * self.slot_s)
        if self.series and self.series[-1][0] == slot:
            _, a, r = self.series[-1]
            self.series[-1] = (slot, a + applied, r + rejected)
        else:
            self.series.append((slot, applied, rejected))
            while len(self.series) > self.slots:
                self.series.popleft()

    def rates(self, now: float | None = None) -> list[dict[str, float]]:
        """Per-second rates for every slot of the window, oldest first, zeros where idle."""
        now = time.time() if now is None else now
        last = int(now // self.slot_s * self.slot_s)
        by_slot = {slot: (a, r) for slot, a, r in self.series}
        rows = []
        for i in range(self.slots - 1, -1, -1):
            slot = last - i * self.slot_s
            applied, rejected = by_slot.get(slot, (0, 0))
            rows.append({"t": slot, "applied_per_s": applied / self.slot_s, "rejected_per_s": rejected / self.slot_s})
        return rows


def exported_names(metrics: Metrics) -> set[str]:
    """Every series name a scrape of these metrics can show (counters' _total, histograms'
    _bucket/_sum/_count, ...)."""
    names = set()
    for collector in metrics.registry.collect():
        for sample in collector.samples:
            names.add(sample.name)
        if collector.type == "counter":
            names |= {f"{collector.name}_total", f"{collector.name}_created"}
        elif collector.type == "histogram":
            names |= {f"{collector.name}_bucket", f"{collector.name}_sum", f"{collector.name}_count",
                      f"{collector.name}_created"}
        elif collector.type == "info":
            names.add(f"{collector.name}_info")
        else:
            names.add(collector.name)
    return names
