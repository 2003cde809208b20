"""The Integration kind: one versioned workflow from a trigger through ordered steps.

Steps are a list of small, single-purpose blocks (validate, map, filter, lookup, dedupe, call,
publish, approve) whose logic is written in CEL, the language Kubernetes itself uses for
validation rules, so the people who write CRD rules can read a workflow. The workflow part of
the spec (trigger, steps, error policy, SyncPolicy) is what makes a revision; replicas,
strategy and pause are how a revision is run and do not make one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from onceflow_operator.api._base import (
    DNS_LABEL,
    DURATION,
    ApiModel,
    Condition,
    LocalObjectReference,
    cel_rules,
    conditions_field,
    immutable,
)
from onceflow_operator.api.rollout import AnalysisStatus, RolloutStatus, Strategy
from onceflow_operator.api.steps import Step
from onceflow_operator.api.types import Cel, Duration, Paging

__all__ = [
    "EXPRESSION_TIMEOUT_DEFAULT",
    "BusinessFigures",
    "ConnectorTrigger",
    "ErrorPolicy",
    "Integration",
    "IntegrationSpec",
    "IntegrationStatus",
    "PollFigures",
    "PollSource",
    "PollWatermark",
    "RevisionFigures",
    "ScheduleTrigger",
    "Trigger",
]

#: `spec.expressionTimeout` when not set: a comprehension over a normal record takes milliseconds.
EXPRESSION_TIMEOUT_DEFAULT = "1s"


class ConnectorTrigger(ApiModel):
    """Records accepted by a webhook Connector's gateway."""

    name: str = Field(description="Name of a Webhook Connector.", pattern=DNS_LABEL, max_length=63)
    event: str = Field(
        default="*",
        description="Event name to consume, e.g. customer.approved; * for all.",
        pattern=r"^(\*|[a-z0-9][a-z0-9_/-]*(\.[a-z0-9][a-z0-9_/-]*)*)$",
        max_length=128,
    )


class PollWatermark(ApiModel):
    """How far a polled source has been read: each row's change time, and where the first poll starts."""

    expression: Cel = Field(
        description=(
            "CEL over `row` (one row of the answer) giving its change time, e.g. row.modified; the largest "
            "value read becomes the watermark, once every row is stored in JetStream. A string in `format` "
            "or a CEL timestamp."
        )
    )
    format: str = Field(
        default="RFC3339",
        max_length=64,
        description=(
            "How the target writes its timestamps: RFC3339 (ISO 8601, e.g. 2026-11-30T08:15:00Z) or a strftime "
            "pattern, e.g. '%Y-%m-%d %H:%M:%S.%f' for ERPNext. The request's `watermark` is written the same way."
        ),
    )
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA zone of timestamps written without an offset (the target's server time zone).",
    )
    look_back: Duration = Field(
        default="1m",
        description=(
            "Subtracted from the watermark in each request: the target's clock skew and rows committed late are "
            "read again (and de-duplicated) instead of missed."
        ),
    )
    start_from: str = Field(
        default="Now",
        max_length=64,
        description=(
            "Where the first poll starts when there is no watermark yet: Now (changes from then on) or an "
            "ISO 8601 time with an offset, e.g. 2026-01-01T00:00:00Z (the backlog since then)."
        ),
    )


class PollSource(ApiModel):
    """Where a schedule trigger reads records: a REST Connector asked for what changed since the watermark."""

    connector: str = Field(description="Name of a REST Connector.", pattern=DNS_LABEL, max_length=63)
    path: str = Field(
        description="Literal request path, e.g. /api/resource/Sales Invoice (query parameters go in query).",
        pattern=r"^/[^?#{}]*$",
        max_length=1024,
    )
    query: dict[str, Cel] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "Query parameter -> CEL, with `watermark` bound (a string in the watermark's format) and `now`. Ask "
            "for rows changed at or after it, oldest first; for ERPNext: filters: "
            '\'[["modified", ">=", "\' + watermark + \'"]]\' and order_by: \'"modified asc, name asc"\' '
            "(a unique last column keeps rows stamped alike in one order between pages)."
        ),
    )
    items: Cel = Field(default="response.data", description="CEL over `response`: the rows of one answer.")
    paging: Paging | None = Field(
        default=None,
        description=(
            "How the answer is paged. Offset is followed by change time (each page asks again from the last "
            "row's watermark), so rows changing while the poll pages are neither skipped nor lost."
        ),
    )
    watermark: PollWatermark = Field(description="Each row's change time, and where the first poll starts.")


