"""What lookup, dedupe and call share: one request to a Connector, built from CEL, bound to `steps.<name>`.

Why: the three kinds read the same `request` block of the plan and send it the same way (origin
and trace headers); they differ in what they send and in what they make of the answer, which
stays in each kind's module.
"""

from __future__ import annotations

from typing import Any

from onceflow_runner.contract import headers as h
from onceflow_runner.contract.plan import RequestPlan, StepPlan
from onceflow_runner.engine.expressions import HEAVY_BYTES
from onceflow_runner.engine.outcome import StepResult
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps._kind import RecordRun
from onceflow_runner.errors import InvalidRecord, PermanentFailure

__all__ = ["bind_response", "request_expressions", "request_target", "send_request"]


def request_expressions(step: StepPlan) -> list[str]:
    """The CEL every request reads: its path and query values."""
    req = step.request
    return [req.path, *req.query.values()] if req else []


async def request_target(step: StepPlan, req: RequestPlan, run: RecordRun) -> tuple[str, dict[str, str]]:
    """Evaluate the request's path and query parameters for this record."""
    path = str(await run.evaluate(req.path, step=step.name, what="path"))
    if "?" in path or "#" in path:
        # Query parameters belong in the step's query block (encoded there); a '?' or '#' here
        # came from record data and would change which endpoint the credentials are sent to.
        raise InvalidRecord(
            f"path {path[:200]!r} holds '?' or '#'; put query parameters in the step's query block and "
            "wrap record values in pathSegment()",
            step=step.name,
        )
    query = {k: str(await run.evaluate(v, step=step.name, what=f"query {k}")) for k, v in req.query.items()}
    return path, query


async def send_request(
    step: StepPlan,
    req: RequestPlan,
    run: RecordRun,
    path: str,
    query: dict[str, str],
    *,
    body: Any = None,
    idempotency_key: str | None = None,
) -> Response:
    """Send the request with the record's origin and trace context."""
    meta = run.context["meta"]
    headers = {h.ORIGIN: str(meta.get("source", ""))}
    if meta.get("traceparent"):
        headers[h.TRACEPARENT] = str(meta["traceparent"])
    return await run.caller.request(
        req.connector,
        req.method,
        path,
        query=query,
        body=body,
        idempotency_key=idempotency_key,
        headers=headers,
        step=step.name,
    )


def bind_response(step: StepPlan, req: RequestPlan, run: RecordRun, path: str, response: Response) -> None:
    """Bind the answer to `steps.<name>` and record the step; a 404 is the record's permanent failure."""
    if response.status == 404:
        raise PermanentFailure(f"{req.connector} answered 404 for {req.method} {path}", step=step.name)
    run.context["steps"][step.name] = response.body
    run.heavy = run.heavy or response.size > HEAVY_BYTES
    run.results.append(StepResult(step.name, step.kind, "ok", status=response.status, latency_ms=response.latency_ms))
