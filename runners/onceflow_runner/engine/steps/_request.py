"""What lookup, dedupe and call share: one request to a Connector, built from CEL, bound to `steps.<name>`.

Why: the three kinds read the same `request` block of the plan and send it the same way (the
step's headers, origin and trace headers), and read the answer the same way: the step's answer
rules (`read_answer`) say when a 2xx is a failure (JSON-RPC's `error` member), permanent or
transient, with the system's own message, when a 400 means "already exists" or a 200 "not
found", and where the result is (`response.result`). They differ in what they send and in what
they make of the result, which stays in each kind's module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from onceflow_runner.contract import headers as h
from onceflow_runner.contract.plan import PagingPlan, RequestPlan, StepPlan
from onceflow_runner.engine.expressions import HEAVY_BYTES
from onceflow_runner.engine.outcome import StepResult
from onceflow_runner.engine.paging import MAX_LIST_BYTES, PagedList, PageRequest, PagingFailed, read_pages
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps._kind import RecordRun
from onceflow_runner.errors import InvalidRecord, PermanentFailure, RejectedByTarget, TransientFailure

__all__ = [
    "FirstPageNotFound",
    "PagedSearch",
    "bind_response",
    "capped_reason",
    "page_context",
    "query_value",
    "read_answer",
    "read_every_page",
    "request_expressions",
    "request_path",
    "request_query",
    "request_target",
    "send_request",
]


def request_expressions(step: StepPlan) -> list[str]:
    """The CEL every request reads: its path and query values, and with paging its rows and next page."""
    req = step.request
    if req is None:
        return []
    paged = [req.candidates, *([req.paging.next] if req.paging.next else [])] if req.paging else []
    rules = [e for rule in req.answers for e in (rule.when, rule.message) if e]
    return [
        req.path,
        *req.query.values(),
        *paged,
        *req.headers.values(),
        *rules,
        *([req.result] if req.result else []),
    ]


def query_value(value: Any) -> str:
    """A query parameter as sent: a list or map as compact JSON, anything else as its text.

    Why: search APIs take structured filters as JSON in the query (ERPNext's
    `filters=[["tax_id","=","DE1"]]`, `fields=["name"]`); building the list in CEL and letting the
    runner encode it keeps record values inside JSON strings, where quoting them by hand would let
    a name holding a quote change the filter.
    """
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def page_context(paging: PagingPlan, page: PageRequest) -> dict[str, Any]:
    """What CEL sees as `page` while a paged request is built: {number, offset, size, cursor}."""
    return {"number": page.number, "offset": page.offset, "size": paging.page_size, "cursor": page.cursor}


async def request_target(
    step: StepPlan, req: RequestPlan, run: RecordRun, *, page: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, str]]:
    """Evaluate the request's path and query parameters for this record (and this `page`, when paged)."""
    return await request_path(step, req, run, page=page), await request_query(step, req, run, page=page)