class ScheduleTrigger(ApiModel):
    """Poll a system that cannot send webhooks: on a cron schedule (or an interval), read what changed."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "has(self.cron) != has(self.interval)",
                "schedule sets exactly one of cron (five fields, minute resolution) or interval (e.g. 30s)",
            ),
        )
    }

    cron: str | None = Field(
        default=None, description="Five-field cron expression, e.g. */5 * * * *.", min_length=9, max_length=128
    )
    interval: Duration | None = Field(
        default=None, description="Time between polls instead of cron, e.g. 30s (seconds resolution)."
    )
    time_zone: str = Field(default="UTC", description="IANA time zone of the cron expression.", max_length=64)
    poll: PollSource = Field(description="What to read at each firing.")


class Trigger(ApiModel):
    """What starts the workflow: exactly one of connector, subject, schedule."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "[has(self.connector), has(self.subject), has(self.schedule)].filter(x, x).size() == 1",
                "trigger sets exactly one of connector (a webhook Connector), subject (a NATS subject) "
                "or schedule (cron)",
            ),
            (
                "!has(self.subject) || !self.subject.startsWith('onceflow.') || "
                "self.subject.matches('^onceflow[.][a-z0-9]([-a-z0-9]*[a-z0-9])?[.][^.]')",
                "trigger.subject must name this Integration's own namespace literally (onceflow.<namespace>."
                "<area>..., no wildcard in place of the namespace), or be written relative to it "
                "(e.g. events.invoice.posted); another namespace's subjects are refused",
                ".subject",
            ),
        )
    }

    connector: ConnectorTrigger | None = Field(default=None, description="A webhook Connector's events.")
    subject: str | None = Field(
        default=None,
        description=(
            "A NATS subject (wildcards allowed) inside the Integration's own namespace: relative to "
            "onceflow.<namespace>. (e.g. events.customer.created), or in full naming that namespace "
            "(onceflow.sales.events.customer.created). Another namespace's subjects are refused "
            "(the API server checks the form; the operator checks the namespace and marks the "
            "Integration Stalled, naming spec.trigger.subject)."
        ),
        pattern=r"^[A-Za-z0-9_*>-]+(\.[A-Za-z0-9_*>-]+)*$",
        max_length=255,
    )
    schedule: ScheduleTrigger | None = Field(
        default=None, description="Poll a REST Connector for what changed, on a cron schedule or an interval."
    )


class ErrorPolicy(ApiModel):
    """What happens when a step fails."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.maxDeliver > size(self.backoff)",
                "errorPolicy.maxDeliver must be greater than the number of backoff delays (one delivery "
                "plus one per delay); raise maxDeliver or shorten backoff",
            ),
        )
    }

    backoff: list[Duration] = Field(
        default_factory=lambda: ["1s", "10s", "1m"],
        description="Redelivery delays after transient failures (5xx, 429, timeouts), in order.",
        max_length=20,
    )
    max_deliver: int = Field(
        default=5, description="Deliveries before a record goes to the dead-letter stream.", ge=1, le=100
    )
    ack_wait: str = Field(
        default="3m",
        description="How long a delivery may go without word from its runner before JetStream redelivers it "
        "(a runner says a record is in progress every third of it). Must outlast one call of every Connector "
        "the steps call: timeouts x attempts + backoff, which `onceflow validate` and the operator check "
        "(the default fits a Connector with default timeouts and retry).",
        pattern=DURATION,
        max_length=32,
    )
    permanent_failures: Literal["Exception", "DeadLetter"] = Field(
        default="Exception",
        description="Where permanent failures (4xx, invalid data, rule violations) go: the exception "
        "queue for a person, or straight to dead letters.",
    )


class IntegrationSpec(ApiModel):
    """Desired state of an Integration."""

    version: str = Field(
        default="",
        description="Your label for this workflow version, shown by kubectl get (e.g. 2026.11.1).",
        max_length=63,
    )
    trigger: Trigger = Field(description="What starts the workflow.")
    business_key: Cel | None = Field(
        default=None,
        description="CEL expression giving the record's business key (idempotency key) "
        "from `input` and `meta`; "
        "the delivery id when empty.",
    )
    steps: list[Step] = Field(
        description="Ordered steps.",
        min_length=1,
        max_length=50,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    error_policy: ErrorPolicy = Field(default_factory=ErrorPolicy, description="Retries and failure routing.")
    expression_timeout: Duration = Field(
        default=EXPRESSION_TIMEOUT_DEFAULT,
        description="Longest one CEL expression that iterates (all, exists, exists_one, map, filter) may run "
        "over one record, between 10ms and 60s. Such expressions run in a worker process the runner kills at "
        "this deadline; the record then goes to the exception queue as ExpressionBudgetExceeded. Expressions "
        "without iteration run inline: their cost is bounded by the payload limits.",
    )
    sync_policy_ref: LocalObjectReference | None = Field(
        default=None,
        description="SyncPolicy whose ownership and match rules apply. Immutable once set.",
        json_schema_extra=immutable("syncPolicyRef", "create a new Integration to bind another SyncPolicy"),
    )
    replicas: int = Field(default=1, description="Runner pods of the stable revision.", ge=0, le=100)
    concurrency: int = Field(
        default=16,
        description="Records in flight per runner process; replicas add to it (the JetStream consumer allows "
        "64 processes' worth).",
        ge=1,
        le=1000,
    )
    strategy: Strategy = Field(default_factory=Strategy, description="How new revisions roll out.")
    revision_history_limit: int = Field(default=10, description="Old revisions kept for rollback.", ge=0, le=100)
    progress_deadline_seconds: int = Field(
        default=600,
        description="A rollout that makes no progress for this long is reported.",
        ge=30,
        le=86400,
    )
    paused: bool = Field(default=False, description="Stop the rollout where it is; records keep flowing.")


class RevisionFigures(ApiModel):
    """One revision's share of the figures (the stable one, a canary, an aborted or older one)."""

    revision: str = Field(description="Revision (ControllerRevision name).", max_length=253)
    number: int | None = Field(default=None, description="Its number, while its ControllerRevision exists.", ge=0)
    processed: int = Field(default=0, description="Records its runners completed.", ge=0)
    failed: int = Field(default=0, description="Records its runners failed (transient or permanent).", ge=0)
    exceptions: int = Field(default=0, description="Records it parked for a person, decided or not.", ge=0)
    exceptions_waiting: int = Field(default=0, description="Of those, records still waiting for a decision.", ge=0)
    dead_lettered: int = Field(default=0, description="Records that exhausted their deliveries on it.", ge=0)
    last_success_time: datetime | None = Field(default=None, description="When one of its records last completed.")


