"""The Integration kind: one versioned workflow from a trigger through ordered steps.

Steps are a list of small, single-purpose blocks (validate, map, filter, lookup, dedupe, call,
publish, approve) whose logic is written in CEL, the language Kubernetes itself uses for
validation rules, so the people who write CRD rules can read a workflow. The workflow part of
the spec (trigger, steps, error policy, SyncPolicy) is what makes a revision; replicas,
strategy and pause are how a revision is run and do not make one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import (
    DNS_LABEL,
    DURATION,
    IDENTIFIER,
    ApiModel,
    Condition,
    LocalObjectReference,
    cel_rules,
    conditions_field,
    immutable,
)
from onceflow_runner.contract.plan import PROTECTED_FIELDS

__all__ = [
    "ENTITIES",
    "STEP_KINDS",
    "AnalysisMetric",
    "AnalysisProvider",
    "AnalysisStatus",
    "ApproveStep",
    "BusinessFigures",
    "CallStep",
    "CanaryStep",
    "CanaryStrategy",
    "ConnectorTrigger",
    "DedupeStep",
    "Entity",
    "ErrorPolicy",
    "FilterStep",
    "Integration",
    "IntegrationSpec",
    "IntegrationStatus",
    "LookupStep",
    "MapStep",
    "MetricRun",
    "PauseCondition",
    "PauseStep",
    "PrometheusProvider",
    "PublishStep",
    "RollbackWindow",
    "RolloutStatus",
    "RuleCheck",
    "ScheduleTrigger",
    "Step",
    "Strategy",
    "SuggestedFix",
    "Trigger",
    "ValidateStep",
]

Entity = Literal["customer", "item", "price", "order", "shipment", "invoice", "supplier"]
ENTITIES: tuple[str, ...] = Entity.__args__  # type: ignore[attr-defined]
STEP_KINDS = ("validate", "map", "filter", "lookup", "dedupe", "call", "publish", "approve")
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
#: A CEL expression; bounded so that the API server's CEL cost budget holds.
Cel = Annotated[str, Field(min_length=1, max_length=4096)]
Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]


class SuggestedFix(ApiModel):
    """A correction offered to the person reviewing the exception; shown, never applied on its own."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                f"!self.field.matches('{PROTECTED_FIELDS.pattern}')",
                "price and credit fields are never changed by a suggestion; leave them to the reviewer",
            ),
        )
    }

    field: str = Field(
        description="Dot path into the received payload to change, e.g. data.address.country.",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        max_length=253,
    )
    value: Cel = Field(description="CEL over `input`, `record` and `meta` giving the proposed value.")


class RuleCheck(ApiModel):
    """A CEL rule a record must satisfy, with the message an operator will read."""

    expression: Cel = Field(description="CEL expression over `record` (and `input`, `meta`) that must be true.")
    message: str = Field(
        description="What is wrong with the record when the rule fails, and what to do.", max_length=1024
    )
    suggest: SuggestedFix | None = Field(
        default=None, description="A correction to offer the reviewer when the rule fails (never applied by itself)."
    )


class ValidateStep(ApiModel):
    """Check the record against a canonical entity schema and CEL rules; failures become exceptions."""

    entity: Entity | None = Field(
        default=None, description="Canonical entity the record must be (checked field by field)."
    )
    rules: list[RuleCheck] = Field(default_factory=list, description="Extra CEL rules.", max_length=32)


class MapStep(ApiModel):
    """Build the next `record` from CEL expressions, one per target field."""

    fields: dict[str, Cel] = Field(description="Target field name -> CEL expression.", min_length=1, max_length=100)
    mode: Literal["Replace", "Merge"] = Field(
        default="Replace",
        description="Replace: the fields become the whole record. Merge: they are set on the current record.",
    )


class FilterStep(ApiModel):
    """Continue only when the condition holds; other records are acknowledged and audited as filtered."""

    condition: Cel = Field(description="CEL condition; false means the record stops here, successfully.")


