"""`onceflow drift-check`: one drift check between a SyncPolicy's two systems.

Lists the entity in both systems, compares them (`drift.compare_records`) and publishes the
counts, a `DriftResult`, as a CloudEvent `io.onceflow.<entity>.drift` on
`onceflow.<ns>.events.<entity>.drift.<syncpolicy>`, where the operator picks them up for the
SyncPolicy's status. Reads only; changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.headers import NATS_MSG_ID, cloudevent_headers
from onceflow_runner.contract.messages import DriftResult
from onceflow_runner.contract.plan import DriftCheckPlan
from onceflow_runner.drift.compare import compare_records, records_of
from onceflow_runner.errors import OnceflowError

__all__ = ["run_drift_check"]


async def run_drift_check(plan: DriftCheckPlan, nats_url: str, secrets_dir: Path) -> DriftResult:
    """Compare, publish the result, and return it."""
    caller = HttpCaller({"left": plan.left.connector, "right": plan.right.connector}, secrets_dir)
    try:
        sides = []
        for name, side in (("left", plan.left), ("right", plan.right)):
            resp = await caller.request(
                name,
                "GET",
                side.path,
                query={},
                body=None,
                idempotency_key=None,
                headers={},
                step=f"drift-check-{name}",
            )
            if resp.status >= 400:
                raise OnceflowError(f"{side.connector.name} answered {resp.status} to GET {side.path}")
            sides.append(records_of(resp.body))
    finally:
        await caller.aclose()
    report = compare_records(sides[0], sides[1], plan.left.key_field, plan.right.key_field)
    now = datetime.now(UTC).isoformat()
    result = DriftResult(
        sync_policy=plan.sync_policy,
        entity=plan.entity,
        time=now,
        compared=report.compared,
        total=report.total,
        missing_left=report.missing_left,
        missing_right=report.missing_right,
        mismatched=report.mismatched,
        examples=report.examples,
    )
    nc = await natsio.connect(nats_url, name=f"onceflow-drift-check/{plan.sync_policy}")
    try:
        headers = cloudevent_headers(
            event_type=f"io.onceflow.{plan.entity}.drift",
            source=f"/namespaces/{plan.namespace}/syncpolicies/{plan.sync_policy}",
            event_id=f"{plan.sync_policy}/{now}",
            time=now,
            content_type="application/json",
        )
        headers[NATS_MSG_ID] = f"drift/{plan.sync_policy}/{now}"
        js = nc.jetstream()
        await natsio.ensure_streams(js)
        await js.publish(plan.events_subject, result.to_wire(), headers=headers)
    finally:
        await nc.close()
    return result
