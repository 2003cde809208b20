"""The `filter` step: a record whose condition is false stops here, successfully (acked, audited)."""

from __future__ import annotations

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner

__all__ = ["FILTER"]


def _expressions(step: StepPlan) -> list[str]:
    return [step.condition] if step.condition else []


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    if not step.condition:
        return None
    if await run.evaluate(step.condition, step=step.name, what="condition") is not True:
        run.results.append(StepResult(step.name, step.kind, "filtered"))
        return RecordOutcome("filtered", run.context["record"], reason=f"filter {step.name} was false", step=step.name)
    return None


FILTER = StepRunner("filter", expressions=_expressions, run=_run)
