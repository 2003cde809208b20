"""The sandbox ERP lists the way ERPNext does, and engine.paging reads it whole over real HTTP.

What a friendlier sandbox hid: 20 rows unless asked for more, newest change first so rows move
between pages while someone writes, only `name` unless `fields` asks, case-insensitive filters,
and drafts next to submitted and cancelled documents.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan, PagingPlan
from onceflow_runner.engine.paging import PageRequest, PagingFailed, read_pages
from onceflow_runner.engine.ports import Response
from onceflow_runner.testing.sandbox import ErpSandbox

TOKEN = "token sandbox-key:sandbox-secret"


class Clock:
    """A clock a second apart per reading, so `modified` orders documents the way they were written."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 8, 0, 0)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def erp() -> AsyncIterator[ErpSandbox]:
    sandbox = ErpSandbox()
    sandbox.clock = Clock()
    for i in range(1000):
        sandbox.seed("Customer", {"name": f"C{i:04d}", "customer_name": f"Customer {i}", "pincode": f"{i % 50:05d}"})
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


async def _list(erp: ErpSandbox, doctype: str = "Customer", **query: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=erp.url, headers={"Authorization": TOKEN}) as client:
        return await client.get(f"/api/resource/{doctype}", params=query)


async def test_lists_20_names_newest_first_unless_asked_for_more(erp: ErpSandbox) -> None:
    first = (await _list(erp)).json()["data"]
    assert first == [{"name": f"C{i:04d}"} for i in range(999, 979, -1)]
    everything = (await _list(erp, limit_page_length="0", fields='["name","pincode"]')).json()["data"]
    assert len(everything) == 1000
    assert set(everything[0]) == {"name", "pincode"}
    page = (await _list(erp, limit_start="40", limit_page_length="20", order_by="name asc")).json()["data"]
    assert [row["name"] for row in page] == [f"C{i:04d}" for i in range(40, 60)]


async def test_filters_read_like_frappes_and_bad_ones_are_a_417_data_error(erp: ErpSandbox) -> None:
    by_pin = await _list(erp, filters=json.dumps([["pincode", "=", "00007"]]), limit_page_length="0")
    assert len(by_pin.json()["data"]) == 20
    shouting = await _list(erp, filters=json.dumps({"customer_name": "CUSTOMER 7"}), fields='["customer_name"]')
    assert shouting.json()["data"] == [{"customer_name": "Customer 7"}]
    like = await _list(erp, filters=json.dumps([["customer_name", "like", "%tomer 99_"]]), limit_page_length="0")
    assert len(like.json()["data"]) == 10
    newer = await _list(erp, filters=json.dumps([["modified", ">", "2026-11-30 08:16:30"]]), limit_page_length="0")
    assert len(newer.json()["data"]) == 10  # the last ten seeds, one second apart from 08:00:01
    for bad in ([["pincode", "~", "1"]], [["pincode; drop", "=", "1"]], "pincode"):
        refused = await _list(erp, filters=json.dumps(bad))
        assert refused.status_code == 417
        assert refused.json()["exc_type"] == "DataError"


async def test_drafts_submitted_and_cancelled_documents_share_the_list(erp: ErpSandbox) -> None:
    async with httpx.AsyncClient(base_url=erp.url, headers={"Authorization": TOKEN}) as client:
        draft = (await client.post("/api/resource/Sales Invoice", json={"customer": "C0001", "total": 10})).json()
        name = draft["data"]["name"]
        assert draft["data"]["docstatus"] == 0
        submitted = await client.put(f"/api/resource/Sales Invoice/{name}", json={"docstatus": 1})
        assert submitted.json()["data"]["docstatus"] == 1
        late_edit = await client.put(f"/api/resource/Sales Invoice/{name}", json={"total": 11})
        assert late_edit.status_code == 417
        assert late_edit.json()["exc_type"] == "UpdateAfterSubmitError"
        await client.post("/api/resource/Sales Invoice", json={"customer": "C0002", "total": 5})
        cancelled = await client.put(f"/api/resource/Sales Invoice/{name}", json={"docstatus": 2})
        assert cancelled.json()["data"]["docstatus"] == 2
        customer = await client.put("/api/resource/Customer/C0001", json={"docstatus": 1})
        assert customer.status_code == 417  # a Customer is not a submittable doctype
    rows = (await _list(erp, "Sales Invoice", fields='["name","docstatus"]')).json()["data"]
    assert sorted(row["docstatus"] for row in rows) == [0, 2]


def _caller(erp: ErpSandbox, secrets: Path) -> HttpCaller:
    (secrets / "erp").mkdir()
    (secrets / "erp" / "key").write_text("sandbox-key")
    (secrets / "erp" / "secret").write_text("sandbox-secret")
    plan = ConnectorPlan.model_validate(
        {
            "name": "erp",
            "base_url": erp.url,
            "auth": {
                "type": "ERPNextToken",
                "api_key": {"name": "erp", "key": "key"},
                "api_secret": {"name": "erp", "key": "secret"},
            },
            "requests_per_second": 10000,
            "burst": 1000,
        }
    )
    return HttpCaller({"erp": plan}, secrets)


async def test_read_pages_reads_all_1000_customers_in_pages_of_20_over_http(erp: ErpSandbox, tmp_path: Path) -> None:
    caller = _caller(erp, tmp_path)

    async def fetch(page: PageRequest) -> Response:
        return await caller.request(
            "erp", "GET", page.path, query=page.query, body=None, idempotency_key=None, headers={}, step="search"
        )

    async def rows(response: Response) -> Any:
        return response.body["data"]

    try:
        paging = PagingPlan(page_size=20, max_pages=100)
        query = {"fields": '["name"]', "order_by": "name asc"}
        read = await read_pages(
            paging, base_url=erp.url, path="/api/resource/Customer", query=query, fetch=fetch, items_of=rows
        )
        assert (read.pages, read.complete) == (51, True)  # 50 full pages, then the empty one that ends it
        assert sorted(r["name"] for r in read.items) == [f"C{i:04d}" for i in range(1000)]
        capped = await read_pages(
            PagingPlan(page_size=20, max_pages=10),
            base_url=erp.url,
            path="/api/resource/Customer",
            query=query,
            fetch=fetch,
            items_of=rows,
        )
        assert (len(capped.items), capped.complete) == (200, False)
    finally:
        await caller.aclose()


async def test_a_misnamed_offset_parameter_is_named_not_read_to_the_cap(erp: ErpSandbox, tmp_path: Path) -> None:
    """ERPNext ignores `offset` (it reads limit_start): every page is the first. The search says so
    instead of reading maxPages copies and asking for a larger maxPages."""
    caller = _caller(erp, tmp_path)
    fetched: list[PageRequest] = []

    async def fetch(page: PageRequest) -> Response:
        fetched.append(page)
        return await caller.request(
            "erp", "GET", page.path, query=page.query, body=None, idempotency_key=None, headers={}, step="search"
        )

    async def rows(response: Response) -> Any:
        return response.body["data"]

    try:
        with pytest.raises(
            PagingFailed, match=r"same rows as page 1, so it ignores offset=20; check paging\.offsetParam"
        ):
            await read_pages(
                PagingPlan(page_size=20, offset_param="offset"),
                base_url=erp.url,
                path="/api/resource/Customer",
                query={"fields": '["name"]', "order_by": "name asc"},
                fetch=fetch,
                items_of=rows,
            )
        assert len(fetched) == 2
    finally:
        await caller.aclose()
