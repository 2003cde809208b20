"""The `approve` step: park the record for a person unless one has approved it at this step.

A parked record goes to the exception stream with the step it stopped at; the reviewer's
approval replays it with `meta.decision == "approved"` and `meta.approvedSteps`, the gates
people let it through (this one, and those approved earlier). An approval is scoped: it opens
the gate it was given at, and the next approval gate parks the record again, so one person's
"yes" to a duplicate check never waives a later pricing check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner

__all__ = ["APPROVE", "APPROVED_STEPS_META", "is_approved_at"]

#: Where the runner hands the engine the approved steps (`RecordHeaders.approved_step_names`).
APPROVED_STEPS_META: Final = "approvedSteps"


def is_approved_at(step: str, run: RecordRun) -> bool:
    """True when a person approved this record at `step` (not merely at some other gate)."""
    if not run.approved:
        return False
    meta = run.context["meta"]
    if APPROVED_STEPS_META not in meta:
        # A runner that does not hand over the approved steps yet: the approval stands, unscoped,
        # as it always did (see docs/operations.md). Once it does, only the named gates open.
        return True
    named = meta[APPROVED_STEPS_META]
    return isinstance(named, Sequence) and not isinstance(named, str) and step in named


def _expressions(step: StepPlan) -> list[str]:
    return [step.approve.when] if step.approve and step.approve.when else []


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    gate = step.approve
    if gate is None:
        return None
    ctx = run.context
    wanted = gate.when is None or await run.evaluate(gate.when, step=step.name, what="when") is True
    if wanted and not is_approved_at(step.name, run):
        run.results.append(StepResult(step.name, step.kind, "parked", gate.reason))
        return RecordOutcome("parked", ctx["record"], reason=gate.reason, step=step.name)
    return None


APPROVE = StepRunner("approve", expressions=_expressions, run=_run)