class LookupStep(ApiModel):
    """Call a Connector and bind its JSON answer to `steps.<name>` for later steps."""

    connector: str = Field(description="Name of a REST Connector.", pattern=DNS_LABEL, max_length=63)
    method: HttpMethod = Field(default="GET", description="HTTP method.")
    path: Cel = Field(
        description=(
            'CEL expression giving the path under the Connector\'s baseURL, e.g. "/api/resource/Item/" + '
            "pathSegment(record.sku). Wrap record values in pathSegment() (it percent-encodes one segment); "
            "a path with '?', '#', '//', a dot segment or a scheme fails the record. Query parameters go in query."
        )
    )
    query: dict[str, Cel] = Field(default_factory=dict, description="Query parameter -> CEL expression.", max_length=32)
    not_found: Literal["Fail", "Continue"] = Field(
        default="Continue", description="On 404: Continue binds null; Fail raises an exception."
    )


class DedupeStep(ApiModel):
    """Find existing records that match by the SyncPolicy's identity rules; matches go to approval."""

    connector: str = Field(description="Name of a REST Connector to search.", pattern=DNS_LABEL, max_length=63)
    path: Cel = Field(
        description="CEL expression giving the search path; wrap record values in pathSegment() as for lookup."
    )
    query: dict[str, Cel] = Field(default_factory=dict, description="Query parameter -> CEL expression.", max_length=32)
    candidates: Cel = Field(
        default="response.data", description="CEL expression selecting the candidate list from `response`."
    )
    on_match: Literal["Approve", "Skip", "Exception"] = Field(
        default="Approve",
        description="Approve parks the record for a person (merge or create); Skip acknowledges it.",
    )


class CallStep(ApiModel):
    """The side effect: call a Connector with an idempotency key derived from the business key."""

    connector: str = Field(description="Name of a REST Connector.", pattern=DNS_LABEL, max_length=63)
    method: HttpMethod = Field(default="POST", description="HTTP method.")
    path: Cel = Field(description="CEL expression giving the path; wrap record values in pathSegment() as for lookup.")
    body: Cel | None = Field(
        default=None, description="CEL expression giving the JSON body; the current record when empty."
    )
    idempotency_key: Cel | None = Field(
        default=None,
        description="CEL expression for the Idempotency-Key header; the business key when empty.",
    )


class PublishStep(ApiModel):
    """Publish a canonical CloudEvent, e.g. io.onceflow.customer.created."""

    entity: Entity = Field(description="Canonical entity of the event.")
    verb: str = Field(
        description="Event verb, e.g. created, updated, shipped.", pattern=r"^[a-z][a-z_]*$", max_length=32
    )
    data: Cel | None = Field(
        default=None, description="CEL expression giving the event data; the current record when empty."
    )


class ApproveStep(ApiModel):
    """Park the record in the exception queue until a person approves or rejects it."""

    reason: str = Field(description="Why a person must look, shown in the review queue.", max_length=1024)
    when: Cel | None = Field(
        default=None, description="CEL condition; the record is parked only when true. Always when empty."
    )


class Step(ApiModel):
    """One step of the workflow: a name and exactly one kind."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "[has(self.validate), has(self.map), has(self.filter), has(self.lookup), "
                "has(self.dedupe), has(self.call), has(self.publish), has(self.approve)]"
                ".filter(x, x).size() == 1",
                "each step sets exactly one of validate, map, filter, lookup, dedupe, call, publish, "
                "approve; split a step that does two things into two named steps",
            ),
        )
    }

    name: str = Field(
        description="Step name, unique in the workflow; a CEL identifier so later steps can read steps.<name>.",
        pattern=IDENTIFIER,
        max_length=63,
    )
    validate_: ValidateStep | None = Field(default=None, alias="validate", description="Validate the record.")
    map: MapStep | None = Field(default=None, description="Reshape the record.")
    filter: FilterStep | None = Field(default=None, description="Stop records that do not qualify.")
    lookup: LookupStep | None = Field(default=None, description="Fetch data from a Connector.")
    dedupe: DedupeStep | None = Field(default=None, description="Match against existing records.")
    call: CallStep | None = Field(default=None, description="Make the side effect.")
    publish: PublishStep | None = Field(default=None, description="Publish a canonical event.")
    approve: ApproveStep | None = Field(default=None, description="Wait for a person's decision.")

    @property
    def kind(self) -> str:
        """The one step kind this step sets."""
        for kind in STEP_KINDS:
            attr = "validate_" if kind == "validate" else kind
            if getattr(self, attr) is not None:
                return kind
        return ""


class ConnectorTrigger(ApiModel):
    """Records accepted by a webhook Connector's gateway."""

    name: str = Field(description="Name of a Webhook Connector.", pattern=DNS_LABEL, max_length=63)
    event: str = Field(
        default="*",
        description="Event name to consume, e.g. customer.approved; * for all.",
        pattern=r"^(\*|[a-z0-9][a-z0-9_/-]*(\.[a-z0-9][a-z0-9_/-]*)*)$",
        max_length=128,
    )


