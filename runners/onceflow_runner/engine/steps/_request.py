"""What lookup, dedupe and call share: one request to a Connector, built from CEL, bound to `steps.<name>`.

Why: the three kinds read the same `request` block of the plan and send it the same way (the
step's headers, origin and trace headers), and read the answer the same way: the step's answer
rules (`read_answer`) say when a 2xx is a failure (JSON-RPC's `error` member), permanent or
transient, with the system's own message, when a 400 means "already exists" or a 200 "not
found", and where the result is (`response.result`). They differ in what they send and in what
they make of the result, which stays in each kind's module.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from onceflow_runner.contract import headers as h
from onceflow_runner.contract.plan import RequestPlan, StepPlan
from onceflow_runner.engine.expressions import HEAVY_BYTES
from onceflow_runner.engine.outcome import StepResult
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps._kind import RecordRun
from onceflow_runner.errors import InvalidRecord, PermanentFailure, RejectedByTarget, TransientFailure

__all__ = ["bind_response", "read_answer", "request_expressions", "request_target", "send_request"]


def request_expressions(step: StepPlan) -> list[str]:
    """The CEL every request reads: its path and query values."""
    req = step.request
    if req is None:
        return []
    rules = [e for rule in req.answers for e in (rule.when, rule.message) if e]
    return [req.path, *req.query.values(), *req.headers.values(), *rules, *([req.result] if req.result else [])]


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
    headers = {
        name: _header_value(await run.evaluate(source, step=step.name, what=f"header {name}"), name, step.name)
        for name, source in req.headers.items()
    }
    headers[h.ORIGIN] = str(meta.get("source", ""))
    if meta.get("traceparent"):
        headers[h.TRACEPARENT] = str(meta["traceparent"])
    response = await run.caller.request(
        req.connector,
        req.method,
        path,
        query=query,
        body=body,
        idempotency_key=idempotency_key,
        headers=headers,
        step=step.name,
        answer_refusals=bool(req.answers),
    )
    # A large answer makes the answer rules (and every later expression) run isolated, as bind_response does.
    run.heavy = run.heavy or response.size > HEAVY_BYTES
    return await read_answer(step, req, run, path, response)


def _header_value(value: Any, name: str, step: str) -> str:
    """A header's value as sent: strings and numbers only, one line (a newline would add a header)."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, str | int | float):
        raise InvalidRecord(f"header {name}: gives a {type(value).__name__}; a header takes a string", step=step)
    text = str(value)
    if any(c in text for c in "\r\n\0"):
        raise InvalidRecord(f"header {name}: the value holds a line break, which a header cannot carry", step=step)
    return text


async def read_answer(step: StepPlan, req: RequestPlan, run: RecordRun, path: str, response: Response) -> Response:
    """Apply the step's answer rules (first that holds wins) and its `result`; return the answer as read.

    NotFound, AlreadyExists and Succeeded become the statuses they stand for (404, 409, 200), so
    each kind's own handling of those applies; Failed and Retry raise with the system's message.
    A refusal the Connector handed over (a 4xx) that no rule claims stays the record's failure.
    """
    if req.answers:
        variables = {"status": response.status, "response": response.body, "headers": dict(response.headers)}
        for n, rule in enumerate(req.answers):
            try:
                holds = await run.evaluate(rule.when, step=step.name, what=f"answer rule {n}", context=variables)
            except InvalidRecord:
                # An answer of another shape (no such field): this rule is not about it. Rules
                # are read against every answer, so `response.error.code` must not fail a success.
                holds = False
            if holds is not True:
                continue
            if rule.outcome in {"Failed", "Retry"}:
                said = (
                    await run.evaluate(rule.message, step=step.name, what=f"answer rule {n} message", context=variables)
                    if rule.message
                    else f"status {response.status}"
                )
                message = f"{req.connector} answered {req.method} {path} with a failure: {str(said)[:500]}"
                if rule.outcome == "Retry":
                    raise TransientFailure(message, step=step.name)
                raise RejectedByTarget(message, step=step.name, status=response.status)
            status = {"NotFound": 404, "AlreadyExists": 409, "Succeeded": 200}[rule.outcome]
            response = replace(response, status=status)
            break
        else:
            if response.status >= 400 and response.status not in {404, 409}:
                raise RejectedByTarget(
                    f"{req.connector} refused {req.method} {path} with {response.status}: {_shown(response.body)}",
                    step=step.name,
                    status=response.status,
                )
    if req.result and response.status < 300:
        result = await run.evaluate(req.result, step=step.name, what="result", context={"response": response.body})
        response = replace(response, body=result)
    return response


def _shown(body: Any) -> str:
    """What a refusal said, briefly (the adapter's summary, for answers a step's rules read)."""
    if isinstance(body, dict):
        for key in ("exc_type", "message", "error", "_server_messages"):
            if body.get(key):
                return str(body[key])[:300]
    if isinstance(body, str) and body.lstrip()[:1] == "<":
        return "an HTML page, not shown"
    return str(body)[:300] if body else "no body"


def bind_response(step: StepPlan, req: RequestPlan, run: RecordRun, path: str, response: Response) -> None:
    """Bind the answer to `steps.<name>` and record the step; a 404 is the record's permanent failure."""
    if response.status == 404:
        raise PermanentFailure(f"{req.connector} answered 404 for {req.method} {path}", step=step.name)
    run.context["steps"][step.name] = response.body
    run.heavy = run.heavy or response.size > HEAVY_BYTES
    run.results.append(StepResult(step.name, step.kind, "ok", status=response.status, latency_ms=response.latency_ms))
