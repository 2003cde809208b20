"""Canary analysis (pure): judge one measurement, fold measurements into a step's runs.

Verdicts follow Argo Rollouts: a measurement is Successful when `successCondition` holds, else
Failed when there is no `failureCondition` or it holds, else Inconclusive. A step fails once a
metric has more failures than its `failureLimit`, pauses once it has more inconclusive readings
than its `inconclusiveLimit`, and succeeds when every metric has taken `count` readings.

Where Onceflow differs, and why: the runners' heartbeat figures know how many canary records they
cover, so a window with fewer than `minRecords` is *waiting for data*, not a measurement. A quiet
system (a demo, a night) would otherwise pause every canary as inconclusive before it had seen a
record. A Prometheus query has no such count: its empty answer or error stays Inconclusive.
`initialDelay` (as in Argo) holds the first measurement back from the start of the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from onceflow_operator.api.rollout import DEFAULT_MIN_RECORDS, AnalysisMetric
from onceflow_runner.contract.timestamps import format_time
from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.errors import InvalidRecord

__all__ = [
    "Measurement",
    "Verdict",
    "describe_result",
    "fold_analysis",
    "judge",
    "min_records",
    "waiting_for_data",
]

Verdict = Literal["Successful", "Failed", "Inconclusive"]


@dataclass(frozen=True)
class Measurement:
    """One reading of a metric: the `result` CEL sees (None when there was none) and why.

    `waiting` marks a heartbeat window with too few canary records to judge: not a measurement.
    """

    result: Any
    note: str = ""
    waiting: bool = False


def min_records(metric: AnalysisMetric) -> int:
    """Canary records a heartbeat window must hold before `metric` is judged."""
    return metric.min_records if metric.min_records is not None else DEFAULT_MIN_RECORDS


def waiting_for_data(metric: AnalysisMetric, records: int) -> Measurement:
    """The reading of a heartbeat window that holds fewer canary records than the metric needs."""
    return Measurement(
        None,
        f"waiting for data: {records} of {min_records(metric)} canary records in the last minute",
        waiting=True,
    )


def describe_result(result: Any) -> str:
    """A measured `result` as a person reads it (`errorRatio=0.01, count=40`), never a Python repr."""
    if result is None:
        return "no data"
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, float):
        return f"{result:g}"
    if isinstance(result, Mapping):
        return ", ".join(f"{key}={describe_result(value)}" for key, value in result.items())
    if isinstance(result, list | tuple):
        return "[" + ", ".join(describe_result(v) for v in result) + "]"
    return str(result)


def judge(metric: AnalysisMetric, measurement: Measurement) -> tuple[Verdict, str]:
    """One measurement's verdict, as Argo Rollouts defines it: success, else failure, else inconclusive."""
    if measurement.result is None:
        return "Inconclusive", measurement.note or "no data"
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


def _reading(measurement: Measurement, note: str) -> str:
    """What `lastValue` says about one judged measurement."""
    if measurement.result is None:
        return note
    return f"{describe_result(measurement.result)}: {note}"


def fold_analysis(
    previous: Mapping[str, Any] | None,
    index: int,
    metrics: Sequence[AnalysisMetric],
    measurements: Mapping[str, Measurement],
    now: datetime,
) -> tuple[dict[str, Any], Verdict | None]:
    """The step's analysis status with the new measurements folded in, and its verdict once there is one.

    Runs recorded for another step (`previous["step"] != index`) start again from zero. A reading
    that is only waiting for data changes `lastValue` (so people see why nothing moves) but is not
    counted and does not stamp `lastTime`: the metric is measured again on the next reconcile.
    """
    same_step = (previous or {}).get("step") == index
    runs = {r["name"]: dict(r) for r in ((previous or {}).get("metrics") or [])} if same_step else {}
    for metric in metrics:
        run = runs.setdefault(
            metric.name, {"name": metric.name, "taken": 0, "failed": 0, "inconclusive": 0, "lastValue": ""}
        )
        if metric.name not in measurements:
            continue
        measurement = measurements[metric.name]
        if measurement.waiting:
            run["lastValue"] = measurement.note[:512]
            continue
        verdict, note = judge(metric, measurement)
        run["taken"] += 1
        run["failed"] += verdict == "Failed"
        run["inconclusive"] += verdict == "Inconclusive"
        run["lastValue"] = _reading(measurement, note)[:512]
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
    analysis["message"] = "; ".join(
        f"{m.name}: {runs[m.name]['taken']} of {m.count} measurements"
        + (f", {runs[m.name]['lastValue']}" if runs[m.name].get("lastValue") else "")
        for m in metrics
    )[:1024]
    return analysis, None
