"""The status page at ``/`` and the JSON behind it at ``/status.json``.

The page is one self-contained HTML document (no external scripts, fonts or styles, so it
works on a worker without internet access): it fetches ``/status.json`` every 2 seconds and
draws the lag per partition, throughput and rejection rate over the last 15 minutes (an SVG
chart), the last rebalance and the versions.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol

from streams.ops.metrics import Metrics
from streams.ops.readmodel import ReadModel
from streams.settings import Settings


class Applying(Protocol):
    """What the pages show of the ledger (streams.worker.ledgerloop.LedgerJob)."""

    applied: int
    skipped: int

    def assignment(self) -> list[int]: ...
    def terms(self) -> dict[str, Any]:
        """The version of the program terms in force at the ledger's event time, and the next."""


@dataclass(frozen=True)
class View:
    """What the web pages may read of the worker (streams.ops.api, streams.ops.status)."""

    settings: Settings
    metrics: Metrics
    read_model: ReadModel
    versions: dict[str, str]
    started_at: float
    ledger: Applying
    processing: Callable[[], bool]  # every partition runtime is running on Kafka (not starting, fenced or stopping)

    @property
    def applied(self) -> int:
        return self.ledger.applied

    @property
    def skipped(self) -> int:
        return self.ledger.skipped

    def assigned_partitions(self) -> list[int]:
        """The partitions of the sequenced log this worker holds now."""
        return self.ledger.assignment()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def lag_order(settings: Settings, lags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input topics first (what an operator compares with the sources), in the settings'
    order, then the worker's own topics; each row says which it is."""
    inputs = {topic: rank for rank, topic in enumerate(settings.input_topics)}
    rows = [{**row, "input": row["topic"] in inputs} for row in lags]
    return sorted(rows, key=lambda row: (inputs.get(row["topic"], len(inputs)), row["topic"], row["partition"]))


def status(worker: View, redis_up: bool) -> dict[str, Any]:
    history = worker.metrics.history
    now = time.time()
    first_slot = int(worker.started_at // history.slot_s * history.slot_s)
    # nothing from before the start, and not the slot still in progress (a steady load would dip there)
    series = [row for row in history.rates(now) if first_slot <= row["t"] and row["t"] + history.slot_s <= now]
    recent = series[-6:]  # the last minute
    lags = lag_order(worker.settings, history.lags)
    return {
        "app": worker.settings.group,
        "worker": {"host": socket.gethostname(), "pid": os.getpid(),
                   "web": f"{worker.settings.web_host}:{worker.settings.web_port}"},
        "dead_lettered": int(sum(sample.value for metric in worker.metrics.rejections.collect()
                                 for sample in metric.samples if sample.name.endswith("_total"))),
        "slot_s": history.slot_s,
        "now": _iso(now),
        "started_at": _iso(worker.started_at),
        "versions": worker.versions,
        "redis": "up" if redis_up else "unreachable",
        "partitions": worker.assigned_partitions(),
        "applied": worker.applied,
        "skipped_redeliveries": worker.skipped,
        "applied_per_s": round(sum(r["applied_per_s"] for r in recent) / max(1, len(recent)), 1),
        "rejected_per_s": round(sum(r["rejected_per_s"] for r in recent) / max(1, len(recent)), 1),
        "total_lag": sum(row["lag"] for row in lags),
        "lag": lags,
        "last_rebalance": _iso(history.last_rebalance),
        "terms": worker.ledger.terms(),
        "waiting_sources": [{"topic": topic, "partition": partition, "state": state, "seconds": round(seconds, 1)}
                            for topic, partition, state, seconds in worker.metrics.waiting_sources],
        "series": series,
    }


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rewards worker</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d2430; }
  header { background: #1d2430; color: #fff; padding: 12px 24px; display: flex; justify-content: space-between; }
  header h1 { font-size: 18px; margin: 0; }
  main { padding: 16px 24px; display: grid; gap: 16px; grid-template-columns: repeat(4, 1fr); }
  .card { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; }
  .card .value { font-size: 26px; font-weight: 600; }
  .wide { grid-column: 1 / -1; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; }
  th:first-child, td:first-child { text-align: left; }
  td.behind { color: #b3261e; font-weight: 600; }
  #chart { width: 100%; height: 260px; }
  .legend span { margin-right: 16px; }
  .applied { color: #1a73e8; } .rejected { color: #d93025; }
  #error { color: #b3261e; }
</style>
</head>
<body>
<header><h1>rewards &middot; <span id="app">?</span> &middot; <span id="worker">?</span></h1><span id="versions"></span></header>
<main>
  <div class="card"><div>Total lag</div><div class="value" id="total-lag">&ndash;</div></div>
  <div class="card"><div>Applied / s (last minute)</div><div class="value" id="applied-rate">&ndash;</div></div>
  <div class="card"><div>Rejected / s (last minute)</div><div class="value" id="rejected-rate">&ndash;</div>
    <div>dead-lettered since start: <span id="dead-lettered">&ndash;</span></div></div>
  <div class="card"><div>Last rebalance</div><div class="value" id="last-rebalance" style="font-size:16px">&ndash;</div>
    <div>partitions held: <span id="partitions">&ndash;</span> &middot; Redis: <span id="redis">&ndash;</span></div>
    <div>terms in force: <span id="terms">&ndash;</span> &middot; next: <span id="terms-next">&ndash;</span></div>
    <div>sources waited for: <span id="waiting-sources">&ndash;</span></div></div>
  <div class="card wide">
    <div class="legend"><b>Throughput since the worker started (last 15 minutes at most)</b> &nbsp;
      <span class="applied">&#9632; applied / s</span><span class="rejected">&#9632; rejected / s</span></div>
    <svg id="chart" viewBox="0 0 960 230">
      <g id="y-axis" font-size="11" fill="#5f6b7a" text-anchor="end"></g>
      <g id="x-axis" font-size="11" fill="#5f6b7a" text-anchor="middle"></g>
      <line x1="60" y1="10" x2="60" y2="200" stroke="#9aa4b1"/><line x1="60" y1="200" x2="950" y2="200" stroke="#9aa4b1"/>
      <text x="14" y="105" font-size="11" fill="#5f6b7a" transform="rotate(-90 14 105)" text-anchor="middle">events / s</text>
      <text x="505" y="228" font-size="11" fill="#5f6b7a" text-anchor="middle">time (UTC)</text>
      <polyline id="applied-line" fill="none" stroke="#1a73e8" stroke-width="2" points=""/>
      <polyline id="rejected-line" fill="none" stroke="#d93025" stroke-width="2" points=""/>
    </svg>
  </div>
  <div class="card wide">
    <b>Consumer lag per partition</b> (input topics first, then the worker's own) <span id="error"></span>
    <table id="lag-table">
      <thead><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th><th>lag</th></tr></thead>
      <tbody></tbody>
    </table>
  </div>
</main>
<script>
"use strict";
function fmt(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
const X0 = 60, X1 = 950, Y0 = 200, Y1 = 10;
function x(i, n) { return X0 + (X1 - X0) * (n > 1 ? i / (n - 1) : 0); }
function y(value, peak) { return Y0 - (Y0 - Y1) * value / peak; }
function points(series, key, peak) {
  return series.map((row, i) => x(i, series.length).toFixed(1) + "," + y(row[key], peak).toFixed(1)).join(" ");
}
function svg(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function niceTop(peak) {
  const step = Math.pow(10, Math.floor(Math.log10(peak)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= peak) return m * step;
  return 10 * step;
}
function axes(series, peak) {
  const yAxis = document.getElementById("y-axis"), xAxis = document.getElementById("x-axis");
  yAxis.replaceChildren(...[0, 0.5, 1].map(share =>
    svg("text", {x: X0 - 6, y: y(share * peak, peak) + 4, class: "tick"}, fmt(share * peak))));
  const n = series.length;
  const marks = n > 1 ? [0, Math.floor((n - 1) / 2), n - 1] : [0];
  xAxis.replaceChildren(...marks.map(i =>
    svg("text", {x: x(i, n), y: Y0 + 14, class: "tick"}, new Date(series[i].t * 1000).toISOString().slice(11, 19))));
}
function render(s) {
  document.getElementById("app").textContent = s.app;
  document.getElementById("worker").textContent = s.worker.host + " (pid " + s.worker.pid + ")";
  document.getElementById("dead-lettered").textContent = fmt(s.dead_lettered);
  document.getElementById("versions").textContent =
    Object.entries(s.versions).map(([k, v]) => k + " " + v).join(" · ");
  document.getElementById("total-lag").textContent = fmt(s.total_lag);
  document.getElementById("applied-rate").textContent = fmt(s.applied_per_s);
  document.getElementById("rejected-rate").textContent = fmt(s.rejected_per_s);
  document.getElementById("last-rebalance").textContent = s.last_rebalance || "none yet";
  document.getElementById("partitions").textContent = s.partitions.join(", ") || "none";
  document.getElementById("redis").textContent = s.redis;
  document.getElementById("terms").textContent = s.terms.in_force
    ? s.terms.in_force.version + " (from " + s.terms.in_force.effective + ")" : "the rules file";
  document.getElementById("terms-next").textContent = s.terms.next
    ? s.terms.next.version + " at " + s.terms.next.effective : "none scheduled";
  document.getElementById("waiting-sources").textContent = s.waiting_sources.length
    ? s.waiting_sources.map(w => w.topic + ":" + w.partition + " " + w.state + " " + w.seconds + " s").join(", ")
    : "none (every source answers)";
  const peak = niceTop(Math.max(1, ...s.series.map(r => Math.max(r.applied_per_s, r.rejected_per_s))));
  if (s.series.length) axes(s.series, peak);
  document.getElementById("applied-line").setAttribute("points", points(s.series, "applied_per_s", peak));
  document.getElementById("rejected-line").setAttribute("points", points(s.series, "rejected_per_s", peak));
  const body = document.querySelector("#lag-table tbody");
  body.replaceChildren(...s.lag.map(row => {
    const tr = document.createElement("tr");
    for (const key of ["topic", "partition", "committed", "end", "lag"]) {
      const td = document.createElement("td");
      td.textContent = key === "topic" ? row[key] : fmt(row[key]);
      if (key === "lag" && row.lag > 0) td.className = "behind";
      tr.appendChild(td);
    }
    return tr;
  }));
}
async function refresh() {
  try {
    const response = await fetch("status.json", {cache: "no-store"});
    render(await response.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "status unavailable: " + e;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
