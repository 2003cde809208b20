"""Paged dedupe and lookup in the engine: every page searched, a capped search held for a person.

The fake Caller answers as ERPNext lists (the sandbox ERP's own `list_documents`), so pages,
filters and the end of a list behave as they do over HTTP; tests/integration/test_paged_search.py
plays the same over a real runner, NATS and the sandbox's HTTP server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from onceflow_runner.contract.plan import ConnectorPlan, PagingPlan, Plan, RequestPlan, StepPlan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.expressions import HEAVY_BYTES, evaluate
from onceflow_runner.engine.paging import PagedList, PagingFailed
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps._request import PagedSearch, capped_reason, query_value
from onceflow_runner.testing.sandbox.erp import list_documents
from tests.unit.test_entities_and_engine import CALL, MAP, META, RecordingEvents, plan

ROWS = 1000
PAGE = 20
#: The duplicate's place: the first row of page 37 (rows 720..739 in name order).
DUPLICATE_AT = 36 * PAGE


def customers(duplicate_tax_id: str = "DE1") -> list[dict[str, Any]]:
    rows = [
        {"name": f"C{i:04d}", "customer_name": f"Customer {i}", "tax_id": f"DE9{i:05d}", "postal_code": "10115"}
        for i in range(ROWS)
    ]
    rows[DUPLICATE_AT]["tax_id"] = duplicate_tax_id
    return rows


class ErpLike:
    """Answers GET /api/resource/Customer as ERPNext does; records every request it was sent."""

    def __init__(self, docs: list[dict[str, Any]], *, padding: int = 0) -> None:
        self.docs = docs
        self.padding = padding
        self.calls: list[dict[str, Any]] = []

    async def request(self, connector: str, method: str, path: str, **kw: Any) -> Response:
        self.calls.append({"connector": connector, "method": method, "path": path, **kw})
        if path != "/api/resource/Customer":
            return Response(200, {"data": {"name": "CUST-NEW"}})
        query: Mapping[str, str] = kw["query"]
        rows = list_documents(
            self.docs,
            filters=json.loads(query.get("filters", "[]")),
            fields=json.loads(query.get("fields", '["*"]')),
            order_by=query.get("order_by", "name asc"),
            start=int(query.get("limit_start", "0")),
            length=int(query.get("limit_page_length", "20")),
        )
        body = {"data": rows, "pad": "x" * self.padding}
        return Response(200, body, size=len(json.dumps(body)))


def search(max_pages: int = 60, **more: Any) -> StepPlan:
    request = RequestPlan(
        connector="erp",
        method="GET",
        path='"/api/resource/Customer"',
        query={"filters": '[["postal_code", "=", record.postal_code]]', **more.pop("query", {})},
        paging=PagingPlan(page_size=PAGE, max_pages=max_pages),
        **more,
    )
    return StepPlan(name="existing", kind="dedupe", request=request)


def with_connector(p: Plan) -> Plan:
    erp = ConnectorPlan(name="erp", base_url="http://erp.test")
    return p.model_copy(update={"connectors": {"erp": erp}})


RECORD = {"company": "Someone Else Entirely", "tax": "DE1", "zip": "10115"}


async def test_dedupe_reads_every_page_and_finds_the_duplicate_on_page_37() -> None:
    erp = ErpLike(customers())
    outcome = await Engine(with_connector(plan(MAP, search(), CALL)), erp, RecordingEvents()).run(RECORD, META)
    assert outcome.kind == "parked"
    assert outcome.step == "existing"
    (match,) = outcome.candidates
    assert match["rule"] == "same-tax-id"
    assert match["candidate"]["name"] == f"C{DUPLICATE_AT:04d}"
    searches = [c for c in erp.calls if c["method"] == "GET"]
    assert len(searches) == ROWS // PAGE + 1  # 50 full pages, then the empty one that ends the list
    assert [c["query"]["limit_start"] for c in searches[:3]] == ["0", "20", "40"]
    assert {c["query"]["filters"] for c in searches} == {'[["postal_code","=","10115"]]'}
    assert all(c["method"] == "GET" for c in erp.calls)  # nothing was created


async def test_a_search_capped_by_max_pages_parks_the_record_with_the_reason_never_as_unique() -> None:
    erp = ErpLike(customers(duplicate_tax_id="DE-somebody-else"))
    flow = with_connector(plan(MAP, search(max_pages=5), CALL))
    outcome = await Engine(flow, erp, RecordingEvents()).run(RECORD, META)
    assert outcome.kind == "parked"
    assert outcome.step == "existing"
    assert outcome.reason == (
        "search for duplicates stopped at 5 pages; narrow the search with filters or raise paging.maxPages"
    )
    assert len(erp.calls) == 5
    assert outcome.candidates == []


async def test_a_person_who_approves_a_capped_search_lets_the_record_go_on() -> None:
    erp = ErpLike(customers(duplicate_tax_id="DE-somebody-else"))
    flow = with_connector(plan(MAP, search(max_pages=5), CALL))
    approved = {**META, "decision": "approved", "approvedSteps": ["existing"]}
    outcome = await Engine(flow, erp, RecordingEvents()).run(RECORD, approved)
    assert outcome.kind == "completed"
    assert [c["method"] for c in erp.calls][-1] == "POST"


async def test_a_search_that_ends_within_the_cap_and_matches_nothing_goes_on() -> None:
    erp = ErpLike(customers(duplicate_tax_id="DE-somebody-else"))
    outcome = await Engine(with_connector(plan(MAP, search(), CALL)), erp, RecordingEvents()).run(RECORD, META)
    assert outcome.kind == "completed"
    assert erp.calls[-1]["method"] == "POST"


def lookup(max_pages: int = 60, *, rows: str = "response.data", **request: Any) -> StepPlan:
    req = RequestPlan(
        connector="erp",
        method=request.pop("method", "GET"),
        path='"/api/resource/Customer"',
        query=request.pop("query", {"fields": '["name", "tax_id"]'}),
        candidates=rows,
        paging=PagingPlan(page_size=PAGE, max_pages=max_pages, **request.pop("paging", {})),
        **request,
    )
    return StepPlan(name="all", kind="lookup", request=req)


COUNT = StepPlan.model_validate(
    {"name": "count", "kind": "map", "map": {"fields": {"n": "size(steps.all.data)", "pages": "steps.all.pages"}}}
)


async def test_paged_lookup_binds_every_row_with_pages_and_complete() -> None:
    erp = ErpLike(customers()[:45])
    outcome = await Engine(with_connector(plan(lookup(), COUNT)), erp, RecordingEvents()).run(RECORD, META)
    assert outcome.kind == "completed"
    assert outcome.record == {"n": 45, "pages": 3}
    detail = next(s.detail for s in outcome.steps if s.step == "all")
    assert detail == "45 row(s) in 3 page(s)"


async def test_a_paged_lookup_capped_by_max_pages_parks_the_record() -> None:
    erp = ErpLike(customers())
    outcome = await Engine(with_connector(plan(lookup(max_pages=2), COUNT)), erp, RecordingEvents()).run(RECORD, META)
    assert outcome.kind == "parked"
    assert outcome.step == "all"
    assert outcome.reason == "lookup stopped at 2 pages; narrow the search with filters or raise paging.maxPages"


async def test_query_values_and_the_body_see_the_page_and_cursor_pages_follow_next() -> None:
    pages = {None: ({"items": [1, 2], "next": "b"}), "b": {"items": [3], "next": "c"}, "c": {"items": [], "next": ""}}
    calls: list[dict[str, Any]] = []

    class Rpc:
        async def request(self, connector: str, method: str, path: str, **kw: Any) -> Response:
            calls.append(kw)
            return Response(200, {"result": pages[kw["body"]["params"]["cursor"]]})

    step = lookup(
        method="POST",
        query={"n": "page.number"},
        rows="response.result.items",
        body='{"method": "search", "params": {"cursor": page.cursor, "offset": page.offset, "size": page.size}}',
        paging={"style": "Cursor", "next": "response.result.next", "size_param": None},
    )
    outcome = await Engine(with_connector(plan(step, COUNT)), Rpc(), RecordingEvents()).run(RECORD, META)
    assert outcome.record == {"n": 3, "pages": 3}
    assert [c["body"]["params"] for c in calls] == [
        {"cursor": None, "offset": 0, "size": PAGE},
        {"cursor": "b", "offset": 2, "size": PAGE},
        {"cursor": "c", "offset": 3, "size": PAGE},
    ]
    assert [c["query"] for c in calls] == [{"n": "0"}, {"n": "1", "cursor": "b"}, {"n": "2", "cursor": "c"}]


async def test_a_next_link_off_the_connectors_base_url_fails_the_record_at_its_step() -> None:
    class Linking:
        async def request(self, connector: str, method: str, path: str, **kw: Any) -> Response:
            return Response(200, {"value": [1], "@odata.nextLink": "https://elsewhere.test/api/x?page=2"})

    step = lookup(rows="response.value", paging={"style": "NextLink", "next": "response['@odata.nextLink']"})
    with pytest.raises(PagingFailed, match="leaves the Connector's baseURL") as failed:
        await Engine(with_connector(plan(step)), Linking(), RecordingEvents()).run(RECORD, META)
    assert failed.value.step == "all"


class Isolated:
    """Records what went to isolation and answers inline (the unit layer's stand-in for the workers)."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    async def evaluate(self, source: str, variables: Mapping[str, Any], *, step: str, what: str) -> Any:
        self.sources.append(source)
        return evaluate(source, variables, step=step, what=what)


async def test_pages_adding_up_past_heavy_bytes_send_the_rest_of_the_records_cel_to_isolation() -> None:
    padding = HEAVY_BYTES // 3
    erp = ErpLike(customers()[:60], padding=padding)
    isolated = Isolated()
    outcome = await Engine(with_connector(plan(lookup(), COUNT)), erp, RecordingEvents(), isolated).run(RECORD, META)
    assert outcome.record == {"n": 60, "pages": 4}
    # Pages 1 and 2 are small; from page 3 on the pages read pass HEAVY_BYTES.
    assert isolated.sources.count("response.data") == 2
    assert "size(steps.all.data)" in isolated.sources


def test_lists_and_maps_in_query_values_are_sent_as_compact_json() -> None:
    assert query_value([["tax_id", "=", 'DE"1']]) == '[["tax_id","=","DE\\"1"]]'
    assert query_value({"customer_name": "Müller"}) == '{"customer_name":"Müller"}'
    assert query_value("name asc") == "name asc"
    assert query_value(20) == "20"


def test_the_compiler_carries_paging_and_rows_into_the_plan() -> None:
    from onceflow_operator.api import Step
    from onceflow_operator.compiler.steps import compile_step, step_expressions

    step = Step.model_validate(
        {
            "name": "all",
            "lookup": {
                "connector": "erp",
                "path": "/api/resource/Item",
                "rows": "response.value",
                "paging": {"style": "NextLink", "next": "response['@odata.nextLink']", "maxPages": 7},
            },
        }
    )
    compiled = compile_step(step, "spec.steps[0]", has_sync_policy=False)
    assert compiled.problems == ()
    request = compiled.plan.request
    assert request is not None
    assert request.paging is not None
    assert (request.candidates, request.paging.style, request.paging.max_pages) == ("response.value", "NextLink", 7)
    assert dict(step_expressions(step, "spec.steps[0]"))["spec.steps[0].lookup.paging.next"] == (
        "response['@odata.nextLink']"
    )


def test_a_person_is_told_which_cap_stopped_a_search() -> None:
    by_pages = PagedSearch(PagedList([{}], 3, complete=False, cut_by="maxPages"), [])
    by_size = PagedSearch(PagedList([{}], 3, complete=False, cut_by="size"), [])
    assert "raise paging.maxPages" in capped_reason("search for duplicates", by_pages)
    reason = capped_reason("search for duplicates", by_size)
    assert "64 MiB" in reason
    assert "maxPages" not in reason
    assert "narrow the search" in reason