class ScheduleTrigger(ApiModel):
    """Run on a cron schedule, e.g. to poll a system that cannot send webhooks."""

    cron: str = Field(description="Five-field cron expression.", min_length=9, max_length=128)
    time_zone: str = Field(default="UTC", description="IANA time zone.", max_length=64)


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
    schedule: ScheduleTrigger | None = Field(default=None, description="A cron schedule.")


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


class PauseStep(ApiModel):
    """Wait: for a duration, or until promoted when no duration is given."""

    duration: str | None = Field(default=None, description="How long to wait.", pattern=DURATION, max_length=32)


class PrometheusProvider(ApiModel):
    """Read a metric from Prometheus instead of the runners' own heartbeats."""

    address: str = Field(description="Prometheus base URL.", pattern=r"^https?://[^\s]+$", max_length=2048)
    query: str = Field(description="PromQL query returning one scalar or one-element vector.", max_length=4096)


class AnalysisProvider(ApiModel):
    """Where a metric comes from; the runners' stats heartbeats when empty."""

    prometheus: PrometheusProvider | None = Field(default=None, description="A Prometheus query.")


class AnalysisMetric(ApiModel):
    """One measurement taken repeatedly during a canary step."""

    name: str = Field(description="Metric name.", pattern=IDENTIFIER, max_length=63)
    interval: str = Field(default="30s", description="Time between measurements.", pattern=DURATION, max_length=32)
    count: int = Field(default=3, description="Measurements to take.", ge=1, le=100)
    success_condition: Cel = Field(
        description="CEL over `result` (errorRatio, exceptionRatio, p95LatencyMs, throughput; or a Prometheus scalar)."
    )
    failure_condition: Cel | None = Field(default=None, description="CEL that marks a measurement failed.")
    failure_limit: int = Field(default=0, description="Failed measurements tolerated.", ge=0, le=100)
    inconclusive_limit: int = Field(default=0, description="Inconclusive measurements tolerated.", ge=0, le=100)
    provider: AnalysisProvider = Field(default_factory=AnalysisProvider, description="Metric source.")


