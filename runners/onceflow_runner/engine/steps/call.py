"""The `call` step: the side effect, sent once per business key, with SyncPolicy ownership enforced.

Three rules of DESIGN.md live here: a record is never sent back to the system it came from
(echo suppression), an update carries only the fields its source owns, and every call carries
an idempotency key derived from the business key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onceflow_runner.contract.plan import ConnectorPlan, RequestPlan, StepPlan
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner
from onceflow_runner.engine.steps._request import bind_response, request_expressions, request_target, send_request

__all__ = ["CALL", "is_echo"]


def _expressions(step: StepPlan) -> list[str]:
    req = step.request
    if req is None:
        return []
    return [*request_expressions(step), *(e for e in (req.body, req.idempotency_key) if e)]


def is_echo(meta: Mapping[str, Any], connector: str, target: ConnectorPlan | None) -> bool:
    """True when a record would go back to the system it came from.

    By Connector name (an event relayed by the same Connector) or by system: the ERP's webhook
    Connector and its REST Connector have different names but the same `spec.system`.
    """
    if meta.get("origin") == connector:
        return True
    system = str(meta.get("originSystem") or "")
    return bool(system) and target is not None and target.system == system


def _owned_fields_only(run: RecordRun, req: RequestPlan, body: Any, name: str) -> Any:
    """On updates, a source may set only the fields the SyncPolicy says it owns."""
    plan = run.plan
    policy = plan.sync_policy
    if policy is None or req.method not in {"PUT", "PATCH"} or not isinstance(body, Mapping) or not plan.source:
        return body
    kept = {k: v for k, v in body.items() if policy.owners.get(k, policy.owner_default) == plan.source}
    dropped = sorted(set(body) - set(kept))
    if dropped:
        run.results.append(StepResult(name, "ownership", "dropped", f"{plan.source} does not own {', '.join(dropped)}"))
    return kept


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    req = step.request
    if req is None:
        return None
    name = step.name
    ctx = run.context
    meta = ctx["meta"]
    if is_echo(meta, req.connector, run.plan.connectors.get(req.connector)):
        # The record came from this system: sending it back would echo the change.
        run.results.append(StepResult(name, step.kind, "skipped", f"echo to origin {req.connector} suppressed"))
        return None
    path, query = await request_target(step, req, run)
    body = await run.evaluate(req.body, step=name, what="body") if req.body else ctx["record"]
    body = _owned_fields_only(run, req, body, name)
    key = (
        str(await run.evaluate(req.idempotency_key, step=name, what="idempotencyKey"))
        if req.idempotency_key
        else f"{meta['businessKey']}/{name}"
    )
    response = await send_request(step, req, run, path, query, body=body, idempotency_key=key)
    bind_response(step, req, run, path, response)
    return None


CALL = StepRunner("call", expressions=_expressions, run=_run)
