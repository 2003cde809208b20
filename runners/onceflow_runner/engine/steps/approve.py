"""The `approve` step: park the record for a person unless one has approved it already.

A parked record goes to the exception stream; the reviewer's approval replays it with
`meta.decision == "approved"`, and then this step lets it through.
"""

from __future__ import annotations

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner

__all__ = ["APPROVE"]


def _expressions(step: StepPlan) -> list[str]:
    return [step.approve.when] if step.approve and step.approve.when else []


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    gate = step.approve
    if gate is None:
        return None
    ctx = run.context
    wanted = gate.when is None or evaluate(gate.when, ctx, step=step.name, what="when") is True
    if wanted and not run.approved:
        run.results.append(StepResult(step.name, step.kind, "parked", gate.reason))
        return RecordOutcome("parked", ctx["record"], reason=gate.reason, step=step.name)
    return None


APPROVE = StepRunner("approve", expressions=_expressions, run=_run)
