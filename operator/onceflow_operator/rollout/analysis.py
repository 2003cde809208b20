"""Canary analysis (pure): judge one measurement, fold measurements into a step's runs.

Verdicts follow Argo Rollouts: a measurement is Successful when `successCondition` holds, else
Failed when there is no `failureCondition` or it holds, else Inconclusive; no data is
Inconclusive. A step fails once a metric has more failures than its `failureLimit`, pauses once it
has more inconclusive readings than its `inconclusiveLimit`, and succeeds when every metric has
taken `count` readings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from onceflow_operator.api.rollout import AnalysisMetric
from onceflow_runner.contract.timestamps import format_time
from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.errors import InvalidRecord

__all__ = ["Measurement", "Verdict", "fold_analysis", "judge"]

Verdict = Literal["Successful", "Failed", "Inconclusive"]


@dataclass(frozen=True)
class Measurement:
    """One reading of a metric: the `result` CEL sees, or None when there was no data."""

    result: Any
    note: str = ""


def judge(metric: AnalysisMetric, measurement: Measurement) -> tuple[Verdict, str]:
    """One measurement's verdict, as Argo Rollouts defines it: success, else failure, else inconclusive."""
    if measurement.result is None:
        return "Inconclusive", measurement.note or "no data from the canary yet"
    context = {"result": measurement.result}
    try:
        if evaluate(metric.success_condition, context, step=metric.name, what="successCondition") is True:
            return "Successful", f"{metric.success_condition} held"
        if metric.failure_condition is None:
            return "Failed", f"{metric.success_condition} did not hold"
        if evaluate(metric.failure_condition, context, step=metric.name, what="failureCondition") is True:
            return "Failed", f"{metric.failure_condition} held"
    except InvalidRecord as exc:
        return "Inconclusive", exc.reason
    return "Inconclusive", "neither condition held"


def fold_analysis(
    previous: Mapping[str, Any] | None,
    index: int,
    metrics: Sequence[AnalysisMetric],
    measurements: Mapping[str, Measurement],
    now: datetime,
) -> tuple[dict[str, Any], Verdict | None]:
    """The step's analysis status with the new measurements folded in, and its verdict once there is one.

    Runs recorded for another step (`previous["step"] != index`) start again from zero.
    """
    same_step = (previous or {}).get("step") == index
    runs = {r["name"]: dict(r) for r in ((previous or {}).get("metrics") or [])} if same_step else {}
    for metric in metrics:
        run = runs.setdefault(
            metric.name, {"name": metric.name, "taken": 0, "failed": 0, "inconclusive": 0, "lastValue": ""}
        )
        if metric.name in measurements:
            measurement = measurements[metric.name]
            verdict, note = judge(metric, measurement)
            run["taken"] += 1
            run["failed"] += verdict == "Failed"
            run["inconclusive"] += verdict == "Inconclusive"
            run["lastValue"] = f"{measurement.result!r}: {note}"[:512]
            run["lastTime"] = format_time(now)
    analysis: dict[str, Any] = {"phase": "Running", "step": index, "metrics": [runs[m.name] for m in metrics]}
    for metric in metrics:
        run = runs[metric.name]
        if run["failed"] > metric.failure_limit:
            analysis.update(phase="Failed", metric=metric.name, message=f"{metric.name}: {run.get('lastValue', '')}")
            return analysis, "Failed"
        if run["inconclusive"] > metric.inconclusive_limit:
            analysis.update(
                phase="Inconclusive", metric=metric.name, message=f"{metric.name}: {run.get('lastValue', '')}"
            )
            return analysis, "Inconclusive"
    if all(runs[m.name]["taken"] >= m.count for m in metrics):
        analysis.update(phase="Successful", message="all measurements passed")
        return analysis, "Successful"
    return analysis, None
