"""The worker's metrics and the status page's history, without Kafka."""

from __future__ import annotations

from collections import Counter

from prometheus_client import generate_latest

from schemas.outputs import CashbackAccrued, EventRejected, WalletAllocated
from streams.ops.metrics import Metrics, StatusHistory, exported_names


def cashback(n: int, amount: str) -> CashbackAccrued:
    return CashbackAccrued(id=f"cashback.accrued:f{n}", cause_id=f"f{n}", ts=None, client_id="c1",
                           account_id="a1", fill_id=f"f{n}", amount=amount, wallet_balance="0")


def rejected(reason: str) -> EventRejected:
    return EventRejected(id="event.rejected:-:x", cause_id=None, ts=None, client_id=None, reason=reason,  # type: ignore[arg-type]
                         error="e", raw="x", raw_size=1, raw_blake2b="0", source={})


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_outputs_are_counted_by_type_reason_and_amount() -> None:
    metrics = Metrics()
    metrics.observe_outputs([cashback(1, "0.100001"), cashback(2, "0.2"), rejected("malformed"),
                             rejected("malformed"), rejected("unknown_type"),
                             WalletAllocated(id="w", cause_id="w", ts=None, client_id="c1", account_id="a1",
                                             amount="5", wallet_balance="0", allocated="5")])
    assert value(metrics, "rewards_outputs_total", type="cashback.accrued") == 2
    assert value(metrics, "rewards_outputs_total", type="event.rejected") == 3
    assert value(metrics, "rewards_rejections_total", reason="malformed") == 2
    assert value(metrics, "rewards_rejections_total", reason="unknown_type") == 1
    assert value(metrics, "rewards_jm_usd_accrued_usd_total") == 0.300001
    assert value(metrics, "rewards_jm_usd_allocated_usd_total") == 5


def test_applied_events_and_latencies() -> None:
    metrics = Metrics()
    now_us = 1_900_000_000 * 1_000_000
    metrics.observe_applied(Counter({"trade.fill": 3, "deposit": 1}), [now_us] * 4, [1.0])
    assert value(metrics, "rewards_events_applied_total", type="trade.fill") == 3
    assert value(metrics, "rewards_end_to_end_latency_seconds_count") == 4
    # an event stamped in the future counts as no latency, not as a negative one
    assert value(metrics, "rewards_end_to_end_latency_seconds_sum") == 0
    assert value(metrics, "rewards_pipeline_latency_seconds_count") == 1


def test_offsets_replace_the_partitions_held_before() -> None:
    metrics = Metrics()
    metrics.set_offsets([("t", 0, 5, 9), ("t", 1, None, 4)])
    assert value(metrics, "rewards_consumer_lag", topic="t", partition="0") == 4
    assert value(metrics, "rewards_consumer_lag", topic="t", partition="1") == 4  # nothing committed yet
    metrics.set_offsets([("t", 1, 4, 4)])  # partition 0 went to another worker
    assert value(metrics, "rewards_consumer_lag", topic="t", partition="0") is None
    assert value(metrics, "rewards_consumer_lag", topic="t", partition="1") == 0
    assert metrics.history.lags == [{"topic": "t", "partition": 1, "committed": 4, "end": 4, "lag": 0}]


def test_history_rates_cover_the_window_with_zeros_where_idle() -> None:
    history = StatusHistory(slot_s=10, slots=6)
    history.add(applied=50, now=1000.0)
    history.add(applied=30, rejected=10, now=1009.9)
    history.add(applied=20, now=1030.0)
    rates = history.rates(now=1035.0)
    assert [r["t"] for r in rates] == [980, 990, 1000, 1010, 1020, 1030]
    assert [r["applied_per_s"] for r in rates] == [0, 0, 8.0, 0, 0, 2.0]
    assert [r["rejected_per_s"] for r in rates] == [0, 0, 1.0, 0, 0, 0]
    for t in range(1040, 1200, 10):
        history.add(applied=1, now=float(t))
    assert len(history.series) == 6, "only the window is kept"


def test_exported_names_are_the_names_a_scrape_shows() -> None:
    metrics = Metrics()
    metrics.observe_outputs([rejected("malformed")])
    metrics.observe_applied(Counter({"deposit": 1}), [0], [0])
    scraped = {line.split("{")[0].split(" ")[0] for line in generate_latest(metrics.registry).decode().splitlines()
               if line and not line.startswith("#")}
    assert scraped <= exported_names(metrics)
    assert "rewards_rejections_total" in scraped and "rewards_end_to_end_latency_seconds_bucket" in scraped


def test_a_batch_histogram_reads_as_prometheus_clients_own() -> None:
    """The latencies observed a batch at a time: what /metrics shows is what prometheus_client's
    Histogram shows for the same values, bucket edges included."""
    from prometheus_client import CollectorRegistry, Histogram

    from streams.ops.metrics import LATENCY_BUCKETS, BatchHistogram

    values = [0.0, 0.004, 0.005, 0.0051, 1.0, 2.4999, 86400.0, 86400.5, 1e9] + [i / 7 for i in range(50)]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    BatchHistogram("h", "d", LATENCY_BUCKETS, ours).observe_many(values)
    reference = Histogram("h", "d", buckets=LATENCY_BUCKETS, registry=theirs)
    for v in values:
        reference.observe(v)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in registry.collect()
                for s in family.samples if not s.name.endswith("_created")}

    assert samples(ours) == samples(theirs)
