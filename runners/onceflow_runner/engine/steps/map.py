"""The `map` step: build the next record from one CEL expression per target field.

The result is also bound to `steps.<name>`, so later steps can read a mapped shape after the
record has moved on. Fields that cannot iterate share one CEL binding (converting the context
once); fields that iterate go through the record's bounded evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.expressions import bind, evaluate
from onceflow_runner.engine.outcome import RecordOutcome
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner

__all__ = ["MAP"]


def _expressions(step: StepPlan) -> list[str]:
    return list(step.map.fields.values()) if step.map else []


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    spec = step.map
    if spec is None:
        return None
    ctx = run.context
    inline = dict.fromkeys(expr for expr in spec.fields.values() if not run.isolates(expr))  # asked once each
    bound = bind(ctx, tuple(inline)) if inline else None
    mapped = {}
    for key, expr in spec.fields.items():
        what = f"field {key}"
        if bound is not None and expr in inline:
            mapped[key] = evaluate(expr, bound, step=step.name, what=what)
        else:
            mapped[key] = await run.evaluate(expr, step=step.name, what=what)
    base = dict(ctx["record"]) if spec.mode == "Merge" and isinstance(ctx["record"], Mapping) else {}
    ctx["record"] = {**base, **mapped}
    ctx["steps"][step.name] = ctx["record"]
    return None


MAP = StepRunner("map", expressions=_expressions, run=_run)