def _with_page(run: RecordRun, page: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if page is None else {**run.context, "page": page}


async def request_path(step: StepPlan, req: RequestPlan, run: RecordRun, *, page: Mapping[str, Any] | None) -> str:
    """Evaluate the request's path; a '?' or '#' in it fails the record."""
    context = _with_page(run, page)
    path = str(await run.evaluate(req.path, step=step.name, what="path", context=context))
    if "?" in path or "#" in path:
        # Query parameters belong in the step's query block (encoded there); a '?' or '#' here
        # came from record data and would change which endpoint the credentials are sent to.
        raise InvalidRecord(
            f"path {path[:200]!r} holds '?' or '#'; put query parameters in the step's query block and "
            "wrap record values in pathSegment()",
            step=step.name,
        )
    return path


async def request_query(
    step: StepPlan, req: RequestPlan, run: RecordRun, *, page: Mapping[str, Any] | None
) -> dict[str, str]:
    """Evaluate the request's query values (see `query_value` for how each is sent)."""
    context = _with_page(run, page)
    return {
        k: query_value(await run.evaluate(v, step=step.name, what=f"query {k}", context=context))
        for k, v in req.query.items()
    }


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
    if not text.isprintable() and any((c < " " and c != "\t") or c == "\x7f" for c in text):
        # What HTTP refuses in a field value (RFC 9110 5.5); aiohttp raised a bare ValueError for it.
        raise InvalidRecord(
            f"header {name}: the value holds a control character, which a header cannot carry", step=step
        )
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


class PagedSearch:
    """Every row of a paged lookup or search, and what reading it took."""

    def __init__(self, read: PagedList, responses: list[Response]) -> None:
        self.rows = read.items
        self.pages = read.pages
        self.complete = read.complete
        self.cut_by = read.cut_by
        self.status = responses[-1].status if responses else 0
        self.latency_ms = sum(r.latency_ms for r in responses)

    @property
    def stopped(self) -> str:
        """Where an incomplete read stopped, in the words of the cap that stopped it."""
        if self.cut_by == "size":
            return f"stopped after {self.pages} pages at {MAX_LIST_BYTES // (1024 * 1024)} MiB of answers"
        return f"stopped at maxPages ({self.pages} pages)"

    def binding(self) -> dict[str, Any]:
        """What `steps.<name>` holds after a paged lookup."""
        return {"data": self.rows, "pages": self.pages, "complete": self.complete}

    def result(self, step: StepPlan) -> StepResult:
        detail = f"{len(self.rows)} row(s) in {self.pages} page(s)" + ("" if self.complete else f", {self.stopped}")
        return StepResult(step.name, step.kind, "ok", detail, status=self.status, latency_ms=self.latency_ms)


class FirstPageNotFound(Exception):
    """The first page answered 404 (a lookup with notFound: Continue binds null)."""


async def read_every_page(step: StepPlan, req: RequestPlan, run: RecordRun) -> PagedSearch:
    """Read the request's list page by page (its `paging`), each page's rows chosen by `req.candidates`.

    Query values and the body are evaluated for every page with `page` bound, so a JSON-RPC body or
    a hand-made position parameter can follow the position; the paging plan's own parameters (size,
    offset, page, cursor) are set over them. Pages of the link styles after the first are the link
    as the target wrote it. Every page's CEL runs isolated once the pages read so far pass
    `HEAVY_BYTES`, as one large answer would make it (see `expressions.HEAVY_BYTES`).
    """
    paging = req.paging
    assert paging is not None
    base_url = run.plan.connectors[req.connector].base_url if req.connector in run.plan.connectors else ""
    first = PageRequest("", number=0, offset=0)
    path = await request_path(step, req, run, page=page_context(paging, first))
    responses: list[Response] = []
    received = 0

    async def fetch(request: PageRequest) -> Response:
        nonlocal received
        page = page_context(paging, request)
        if paging.style in ("NextLink", "LinkHeader") and request.number > 0:
            target, query = request.path, {}
        else:
            values = await request_query(step, req, run, page=page)
            target, query = request.path, {**values, **request.query}
        body = None
        if req.body is not None:
            context = {**run.context, "page": page}
            body = await run.evaluate(req.body, step=step.name, what="body", context=context)
        response = await send_request(step, req, run, target, query, body=body)
        if response.status == 404 and request.number == 0:
            raise FirstPageNotFound
        if response.status >= 400:
            raise PermanentFailure(
                f"{req.connector} answered {response.status} for {req.method} {target} (page {request.number + 1})",
                step=step.name,
            )
        responses.append(response)
        received += response.size
        run.heavy = run.heavy or received > HEAVY_BYTES
        return response

    async def rows_of(response: Response) -> Any:
        context = {**run.context, "response": response.body}
        return await run.evaluate(req.candidates, step=step.name, what="rows of a page", context=context)

    async def next_of(response: Response) -> Any:
        assert paging.next is not None
        headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        context = {**run.context, "response": response.body, "headers": headers}
        return await run.evaluate(paging.next, step=step.name, what="paging.next", context=context)

    try:
        read = await read_pages(
            paging,
            base_url=base_url,
            path=path,
            query={},
            fetch=fetch,
            items_of=rows_of,
            next_of=next_of if paging.next else None,
        )
    except PagingFailed as exc:
        raise PagingFailed(str(exc), step=step.name) from None
    return PagedSearch(read, responses)


def capped_reason(what: str, search: PagedSearch) -> str:
    """Why a record waits for a person when a paged read stopped at its cap."""
    if search.cut_by == "size":
        return f"{what} {search.stopped}; narrow the search with filters or query fewer fields"
    return f"{what} stopped at {search.pages} pages; narrow the search with filters or raise paging.maxPages"
