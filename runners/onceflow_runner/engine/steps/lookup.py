"""The `lookup` step: fetch from a Connector and bind the answer to `steps.<name>`.

A 404 binds null when the plan says `Continue` (the thing does not exist yet, which later
steps may test), and is a permanent failure otherwise. With `paging`, every page is read and
`steps.<name>` is `{"data": rows of all pages, "pages": n, "complete": bool}`; a read that
`maxPages` stopped parks the record for a person, as a capped dedupe search does.
"""

from __future__ import annotations

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner
from onceflow_runner.engine.steps._request import (
    FirstPageNotFound,
    bind_response,
    capped_reason,
    read_every_page,
    request_expressions,
    request_target,
    send_request,
)
from onceflow_runner.engine.steps.approve import is_approved_at
from onceflow_runner.errors import PermanentFailure

__all__ = ["LOOKUP"]


async def _run_paged(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    """Bind every row of every page as {data, pages, complete}; a read stopped by maxPages waits for a person."""
    req = step.request
    assert req is not None
    try:
        search = await read_every_page(step, req, run)
    except FirstPageNotFound:
        if req.not_found == "Fail":
            raise PermanentFailure(f"{req.connector} answered 404 to the lookup", step=step.name) from None
        run.context["steps"][step.name] = None
        run.results.append(StepResult(step.name, step.kind, "not-found", status=404))
        return None
    run.context["steps"][step.name] = search.binding()
    run.results.append(search.result(step))
    if not search.complete and not is_approved_at(step.name, run):
        # Later steps would decide on part of the list as if it were all of it.
        reason = capped_reason("lookup", search)
        return RecordOutcome("parked", run.context["record"], reason=reason, step=step.name)
    return None


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    req = step.request
    if req is None:
        return None
    if req.paging is not None:
        return await _run_paged(step, run)
    path, query = await request_target(step, req, run)
    response = await send_request(step, req, run, path, query)
    if response.status == 404 and req.not_found == "Continue":
        run.context["steps"][step.name] = None
        run.results.append(StepResult(step.name, step.kind, "not-found", status=404, latency_ms=response.latency_ms))
        return None
    bind_response(step, req, run, path, response)
    return None


LOOKUP = StepRunner("lookup", expressions=request_expressions, run=_run)
