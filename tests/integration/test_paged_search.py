"""Paged search on real servers: a dedupe over 1,000 ERP customers, a capped one, a paged drift check.

The runner runs as a process with a real nats-server and the sandbox ERP over HTTP (the
delivery-faults harness); the drift check runs as `onceflow drift-check` does, against the
sandbox ERP (ERPNext's offset paging) and a recorder paging the way Shopify does (Link header).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import nats

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import get_exception
from onceflow_runner.contract.plan import (
    PLAN_VERSION,
    AuthPlan,
    ConnectorPlan,
    DriftCheckPlan,
    DriftCheckSide,
    PagingPlan,
    SecretRef,
)
from onceflow_runner.drift.job import run_drift_check
from onceflow_runner.testing.sandbox import ErpSandbox
from onceflow_runner.testing.sandbox.recorder import RecorderSandbox
from tests.integration.scenario import stream_messages
from tests.integration.test_delivery_faults import start, stop

PAGE = 20
CUSTOMERS = 1000
#: The first row of page 37 in name order (rows 720..739).
ON_PAGE_37 = 36 * PAGE
SAME_TAX_ID = {"identity": {"keys": ["tax_id"]}, "matchRules": [{"name": "same-tax-id", "exact": ["tax_id"]}]}


def erp_with_customers(duplicate_of: str | None) -> ErpSandbox:
    """1,000 customers of one customer group; the one at row 720 has tax id `duplicate_of`."""
    erp = ErpSandbox()
    for i in range(CUSTOMERS):
        tax_id = duplicate_of if i == ON_PAGE_37 and duplicate_of else f"DE9{i:05d}"
        erp.seed(
            "Customer",
            {"name": f"C{i:04d}", "customer_name": f"Customer {i}", "tax_id": tax_id, "customer_group": "Commercial"},
        )
    return erp


def dedupe(max_pages: int) -> dict[str, Any]:
    """A search the ERP narrows only to a large customer group: 1,000 rows, 20 per page."""
    return {
        "name": "existing",
        "dedupe": {
            "connector": "erp",
            "path": "/api/resource/Customer",
            "query": {
                "filters": '[["customer_group", "=", "Commercial"]]',
                "fields": '["name", "customer_name", "tax_id"]',
                "order_by": '"name asc"',
            },
            "paging": {"pageSize": PAGE, "maxPages": max_pages},
        },
    }


def policy() -> dict[str, Any]:
    return {"entity": "customer", "ownership": {"default": "erp"}, **SAME_TAX_ID}


async def test_dedupe_against_1000_customers_finds_the_duplicate_on_page_37(nats_server: NatsServer) -> None:
    h = await start(nats_server, erp=erp_with_customers("DE-DUP"), steps=[dedupe(max_pages=60)], sync_policy=policy())
    try:
        await h.send("DE-DUP")
        await h.send("DE-NEW")
        ledger = await h.settled(2)
        (parked,) = ledger.exceptions
        assert parked.headers["Onceflow-Reason"] == "ApprovalRequired"
        assert parked.headers["Onceflow-Step"] == "existing"
        nc = await nats.connect(nats_server.url)
        try:
            (candidate,) = (await get_exception(nc.jetstream(), h.namespace, parked.seq)).candidates
        finally:
            await nc.close()
        assert candidate["rule"] == "same-tax-id"
        assert candidate["candidate"]["name"] == f"C{ON_PAGE_37:04d}"
        # The other record searched all 51 pages (50 full, one empty), found nothing, was created.
        assert ledger.effects == {"DE-NEW": 1}
        assert h.erp.requests >= 2 * (CUSTOMERS // PAGE + 1) + 1
    finally:
        await stop(h)


async def test_a_search_capped_by_max_pages_parks_the_record_with_the_reason(nats_server: NatsServer) -> None:
    h = await start(nats_server, erp=erp_with_customers(None), steps=[dedupe(max_pages=10)], sync_policy=policy())
    try:
        await h.send("DE-UNSEEN")
        ledger = await h.settled(1)
        (parked,) = ledger.exceptions
        assert parked.headers["Onceflow-Reason"] == "ApprovalRequired"
        assert parked.headers["Onceflow-Step"] == "existing"
        assert parked.headers["Onceflow-Error"] == (
            "search for duplicates stopped at 10 pages; narrow the search with filters or raise paging.maxPages"
        )
        assert ledger.effects == {}  # never created as if no duplicate could exist
    finally:
        await stop(h)


def drift_plan(erp: ErpSandbox, shop: RecorderSandbox, *, shop_pages: int = 100) -> DriftCheckPlan:
    erp_plan = ConnectorPlan(
        name="erp",
        base_url=erp.url,
        auth=AuthPlan(
            type="ERPNextToken",
            api_key=SecretRef(name="erp", key="key"),
            api_secret=SecretRef(name="erp", key="secret"),
        ),
    )
    return DriftCheckPlan(
        plan_version=PLAN_VERSION,
        namespace="drift",
        sync_policy="customer",
        entity="customer",
        left=DriftCheckSide(
            connector=erp_plan,
            path='/api/resource/Customer?fields=["*"]&order_by=creation%20asc',
            key_field="tax_id",
            paging=PagingPlan(page_size=PAGE),
        ),
        right=DriftCheckSide(
            connector=ConnectorPlan(name="shop", base_url=shop.url),
            path="/customers",
            key_field="tax_id",
            paging=PagingPlan(style="LinkHeader", size_param="limit", page_size=7, max_pages=shop_pages),
        ),
        events_subject="onceflow.drift.events.customer.drift.customer",
    )


async def test_drift_check_reads_every_page_of_both_sides_and_counts_right(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """45 ERP customers (3 pages of 20), 44 shop customers (7 pages of 7): 2 missing, 1 changed."""
    (tmp_path / "erp").mkdir()
    (tmp_path / "erp" / "key").write_text("sandbox-key")
    (tmp_path / "erp" / "secret").write_text("sandbox-secret")
    erp, shop = ErpSandbox(), RecorderSandbox("shop")
    for i in range(45):
        erp.seed(
            "Customer", {"name": f"C{i:03d}", "customer_name": f"C {i}", "tax_id": f"DE{i:03d}", "email_id": "a@x"}
        )
    await erp.start()
    await shop.start()
    try:
        async with httpx.AsyncClient(base_url=shop.url) as client:
            for i in range(1, 45):  # DE000 is not in the shop
                email = "changed@x" if i == 30 else "a@x"
                await client.post("/customers", json={"tax_id": f"DE{i:03d}", "email_id": email})
            await client.post("/customers", json={"tax_id": "DE999", "email_id": "a@x"})  # not in the ERP
        result = await run_drift_check(drift_plan(erp, shop), nats_server.url, tmp_path)
        assert (result.missing_left, result.missing_right, result.mismatched, result.compared) == (1, 1, 1, 44)
        assert result.complete
        capped = await run_drift_check(drift_plan(erp, shop, shop_pages=2), nats_server.url, tmp_path)
        stored = await stream_messages(nats_server.url, "ONCEFLOW_EVENTS", "onceflow.drift.events.customer.drift.>")
    finally:
        await erp.stop()
        await shop.stop()
    # The shop read stopped after 14 of its 45 customers (DE001..DE014, all alike in the ERP): the
    # ERP's other 31 customers are not "missing", they may be on a shop page not read.
    assert (capped.missing_left, capped.missing_right, capped.mismatched, capped.compared) == (0, 0, 0, 14)
    assert not capped.complete
    assert capped.message == (
        "the right side (shop) stopped at 2 pages, so records only in the left system were not counted as "
        "missing; raise spec.reconcile.right.paging.maxPages or list fewer records per check"
    )
    assert [json.loads(m.data)["complete"] for m in stored] == [True, False]