class PollFigures(ApiModel):
    """A schedule trigger's polling, as its poller (the runner holding the poll lease) reports it."""

    last_poll_time: datetime | None = Field(default=None, description="When the last poll started.")
    last_success_time: datetime | None = Field(default=None, description="When a poll last read to its end.")
    watermark: str | None = Field(
        default=None, description="Change time up to which every row is stored in JetStream.", max_length=128
    )
    records: int = Field(default=0, description="Rows the last poll published.", ge=0)
    pages: int = Field(default=0, description="Pages the last poll read.", ge=0)
    polls: int = Field(default=0, description="Polls by the current poller since it started.", ge=0)
    errors: int = Field(default=0, description="Of those, polls that failed (the watermark stayed).", ge=0)
    published: int = Field(default=0, description="Rows the current poller published since it started.", ge=0)
    last_error: str | None = Field(default=None, description="Why the last failed poll failed.", max_length=1024)


class BusinessFigures(ApiModel):
    """The whole Integration's figures (every revision summed) and each revision's own.

    Processed, failed, dead-lettered and lag come from the runners' heartbeats: counts since each
    runner process started, kept while the operator runs. Exceptions come from the exception
    stream, read every `ONCEFLOW_REVIEW_SECONDS`: what `onceflow exceptions list` shows.
    """

    processed: int = Field(default=0, description="Records that completed all steps, on any revision.", ge=0)
    failed: int = Field(
        default=0, description="Records that failed a step (transient or permanent), on any revision.", ge=0
    )
    exceptions: int = Field(
        default=0,
        description="Records parked for a person (exceptions and approvals) that the exception stream holds, "
        "decided or not.",
        ge=0,
    )
    exceptions_waiting: int = Field(
        default=0, description="Of those, records still waiting for a decision (the review queue).", ge=0
    )
    dead_lettered: int = Field(default=0, description="Records that exhausted their deliveries.", ge=0)
    consumer_lag: int = Field(default=0, description="Records not yet delivered to the consumer.", ge=0)
    consumer_lag_growth: float = Field(
        default=0,
        description="Records per second the consumer lag grew by over the runners' last readings (the "
        "fastest-growing lane); above 0 for long, the runners fall behind: add replicas or concurrency.",
    )
    last_success_time: datetime | None = Field(default=None, description="When a record last completed.")
    revisions: list[RevisionFigures] = Field(
        default_factory=list, description="Per revision, newest first (at most 10).", max_length=10
    )
    poll: PollFigures | None = Field(default=None, description="A schedule trigger's polling.")


class IntegrationStatus(ApiModel):
    """Observed state of an Integration, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.", ge=0)
    conditions: list[Condition] = conditions_field()
    phase: Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded"] | None = Field(
        default=None, description="One word for people: Pending, Progressing, Paused, Healthy or Degraded."
    )
    message: str | None = Field(default=None, description="What is happening, for a person.", max_length=4096)
    current_revision: str | None = Field(
        default=None, description="Revision the spec asks for (ControllerRevision name).", max_length=253
    )
    stable_revision: str | None = Field(
        default=None, description="Revision that last completed its rollout.", max_length=253
    )
    revision: int | None = Field(default=None, description="Number of the current revision.", ge=0)
    current_step_index: int | None = Field(default=None, description="Canary step being run.", ge=0)
    canary_weight: int | None = Field(
        default=None, description="Percent of records the current revision takes.", ge=0, le=100
    )
    analysis: AnalysisStatus | None = Field(default=None, description="Current or last analysis.")
    rollout: RolloutStatus | None = Field(default=None, description="Rollout bookkeeping.")
    figures: BusinessFigures | None = Field(default=None, description="Business figures from the runners.")


class Integration(ApiModel):
    """One workflow: a trigger, ordered steps, an error policy and a rollout strategy."""

    api_version: Literal["onceflow.io/v1alpha1"] = Field(default="onceflow.io/v1alpha1", alias="apiVersion")
    kind: Literal["Integration"] = "Integration"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: IntegrationSpec
    status: IntegrationStatus | None = None