class CanaryAnalysis(ApiModel):
    """Measurements that must pass before the rollout continues."""

    metrics: list[AnalysisMetric] = Field(
        description="Metrics to measure.",
        min_length=1,
        max_length=10,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class CanaryStep(ApiModel):
    """One step of a canary rollout: exactly one of setWeight, pause, analysis."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
                "each canary step sets exactly one of setWeight, pause or analysis",
            ),
        )
    }

    set_weight: int | None = Field(
        default=None, description="Percent of records the new revision takes (0-100).", ge=0, le=100
    )
    pause: PauseStep | None = Field(default=None, description="Wait for a duration or for promotion.")
    analysis: CanaryAnalysis | None = Field(default=None, description="Measure before continuing.")


class CanaryStrategy(ApiModel):
    """Steps that move records to the new revision gradually."""

    steps: list[CanaryStep] = Field(description="Ordered canary steps.", max_length=32)


class RollbackWindow(ApiModel):
    """Going back to one of the last N revisions skips the canary steps (a git revert is fast)."""

    revisions: int = Field(default=1, description="How many previous revisions are fast-tracked.", ge=0, le=10)


class Strategy(ApiModel):
    """How a new revision replaces the running one."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.type != 'Canary' || (has(self.canary) && size(self.canary.steps) > 0)",
                "strategy Canary needs canary.steps, e.g. [{setWeight: 20}, {pause: {duration: 5m}}]",
            ),
            (
                "self.type == 'Canary' || !has(self.canary)",
                "canary steps are only used with strategy type Canary; set type: Canary or remove canary",
            ),
        )
    }

    type: Literal["Recreate", "RollingUpdate", "Canary"] = Field(
        default="RollingUpdate", description="Recreate, RollingUpdate or Canary."
    )
    canary: CanaryStrategy | None = Field(default=None, description="For type Canary.")
    rollback_window: RollbackWindow = Field(
        default_factory=RollbackWindow, description="Revisions a rollback to skips the canary for."
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
    sync_policy_ref: LocalObjectReference | None = Field(
        default=None,
        description="SyncPolicy whose ownership and match rules apply. Immutable once set.",
        json_schema_extra=immutable("syncPolicyRef", "create a new Integration to bind another SyncPolicy"),
    )
    replicas: int = Field(default=1, description="Runner pods of the stable revision.", ge=0, le=100)
    concurrency: int = Field(
        default=16, description="Records in flight per runner pod (JetStream max ack pending).", ge=1, le=1000
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


class MetricRun(ApiModel):
    """Measurements of one analysis metric in the current step."""

    name: str = Field(description="Metric name.", max_length=63)
    taken: int = Field(default=0, description="Measurements taken.", ge=0)
    failed: int = Field(default=0, description="Measurements that failed.", ge=0)
    inconclusive: int = Field(default=0, description="Measurements with no verdict (or no data).", ge=0)
    last_value: str = Field(default="", description="The last measured result, as text.", max_length=512)
    last_time: datetime | None = Field(default=None, description="When it was last measured.")


class AnalysisStatus(ApiModel):
    """Result of the current or last canary analysis."""

    phase: Literal["Running", "Successful", "Failed", "Inconclusive"] = Field(description="Outcome so far.")
    step: int = Field(default=0, description="Canary step the analysis belongs to.", ge=0)
    metric: str = Field(default="", description="Metric that decided the outcome.", max_length=63)
    message: str = Field(default="", description="Measured values and conditions.", max_length=1024)
    metrics: list[MetricRun] = Field(default_factory=list, description="Per-metric measurements.", max_length=10)


class PauseCondition(ApiModel):
    """Why the rollout is not moving."""

    reason: Literal["PausedByUser", "CanaryPauseStep", "InconclusiveAnalysis", "SpecPaused"] = Field(
        description="PausedByUser (verb), CanaryPauseStep (a pause step without duration), "
        "InconclusiveAnalysis, or SpecPaused (spec.paused)."
    )
    start_time: datetime = Field(description="When the pause began.")


class RolloutStatus(ApiModel):
    """The operator's rollout bookkeeping; read it, never write it (use the verbs)."""

    canary_revision: str = Field(default="", description="Revision in canary, if any.", max_length=253)
    aborted_revision: str = Field(
        default="", description="Revision whose rollout was aborted; retry or a new spec clears it.", max_length=253
    )
    step_started_at: datetime | None = Field(default=None, description="When the current step began.")
    progress_at: datetime | None = Field(default=None, description="When the rollout last made progress.")
    paused_by_user: bool = Field(default=False, description="Set by the pause verb, cleared by resume.")
    pause_conditions: list[PauseCondition] = Field(
        default_factory=list, description="Why the rollout is waiting.", max_length=4
    )
    split_sequence: int = Field(default=0, description="Stream sequence of the newest split marker.", ge=0)
    draining_revision: str = Field(
        default="", description="Revision finishing the canary lane's records before it is removed.", max_length=253
    )
    previous_stable: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list, description="Revisions that were stable before, newest first.", max_length=10
    )
    last_action: str = Field(default="", description="The last verb handled, with its time.", max_length=128)


class BusinessFigures(ApiModel):
    """Counts the runners report over NATS, summed over the revision's pods."""

    processed: int = Field(default=0, description="Records that completed all steps.", ge=0)
    failed: int = Field(default=0, description="Records that failed a step (transient or permanent).", ge=0)
    exceptions: int = Field(default=0, description="Records waiting in the exception queue.", ge=0)
    dead_lettered: int = Field(default=0, description="Records that exhausted their deliveries.", ge=0)
    consumer_lag: int = Field(default=0, description="Records not yet delivered to the consumer.", ge=0)
    last_success_time: datetime | None = Field(default=None, description="When a record last completed.")


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
