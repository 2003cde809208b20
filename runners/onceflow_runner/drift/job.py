"""`onceflow drift-check`: one drift check between a SyncPolicy's two systems.

Lists the entity in both systems, every page of each (`engine.paging`, as the side's `paging`
says), compares them (`drift.compare_records`) and publishes the counts, a `DriftResult`, as a
CloudEvent `io.onceflow.<entity>.drift` on `onceflow.<ns>.events.<entity>.drift.<syncpolicy>`,
where the operator picks them up for the SyncPolicy's status. Reads only; changes nothing. A
side whose paging stopped at `maxPages` makes the result incomplete: records only on the other
side are then not counted as missing, since they may sit on a page not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.headers import NATS_MSG_ID, cloudevent_headers
from onceflow_runner.contract.messages import DriftResult
from onceflow_runner.contract.plan import DriftCheckPlan, DriftCheckSide
from onceflow_runner.contract.subjects import EVENTS_STREAM
from onceflow_runner.drift.compare import compare_records, records_of
from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.engine.paging import PagedList, PageRequest, read_pages
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import OnceflowError

__all__ = ["read_side", "run_drift_check"]


async def read_side(caller: HttpCaller, name: str, side: DriftCheckSide) -> PagedList:
    """Every page of one side's list (its `paging`), as records; incomplete when maxPages stopped it."""
    what = f"drift-check-{name}"

    async def fetch(page: PageRequest) -> Response:
        resp = await caller.request(
            name, "GET", page.path, query=page.query, body=None, idempotency_key=None, headers={}, step=what
        )
        if resp.status >= 400:
            raise OnceflowError(
                f"{side.connector.name} answered {resp.status} to GET {page.path} (page {page.number + 1})"
            )
        return resp

    async def rows(resp: Response) -> Any:
        return records_of(resp.body)

    async def following(resp: Response) -> Any:
        assert side.paging.next is not None
        headers: Mapping[str, str] = {str(k).lower(): str(v) for k, v in resp.headers.items()}
        return evaluate(side.paging.next, {"response": resp.body, "headers": headers}, step=what, what="paging.next")

    return await read_pages(
        side.paging,
        base_url=side.connector.base_url,
        path=side.path,
        query={},
        fetch=fetch,
        items_of=rows,
        next_of=following if side.paging.next else None,
    )


def _incomplete(plan: DriftCheckPlan, pages: dict[str, PagedList]) -> str:
    """What a capped read left out, and what to do; empty when both sides were read to their end."""
    capped = [name for name, read in pages.items() if not read.complete]
    if not capped:
        return ""
    sides = {"left": plan.left, "right": plan.right}
    parts = [
        f"the {name} side ({sides[name].connector.name}) stopped at {pages[name].pages} pages, so records only in "
        f"the {'right' if name == 'left' else 'left'} system were not counted as missing"
        for name in capped
    ]
    fields = " and ".join(f"spec.reconcile.{name}.paging.maxPages" for name in capped)
    return "; ".join(parts) + f"; raise {fields} or list fewer records per check"


async def run_drift_check(plan: DriftCheckPlan, nats_url: str, secrets_dir: Path) -> DriftResult:
    """Compare, publish the result, and return it."""
    caller = HttpCaller({"left": plan.left.connector, "right": plan.right.connector}, secrets_dir)
    try:
        pages = {
            name: await read_side(caller, name, side) for name, side in (("left", plan.left), ("right", plan.right))
        }
    finally:
        await caller.aclose()
    sides = [pages["left"].items, pages["right"].items]
    report = compare_records(
        sides[0],
        sides[1],
        plan.left.key_field,
        plan.right.key_field,
        left_complete=pages["left"].complete,
        right_complete=pages["right"].complete,
    )
    message = _incomplete(plan, pages)
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
        complete=not message,
        message=message,
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
        await natsio.bind_stream(js, EVENTS_STREAM)
        await js.publish(plan.events_subject, result.to_wire(), headers=headers)
    finally:
        await nc.close()
    return result
