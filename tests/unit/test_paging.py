"""engine.paging: every style ends where the list ends, the cap is reported, targets cannot steer it.

The pages here come from a small in-memory list; the same reader against the sandbox ERP over
HTTP is in tests/integration/test_erp_paging.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceflow_runner.contract.plan import PagingPlan
from onceflow_runner.engine.paging import (
    PageRequest,
    PagingFailed,
    link_header_next,
    read_pages,
    relative_to_base,
)
from onceflow_runner.engine.ports import Response

BASE = "https://erp.example.test/b1s/v1"
ROWS = [{"n": i} for i in range(47)]


class Pager:
    """Answers like a target paging ROWS in the given style; records every request."""

    def __init__(self, style: str, size: int = 10) -> None:
        self.style, self.size, self.requests = style, size, []  # type: list[PageRequest]

    async def fetch(self, request: PageRequest) -> Response:
        self.requests.append(request)
        if self.style == "Offset":
            start = int(request.query["limit_start"])
        elif self.style == "Page":
            start = (int(request.query["page"]) - 1) * self.size
        elif self.style == "Cursor":
            start = int(request.query.get("cursor", "0"))
        else:
            _, _, skip = request.path.partition("$skip=")
            start = int(skip or 0)
        rows = ROWS[start : start + self.size]
        following = start + self.size if start + self.size < len(ROWS) else None
        body: dict[str, Any] = {"data": rows}
        headers: dict[str, str] = {}
        if following is not None and self.style == "Cursor":
            body["next"] = str(following)
        if following is not None and self.style == "NextLink":
            body["odata.nextLink"] = f"Items?$skip={following}"
        if following is not None and self.style == "LinkHeader":
            headers["link"] = f'<{BASE}/Items?$skip={following}>; rel="next", <{BASE}/Items?$skip=0>; rel="first"'
        return Response(200, body, headers=headers)


async def _rows(response: Response) -> Any:
    return response.body["data"]


async def _next(response: Response) -> Any:
    return response.body.get("next") or response.body.get("odata.nextLink")


@pytest.mark.parametrize("style", ["Offset", "Page", "Cursor", "NextLink", "LinkHeader"])
async def test_every_style_reads_the_whole_list_once_and_stops_at_its_end(style: str) -> None:
    pager = Pager(style)
    plan = PagingPlan(style=style, page_size=10, size_param="limit_page_length")
    read = await read_pages(
        plan, base_url=BASE, path="/Items", query={"filter": "x"}, fetch=pager.fetch, items_of=_rows, next_of=_next
    )
    assert read.items == ROWS
    assert (read.pages, read.complete) == (5, True)
    assert len(pager.requests) == 5
    if style in ("Offset", "Page", "Cursor"):
        assert all(r.query["filter"] == "x" and r.query["limit_page_length"] == "10" for r in pager.requests)
    assert [r.offset for r in pager.requests] == [0, 10, 20, 30, 40]


async def test_a_full_last_page_costs_one_empty_read_and_the_cap_is_reported_not_hidden() -> None:
    pager = Pager("Offset", size=47)
    read = await read_pages(
        PagingPlan(page_size=47), base_url=BASE, path="/Items", query={}, fetch=pager.fetch, items_of=_rows
    )
    assert (len(read.items), read.pages, read.complete) == (47, 2, True)
    capped = await read_pages(
        PagingPlan(page_size=10, max_pages=3),
        base_url=BASE,
        path="/Items",
        query={},
        fetch=Pager("Offset").fetch,
        items_of=_rows,
    )
    assert (len(capped.items), capped.pages, capped.complete, capped.cut_by) == (30, 3, False, "maxPages")


async def test_answers_past_the_byte_cap_end_the_read_as_incomplete_whatever_maxpages_allows() -> None:
    """maxPages of answers each within max_response_bytes could still fill a runner's memory."""
    pager = Pager("Offset")

    async def heavy(request: PageRequest) -> Response:
        answer = await pager.fetch(request)
        return Response(answer.status, answer.body, size=400)

    read = await read_pages(
        PagingPlan(page_size=10, max_pages=10_000),
        base_url=BASE,
        path="/Items",
        query={},
        fetch=heavy,
        items_of=_rows,
        max_bytes=1_000,
    )
    # The third answer passes 1,000 bytes: its rows are kept, no fourth page is asked for.
    assert (len(read.items), read.pages, read.complete, read.cut_by) == (30, 3, False, "size")
    assert len(pager.requests) == 3


async def test_a_repeated_cursor_stops_with_an_error_instead_of_looping() -> None:
    async def fetch(request: PageRequest) -> Response:
        return Response(200, {"data": [1], "next": "same"})

    with pytest.raises(PagingFailed, match="same next page"):
        await read_pages(
            PagingPlan(style="Cursor", max_pages=100),
            base_url=BASE,
            path="/x",
            query={},
            fetch=fetch,
            items_of=_rows,
            next_of=_next,
        )


@pytest.mark.parametrize("style", ["Cursor", "NextLink"])
async def test_a_cursor_cycling_with_a_longer_period_stops_too(style: str) -> None:
    """A -> B -> C -> A: every token seen is remembered, not only the last one."""
    cycle = ["Items?c=a", "Items?c=b", "Items?c=c"]
    fetched: list[PageRequest] = []

    async def fetch(request: PageRequest) -> Response:
        fetched.append(request)
        return Response(200, {"data": [len(fetched)], "next": cycle[(len(fetched) - 1) % 3]})

    with pytest.raises(PagingFailed, match="same next page"):
        await read_pages(
            PagingPlan(style=style, max_pages=100),
            base_url=BASE,
            path="/x",
            query={},
            fetch=fetch,
            items_of=_rows,
            next_of=_next,
        )
    assert len(fetched) == 4


