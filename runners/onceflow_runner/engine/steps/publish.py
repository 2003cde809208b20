"""The `publish` step: a canonical event, keyed by business key and step so a redelivery publishes once."""

from __future__ import annotations

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.outcome import RecordOutcome
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner

__all__ = ["PUBLISH"]


def _expressions(step: StepPlan) -> list[str]:
    return [step.publish.data] if step.publish and step.publish.data else []


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    event = step.publish
    if event is None:
        return None
    ctx = run.context
    data = await run.evaluate(event.data, step=step.name, what="data") if event.data else ctx["record"]
    key = f"{ctx['meta']['businessKey']}/{step.name}"
    await run.events.publish_event(event.entity, event.verb, data, msg_id=key, meta=ctx["meta"])
    return None


PUBLISH = StepRunner("publish", expressions=_expressions, run=_run)
