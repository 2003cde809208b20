"""The operator's Prometheus metrics (served by `onceflow operator --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "API_WRITES",
    "CONNECTOR_AUTHENTICATED",
    "CONNECTOR_PROBE_SECONDS",
    "CONNECTOR_REACHABLE",
    "DECISIONS_LAST_HOUR",
    "DECISION_SECONDS",
    "DUPLICATES_CAUGHT",
    "EXCEPTIONS_OLDEST",
    "EXCEPTIONS_WAITING",
    "MANAGED",
    "NATS_CALLS",
    "NATS_FAILURES",
    "RECONCILES",
    "RECONCILE_DURATION",
    "ROLLOUT_EVENTS",
    "STREAM_BYTES",
    "STREAM_CHANGES",
    "STREAM_CURRENT_REPLICAS",
    "STREAM_LAGGING_REPLICAS",
    "STREAM_LEADER",
    "STREAM_MESSAGES",
    "STREAM_REPLICAS",
]

RECONCILES = Counter(
    "onceflow_operator_reconciles_total", "Reconciles by kind and the Ready reason they ended with.", ["kind", "reason"]
)
AVAILABILITY_RECONCILES = Counter(
    "onceflow_operator_availability_reconciles_total",
    "Reconciles started at once because an owned Deployment's availability changed (not at the next resync).",
    ["kind"],
)
RECONCILE_DURATION = Histogram("onceflow_operator_reconcile_seconds", "Time one reconcile took.", ["kind"])
MANAGED = Gauge("onceflow_operator_objects_managed", "Objects of each kind the operator reconciles.", ["kind"])
NATS_CALLS = Counter("onceflow_operator_nats_provisioning_total", "JetStream provisioning calls.", ["operation"])
NATS_FAILURES = Counter(
    "onceflow_operator_nats_provisioning_failures_total", "JetStream provisioning calls that failed.", ["operation"]
)
ROLLOUT_EVENTS = Counter(
    "onceflow_operator_rollout_events_total",
    "Rollout events by Integration: RolloutStarted, RolloutRestarted, NewRevisionPromoted, AnalysisFailed, "
    "RolloutAborted, ProgressDeadlineExceeded.",
    ["namespace", "integration", "reason"],
)
CONNECTOR_REACHABLE = Gauge(
    "onceflow_connector_reachable",
    "1 when the REST Connector's health path answered its last probe, 0 when it did not.",
    ["namespace", "connector"],
)
CONNECTOR_AUTHENTICATED = Gauge(
    "onceflow_connector_authenticated",
    "1 when the REST Connector's credentials (or its login) were accepted by its last probe, 0 when refused.",
    ["namespace", "connector"],
)
CONNECTOR_PROBE_SECONDS = Gauge(
    "onceflow_connector_probe_seconds",
    "Latency of the REST Connector's last probe (status carries it only when the outcome changes).",
    ["namespace", "connector"],
)
API_WRITES = Counter(
    "onceflow_operator_owned_applies_total",
    "Owned objects (Deployments, ConfigMaps, ...) the operator sent (applied) or found already as intended (skipped).",
    ["result"],
)
EXCEPTIONS_WAITING = Gauge(
    "onceflow_exceptions_waiting",
    "Exceptions waiting for a person's decision, by Integration and reason.",
    ["namespace", "integration", "reason"],
)
EXCEPTIONS_OLDEST = Gauge(
    "onceflow_exceptions_oldest_waiting_seconds",
    "Age of the oldest exception still waiting for a decision (0 when none waits).",
    ["namespace", "integration"],
)
DECISIONS_LAST_HOUR = Gauge(
    "onceflow_decisions_last_hour",
    "Decisions made on the Integration's exceptions in the last hour, by action.",
    ["namespace", "integration", "action"],
)
DUPLICATES_CAUGHT = Gauge(
    "onceflow_duplicates_caught_by_people",
    "Possible duplicates a person decided are the same as an existing record (verdict 'same'), by Integration "
    "and entity, over the decisions the stream holds; with onceflow_runner_dedupe_records_total, the duplicate "
    "incidence. An entity the API does not define is counted as 'other'.",
    ["namespace", "integration", "entity"],
)
DECISION_SECONDS = Gauge(
    "onceflow_decision_seconds_last_hour",
    "Mean time from an exception being parked to its decision, over the last hour's decisions.",
    ["namespace", "integration"],
)
STREAM_CHANGES = Counter(
    "onceflow_stream_settings_total",
    "What the operator's ensure did to each stream: created, updated, unchanged, or refused (a change it would "
    "not make, e.g. a live stream's storage; the operator's log names it).",
    ["stream", "action"],
)
STREAM_REPLICAS = Gauge("onceflow_stream_replicas", "Replicas a stream is configured with.", ["stream"])
STREAM_CURRENT_REPLICAS = Gauge(
    "onceflow_stream_current_replicas", "Replicas of a stream that are current (leader included).", ["stream"]
)
STREAM_LAGGING_REPLICAS = Gauge(
    "onceflow_stream_lagging_replicas", "Replicas of a stream that are offline or behind its leader.", ["stream"]
)
STREAM_LEADER = Gauge(
    "onceflow_stream_leader",
    "1 for the server that leads a stream (label server; '' on a single server).",
    ["stream", "server"],
)
STREAM_BYTES = Gauge("onceflow_stream_bytes", "Bytes a stream holds.", ["stream"])
STREAM_MESSAGES = Gauge("onceflow_stream_messages", "Messages a stream holds.", ["stream"])
