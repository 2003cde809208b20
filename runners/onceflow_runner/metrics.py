"""Prometheus metrics of runners and gateways, and the rolling figures of the stats heartbeat.

Each process has its own registry (tests run several in one interpreter). Labels are bounded:
integration, revision, step, reason, connector, status code; never a business key.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "RevisionMetrics", "RollingStats", "RunnerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RunnerMetrics:
    """What a runner exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["integration", "revision"]
        self.received = Counter("onceflow_runner_received_total", "Deliveries fetched.", labels, registry=self.registry)
        self.processed = Counter(
            "onceflow_runner_processed_total",
            "Records that completed all steps.",
            labels,
            registry=self.registry,
        )
        self.filtered = Counter(
            "onceflow_runner_filtered_total",
            "Records stopped by a filter or dedupe skip.",
            labels,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "onceflow_runner_duplicates_total",
            "Records whose business key was already done.",
            labels,
            registry=self.registry,
        )
        self.key_waits = Counter(
            "onceflow_runner_key_waits_total",
            "Deliveries put back for a moment because another delivery held their business key.",
            labels,
            registry=self.registry,
        )
        self.skipped = Counter(
            "onceflow_runner_skipped_total",
            "Split markers and records owned by the other rollout lane, acked without effect.",
            labels,
            registry=self.registry,
        )
        self.failed = Counter(
            "onceflow_runner_failed_total",
            "Step failures by step and reason (transient and permanent).",
            [*labels, "step", "reason"],
            registry=self.registry,
        )
        self.exceptions = Counter(
            "onceflow_runner_exceptions_total",
            "Records sent to the exception queue.",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "onceflow_runner_dead_letters_total",
            "Records sent to the dead-letter stream.",
            labels,
            registry=self.registry,
        )
        self.record_seconds = Histogram(
            "onceflow_runner_record_seconds",
            "Time to process one record.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.call_seconds = Histogram(
            "onceflow_runner_call_seconds",
            "Outbound call latency by connector and status code.",
            [*labels, "connector", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "onceflow_runner_consumer_lag",
            "Messages not yet delivered to the consumer.",
            labels,
            registry=self.registry,
        )
        self.consumer_lag_growth = Gauge(
            "onceflow_runner_consumer_lag_growth",
            "Change of the consumer lag per second between the last two readings (> 0: falling behind).",
            labels,
            registry=self.registry,
        )
        self.dedupe_records = Counter(
            "onceflow_runner_dedupe_records_total",
            "Records through a dedupe step by entity and outcome: new (no existing record matched, created), "
            "prevented (matched and skipped automatically), parked (a person decides whether it is a duplicate).",
            [*labels, "entity", "outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge("onceflow_runner_in_flight", "Records being processed.", labels, registry=self.registry)
        self.polls = Counter(
            "onceflow_runner_polls_total",
            "Polls of a schedule trigger by this runner (only the lease holder polls), by outcome (ok, failed).",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.polled_rows = Counter(
            "onceflow_runner_polled_rows_total",
            "Rows a schedule trigger's polls published (rows read again by the look-back included).",
            labels,
            registry=self.registry,
        )
        self.last_poll_success = Gauge(
            "onceflow_runner_last_poll_success_timestamp_seconds",
            "When this runner last completed a poll (Unix time); 0 before its first.",
            labels,
            registry=self.registry,
        )

    def of(self, integration: str, revision: str) -> RevisionMetrics:
        """The children of one revision, looked up once (see `RevisionMetrics`)."""
        return RevisionMetrics(self, integration, revision)


class RevisionMetrics:
    """One revision's metric children, resolved once instead of per record.

    Why: `Counter.labels(**labels)` builds a dict, validates and joins the label values and takes
    a lock on every call; a runner did that five to eight times per record. The children below
    are the same objects `labels()` returns, so /metrics reads the same series.
    """

    def __init__(self, metrics: RunnerMetrics, integration: str, revision: str) -> None:
        values = (integration, revision)
        self._metrics, self._values = metrics, values
        self.received = metrics.received.labels(*values)
        self.processed = metrics.processed.labels(*values)
        self.filtered = metrics.filtered.labels(*values)
        self.duplicates = metrics.duplicates.labels(*values)
        self.key_waits = metrics.key_waits.labels(*values)
        self.skipped = metrics.skipped.labels(*values)
        self.dead_letters = metrics.dead_letters.labels(*values)
        self.record_seconds = metrics.record_seconds.labels(*values)
        self.consumer_lag = metrics.consumer_lag.labels(*values)
        self.consumer_lag_growth = metrics.consumer_lag_growth.labels(*values)
        self.in_flight = metrics.in_flight.labels(*values)
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, family: Counter | Histogram, *extra: str) -> Any:
        key = (family._name, *extra)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*self._values, *extra)
        return child

    def failed(self, step: str, reason: str) -> Counter:
        """The failure counter of one step and reason."""
        return self._child(self._metrics.failed, step, reason)  # type: ignore[no-any-return]

    def exceptions(self, reason: str) -> Counter:
        """The exception-queue counter of one reason."""
        return self._child(self._metrics.exceptions, reason)  # type: ignore[no-any-return]

    def dedupe_records(self, entity: str, outcome: str) -> Counter:
        """The duplicate-incidence counter of one entity and dedupe outcome (new, prevented, parked)."""
        return self._child(self._metrics.dedupe_records, entity, outcome)  # type: ignore[no-any-return]

    def call_seconds(self, connector: str, code: str) -> Histogram:
        """The outbound-call latency histogram of one Connector and status code."""
        return self._child(self._metrics.call_seconds, connector, code)  # type: ignore[no-any-return]


class GatewayMetrics:
    """What a gateway exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "onceflow_gateway_requests_total",
            "Webhook requests by answer code.",
            ["connector", "code"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "onceflow_gateway_backlog",
            "Consumer lag of the slowest Integration reading this Connector, from its runners' heartbeats.",
            ["connector"],
            registry=self.registry,
        )
        self.pending_publishes = Gauge(
            "onceflow_gateway_pending_publishes",
            "Webhooks waiting for JetStream's acknowledgement.",
            ["connector"],
            registry=self.registry,
        )
        self.accepted_seconds = Histogram(
            "onceflow_gateway_accept_seconds",
            "Time from request to JetStream PubAck.",
            ["connector"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )


@dataclass
class RollingStats:
    """Counts and latencies of the last `window` seconds, for the stats heartbeat."""

    window: float = 60.0
    _events: deque[tuple[float, str, float]] = field(default_factory=deque)
    totals: dict[str, int] = field(default_factory=dict)

    def record(self, outcome: str, seconds: float) -> None:
        now = time.monotonic()
        self._events.append((now, outcome, seconds))
        self.totals[outcome] = self.totals.get(outcome, 0) + 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()

    def snapshot(self) -> dict[str, float | int | dict[str, int]]:
        """Error ratio, exception ratio, p50/p95 latency and throughput over the window."""
        self._trim(time.monotonic())
        n = len(self._events)
        outcomes = [o for _, o, _ in self._events]
        latencies = sorted(s for _, _, s in self._events)

        def quantile(q: float) -> float:
            return round(latencies[min(n - 1, int(q * n))] * 1e3, 3) if n else 0.0

        failures = sum(1 for o in outcomes if o in {"transient", "exception", "deadLetter"})
        return {
            "count": n,
            "errorRatio": round(failures / n, 4) if n else 0.0,
            "exceptionRatio": round(outcomes.count("exception") / n, 4) if n else 0.0,
            "p50LatencyMs": quantile(0.5),
            "p95LatencyMs": quantile(0.95),
            "throughput": round(n / self.window, 3),
            "totals": dict(self.totals),
        }


class EdiMetrics:
    """What an EDI inbound poller exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.files = Counter(
            "onceflow_edi_files_total",
            "Partner files finished, by outcome (processed, duplicate).",
            ["connector", "outcome"],
            registry=self.registry,
        )
        self.sets = Counter(
            "onceflow_edi_sets_total",
            "Transaction sets published, by set id and outcome (accepted, rejected).",
            ["connector", "set", "outcome"],
            registry=self.registry,
        )
        self.acknowledgments = Counter(
            "onceflow_edi_acknowledgments_total",
            "Acknowledgments dropped for the partner, by kind (997, TA1).",
            ["connector", "kind"],
            registry=self.registry,
        )
        self.documents = Counter(
            "onceflow_edi_documents_total",
            "Outbound documents settled, by document (855, 856, 810) and outcome (sent, invalid).",
            ["connector", "document", "outcome"],
            registry=self.registry,
        )
        self.sftp_failures = Counter(
            "onceflow_edi_sftp_failures_total",
            "Passes that could not reach or finish with the SFTP server (retried at the next interval).",
            ["connector"],
            registry=self.registry,
        )
