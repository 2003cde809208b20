"""How an Integration's revisions are rolled out, and the rollout bookkeeping kept in its status.

The strategy (Recreate, RollingUpdate, Canary with setWeight / pause / analysis steps) is read by
the pure rollout decisions; the status models are what those decisions write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import (
    DURATION,
    IDENTIFIER,
    ApiModel,
    cel_rules,
)
from onceflow_operator.api.types import Cel

__all__ = [
    "DEFAULT_MIN_RECORDS",
    "AnalysisMetric",
    "AnalysisProvider",
    "AnalysisStatus",
    "CanaryAnalysis",
    "CanaryStep",
    "CanaryStrategy",
    "MetricRun",
    "PauseCondition",
    "PauseStep",
    "PrometheusProvider",
    "RollbackWindow",
    "RolloutStatus",
    "Strategy",
]


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


#: Canary records a heartbeat window must hold before a metric without `minRecords` is judged.
DEFAULT_MIN_RECORDS = 1


class AnalysisMetric(ApiModel):
    """One measurement taken repeatedly during a canary step.

    As in Argo Rollouts, `initialDelay` holds the first measurement back (the canary needs time at
    its new weight before its window means anything). Unlike a Prometheus query, the runners'
    heartbeat figures know how many canary records they cover, so a window with fewer than
    `minRecords` is not judged at all: the metric waits for data instead of counting an
    inconclusive reading, and a quiet system does not pause the rollout by itself.
    """

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "!has(self.minRecords) || !has(self.provider.prometheus)",
                "minRecords counts the canary's own records; a Prometheus metric cannot set it "
                "(put the condition in the query instead)",
                ".minRecords",
            ),
        )
    }

    name: str = Field(description="Metric name.", pattern=IDENTIFIER, max_length=63)
    initial_delay: str = Field(
        default="0s",
        description="Time from the start of the analysis step to the first measurement.",
        pattern=DURATION,
        max_length=32,
    )
    interval: str = Field(default="30s", description="Time between measurements.", pattern=DURATION, max_length=32)
    count: int = Field(default=3, description="Measurements to take.", ge=1, le=100)
    min_records: int | None = Field(
        default=None,
        description="Canary records the last minute must hold before a measurement is judged (default 1); "
        "until then the metric waits for data. Heartbeat metrics only.",
        ge=1,
        le=1_000_000,
    )
    success_condition: Cel = Field(
        description="CEL over `result` (errorRatio, exceptionRatio, p95LatencyMs, throughput; or a Prometheus scalar)."
    )
    failure_condition: Cel | None = Field(default=None, description="CEL that marks a measurement failed.")
    failure_limit: int = Field(default=0, description="Failed measurements tolerated.", ge=0, le=100)
    inconclusive_limit: int = Field(
        default=1,
        description="Inconclusive measurements tolerated (one more pauses the rollout for a person).",
        ge=0,
        le=100,
    )
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