async def test_rows_that_are_not_a_list_are_named() -> None:
    async def fetch(request: PageRequest) -> Response:
        return Response(200, {"data": {"error": "no"}})

    with pytest.raises(PagingFailed, match="page 1: the rows are a dict"):
        await read_pages(PagingPlan(), base_url=BASE, path="/x", query={}, fetch=fetch, items_of=_rows)


@pytest.mark.parametrize(("style", "field"), [("Offset", "offsetParam"), ("Page", "pageParam")])
async def test_a_target_that_ignores_the_position_is_named_not_read_to_the_cap(style: str, field: str) -> None:
    """A wrong offset or page parameter makes every page the first: say so, instead of reading
    maxPages copies and advising to raise maxPages."""
    fetched: list[PageRequest] = []

    async def fetch(request: PageRequest) -> Response:
        fetched.append(request)
        return Response(200, {"data": ROWS[:10]})

    with pytest.raises(PagingFailed, match=f"same rows as page 1.*paging.{field}"):
        await read_pages(
            PagingPlan(style=style, page_size=10), base_url=BASE, path="/x", query={}, fetch=fetch, items_of=_rows
        )
    assert len(fetched) == 2


async def test_pages_of_repeated_values_are_read_on() -> None:
    """A search for one field (a country) may list the same values page after page: not a loop."""
    pages = [[{"country": "DE"}] * 10, [{"country": "DE"}] * 10, [{"country": "DE"}] * 3]

    async def fetch(request: PageRequest) -> Response:
        return Response(200, {"data": pages[int(request.query["limit_start"]) // 10]})

    listed = await read_pages(PagingPlan(page_size=10), base_url=BASE, path="/x", query={}, fetch=fetch, items_of=_rows)
    assert (len(listed.items), listed.complete) == (23, True)


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/b1s/v1/Items?$skip=10",
        "//evil.example/b1s/v1/Items",
        "http://erp.example.test/b1s/v1/Items",
        "https://erp.example.test:8443/b1s/v1/Items",
        "https://user@erp.example.test/b1s/v1/Items",
        "/admin/Items",
        "../../admin",
        "https://erp.example.test/b1s/v10/Items",
        "https://erp.example.test:port/b1s/v1/Items",
        # A server that decodes before it resolves reads these as ../.. out of the base path.
        "https://erp.example.test/b1s/v1/%2e%2e/%2E%2E/admin",
        "/b1s/v1/..%2f..%2fadmin",
        "/b1s/v1/%252e%252e/%252e%252e/admin",
        "/b1s/v1//evil.example/Items",
        "/b1s/v1/Items\r\nX-Injected: 1",
        "/b1s/v1\\..\\..\\admin",
        "https://:secret@erp.example.test/b1s/v1/Items",
    ],
)
def test_a_next_link_off_the_connectors_base_url_is_refused(link: str) -> None:
    with pytest.raises(PagingFailed, match="leaves the Connector's baseURL"):
        relative_to_base(BASE, "/Items", link)


@pytest.mark.parametrize(
    ("link", "path"),
    [
        ("Items?$skip=20", "/Items?$skip=20"),
        ("/b1s/v1/Items?$skip=20", "/Items?$skip=20"),
        ("https://ERP.example.test:443/b1s/v1/Items?$skip=20&$top=5", "/Items?$skip=20&$top=5"),
        ("?$skip=20", "/Items?$skip=20"),
    ],
)
def test_next_links_relative_or_absolute_become_paths_under_the_base(link: str, path: str) -> None:
    assert relative_to_base(BASE, "/Items", link) == path


def test_link_header_next_finds_rel_next_among_others() -> None:
    header = '<https://a/x?page=1>; rel="first", <https://a/x?page=3>; rel="next last", <https://a/x?page=1>; rel=prev'
    assert link_header_next(header) == "https://a/x?page=3"
    assert link_header_next("<https://a/x?page=2>; rel=next") == "https://a/x?page=2"
    assert link_header_next('<https://a/x?page=2>; rel="prev"') is None
    assert link_header_next(None) is None


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@given(
    st.lists(
        st.tuples(_TEXT.filter(lambda t: ">" not in t and "," not in t), st.sampled_from(["next", "prev", "last"]))
    )
)
def test_link_header_parser_never_fails_and_finds_the_first_next(links: list[tuple[str, str]]) -> None:
    header = ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links)
    expected = next((url.strip() for url, rel in links if rel == "next"), None)
    assert link_header_next(header) == expected


@given(_TEXT)
def test_link_header_parser_takes_any_text(value: str) -> None:
    found = link_header_next(value)
    assert found is None or isinstance(found, str)


@given(_TEXT)
def test_whatever_a_target_names_stays_under_the_base_or_is_refused(link: str) -> None:
    try:
        path = relative_to_base(BASE, "/Items", link)
    except PagingFailed:
        return
    assert path.startswith("/")
    assert not path.startswith("//")


def test_the_api_paging_block_compiles_to_the_runners_contract() -> None:
    from onceflow_operator.api import Paging
    from onceflow_operator.compiler.steps import paging_plan

    assert paging_plan(None) is None
    odata = Paging.model_validate(
        {"style": "NextLink", "pageSize": 20, "sizeParam": "", "next": "response['odata.nextLink']", "maxPages": 9}
    )
    plan = paging_plan(odata)
    assert plan == PagingPlan(
        style="NextLink", page_size=20, size_param=None, next="response['odata.nextLink']", max_pages=9
    )
    assert paging_plan(Paging()) == PagingPlan()
