"""The `validate` step: the record must be its canonical entity and pass the plan's CEL rules.

A failed rule is the record's fault (InvalidRecord, so it goes to a person), carrying the rule's
suggested fix when one can be computed.
"""

from __future__ import annotations

from typing import Any

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.entities import validate_entity
from onceflow_runner.engine.outcome import RecordOutcome
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner
from onceflow_runner.errors import ExpressionBudgetExceeded, InvalidRecord

__all__ = ["VALIDATE"]


def _expressions(step: StepPlan) -> list[str]:
    # Suggested fixes too: they are compiled at start, and one that iterates makes the plan need
    # its CEL workers (a runner that did not start them waited for a worker forever).
    if step.validate_ is None:
        return []
    return [rule for rule, _ in step.validate_.rules] + [value for _, _, value in step.validate_.suggestions]


async def _suggest(fix: tuple[str, str] | None, run: RecordRun, step: str) -> dict[str, Any] | None:
    """The proposed value of a failed rule's suggested fix; None when there is none or it cannot be computed."""
    if fix is None:
        return None
    path, expression = fix
    try:
        return {"field": path, "value": await run.evaluate(expression, step=step, what="suggestion")}
    except (InvalidRecord, ExpressionBudgetExceeded):
        return None


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    check = step.validate_
    if check is None:
        return None
    name = step.name
    ctx = run.context
    if check.entity:
        validate_entity(check.entity, ctx["record"], step=name)
    fixes = {n: (path, expr) for n, path, expr in check.suggestions}
    for n, (rule, message) in enumerate(check.rules):
        if await run.evaluate(rule, step=name, what="rule") is not True:
            raise InvalidRecord(message, step=name, suggestion=await _suggest(fixes.get(n), run, name))
    return None


VALIDATE = StepRunner("validate", expressions=_expressions, run=_run)
