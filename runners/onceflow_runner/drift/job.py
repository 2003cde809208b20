"""`onceflow reconcile`: one drift check between a SyncPolicy's two systems.

Lists the entity in both systems, compares them (`drift.compare_records`) and publishes the
counts as a CloudEvent `io.onceflow.<entity>.drift` on `onceflow.<ns>.events.<entity>.drift`,
where the operator picks them up for the SyncPolicy's status. Reads only; changes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ReconcilePlan
from onceflow_runner.drift.compare import compare_records, records_of
from onceflow_runner.errors import OnceflowError

__all__ = ["run_reconcile"]


async def run_reconcile(plan: ReconcilePlan, nats_url: str, secrets_dir: Path) -> dict[str, Any]:
    """Compare, publish the result, and return it."""
    caller = HttpCaller({"left": plan.left.connector, "right": plan.right.connector}, secrets_dir)
    try:
        sides = []
        for name, side in (("left", plan.left), ("right", plan.right)):
            resp = await caller.request(
                name, "GET", side.path, query={}, body=None, idempotency_key=None, headers={}, step=f"reconcile-{name}"
            )
            if resp.status >= 400:
                raise OnceflowError(f"{side.connector.name} answered {resp.status} to GET {side.path}")
            sides.append(records_of(resp.body))
    finally:
        await caller.aclose()
    report = compare_records(sides[0], sides[1], plan.left.key_field, plan.right.key_field)
    now = datetime.now(UTC).isoformat()
    result = {
        "syncPolicy": plan.sync_policy,
        "entity": plan.entity,
        "time": now,
        "compared": report.compared,
        **report.as_status(),
        "examples": report.examples,
    }
    nc = await natsio.connect(nats_url, name=f"onceflow-reconcile/{plan.sync_policy}")
    try:
        headers = {
            "ce-specversion": "1.0",
            "ce-type": f"io.onceflow.{plan.entity}.drift",
            "ce-source": f"/namespaces/{plan.namespace}/syncpolicies/{plan.sync_policy}",
            "ce-id": f"{plan.sync_policy}/{now}",
            "ce-time": now,
            "content-type": "application/json",
            "Nats-Msg-Id": f"drift/{plan.sync_policy}/{now}",
        }
        js = nc.jetstream()
        await natsio.ensure_streams(js)
        await js.publish(plan.events_subject, json.dumps(result).encode(), headers=headers)
    finally:
        await nc.close()
    return result
