"""The `lookup` step: fetch from a Connector and bind the answer to `steps.<name>`.

A 404 binds null when the plan says `Continue` (the thing does not exist yet, which later
steps may test), and is a permanent failure otherwise.
"""

from __future__ import annotations

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner
from onceflow_runner.engine.steps._request import bind_response, request_expressions, request_target, send_request

__all__ = ["LOOKUP"]


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    req = step.request
    if req is None:
        return None
    path, query = await request_target(step, req, run)
    response = await send_request(step, req, run, path, query)
    if response.status == 404 and req.not_found == "Continue":
        run.context["steps"][step.name] = None
        run.results.append(StepResult(step.name, step.kind, "not-found", status=404, latency_ms=response.latency_ms))
        return None
    bind_response(step, req, run, path, response)
    return None


LOOKUP = StepRunner("lookup", expressions=request_expressions, run=_run)
