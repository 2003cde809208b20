"""Reading a list or a search across pages, the way the target pages it.

Why a module of its own: dedupe, lookup, drift checks and polling sources all read lists, and
every real system pages them (ERPNext answers 20 rows unless asked for more; SAP Business One
and Business Central add an OData next link; NetSuite an offset). A reader that stops at the
first page misses most duplicates and most changes, and a reader that trusts the target blindly
loops on a repeated cursor or follows a next link to another host with the Connector's
credentials. `read_pages` follows the plan's `PagingPlan` until the list ends or `max_pages` is
reached, and says which of the two happened: a list cut by the cap is reported incomplete so the
caller can hold the record for a person instead of treating a partial search as "no match".

The engine does no I/O: the caller passes `fetch` (one request), `items_of` (the rows of one
answer) and `next_of` (the cursor or link an answer names, from the plan's `next` CEL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from onceflow_runner.contract.plan import PagingPlan
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import PermanentFailure

__all__ = [
    "MAX_LIST_BYTES",
    "PageRequest",
    "PagedList",
    "PagingFailed",
    "link_header_next",
    "read_pages",
    "relative_to_base",
]

#: Bytes of answers one paged read keeps at most. Each answer is already capped (the plan's
#: max_response_bytes), but maxPages of them are not: 10,000 pages of 10 MiB would be held in one
#: runner's memory for one record. A list longer than this is reported incomplete, like one cut
#: at maxPages, so a search is never taken as "no match" for it.
MAX_LIST_BYTES = 64 * 1024 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}
# One link-value of an RFC 8288 Link header: <target> followed by ;-separated parameters.
_LINK_VALUE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL = re.compile(r"""(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)


class PagingFailed(PermanentFailure):
    """The target's pages cannot be followed safely: a repeated cursor, a foreign next link, no list."""

    reason = "PagingFailed"


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: the path (with a query after `?` for links) and the query parameters.

    `number` counts from 0 and `offset` is the rows before this page, so a request built by CEL
    (a JSON-RPC body with `offset`, for one) can read the position too.
    """

    path: str
    query: dict[str, str] = field(default_factory=dict)
    number: int = 0
    offset: int = 0
    cursor: str | None = None


@dataclass(frozen=True)
class PagedList:
    """Every row read, how many pages it took, and whether the list was read to its end."""

    items: list[Any]
    pages: int
    complete: bool
    #: Which cap ended an incomplete list: "maxPages", or "size" (MAX_LIST_BYTES); "" when complete.
    cut_by: str = ""


Fetch = Callable[[PageRequest], Awaitable[Response]]
ItemsOf = Callable[[Response], Awaitable[Any]]
NextOf = Callable[[Response], Awaitable[Any]]


def _positioned(paging: PagingPlan, path: str, query: Mapping[str, str], number: int, offset: int) -> PageRequest:
    """The request for page `number` in the Offset and Page styles (and the first page of the others)."""
    params = dict(query)
    if paging.size_param:
        params[paging.size_param] = str(paging.page_size)
    if paging.style == "Offset":
        params[paging.offset_param] = str(offset)
    elif paging.style == "Page":
        params[paging.page_param] = str(paging.first_page + number)
    return PageRequest(path, params, number, offset)


def link_header_next(value: str | None) -> str | None:
    """The target of the `rel="next"` link in an RFC 8288 Link header, or None."""
    for match in _LINK_VALUE.finditer(value or ""):
        for rel in _REL.finditer(match.group(2)):
            if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                return match.group(1).strip()
    return None


def relative_to_base(base_url: str, current: str, link: str) -> str:
    """A next link as a path (and query) under the Connector's base URL, which the caller then calls.

    Why: the link comes from the target's answer and the request it leads to carries the
    Connector's credentials, so it must stay on the base URL's origin and under its path.
    """
    try:
        base, target = urlsplit(base_url), urlsplit(urljoin(base_url.rstrip("/") + current, link))
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        raise PagingFailed(f"the next-page link {link[:200]!r} is not a URL; it was not followed") from None

    def origin(parts: Any) -> tuple[str, str, int | None]:
        scheme = str(parts.scheme).lower()
        return scheme, str(parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)

    prefix = base.path.rstrip("/")
    try:
        foreign = (
            origin(target) != origin(base)
            or target.username is not None
            or target.password is not None
            or not target.path.startswith(prefix + "/")
            or _steers(link, target.path[len(prefix) :])
        )
    except ValueError:  # a port that is not a number
        foreign = True
    if foreign:
        raise PagingFailed(
            f"the next-page link {link[:200]!r} leaves the Connector's baseURL {base_url}; it was not followed"
        )
    return target.path[len(prefix) :] + (f"?{target.query}" if target.query else "")


def _steers(link: str, path: str) -> bool:
    """A link whose path a server could still read as another path or host once it decodes it.

    urljoin removes literal `..` segments, but not `%2e%2e` (nor `%252e%252e`, decoded twice by
    some proxies), and keeps `//` (read as a host by some servers) and control characters.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in link) or "\\" in link or "//" in path:
        return True
    for segment in path.split("/"):
        for _ in range(4):
            decoded = unquote(segment)
            if decoded == segment:
                break
            segment = decoded
        if any(part in (".", "..") for part in re.split(r"[/\\]", segment)):
            return True
    return False


async def read_pages(
    paging: PagingPlan,
    *,
    base_url: str,
    path: str,
    query: Mapping[str, str],
    fetch: Fetch,
    items_of: ItemsOf,
    next_of: NextOf | None = None,
    max_bytes: int = MAX_LIST_BYTES,
) -> PagedList:
    """Fetch page after page until the list ends, `paging.max_pages` pages were read or `max_bytes` received."""
    request = _positioned(paging, path, query, 0, 0)
    received = 0
    items: list[Any] = []
    seen: set[str] = set()
    previous: list[Any] = []
    for number in range(paging.max_pages):
        response = await fetch(request)
        page = await items_of(response)
        if not isinstance(page, list):
            raise PagingFailed(f"page {number + 1}: the rows are a {type(page).__name__}, not a list")
        if number and page == previous and paging.style in ("Offset", "Page") and _distinct(page):
            # The same distinct rows again: the target ignores the position parameter (a wrong
            # name); reading on would only fill maxPages with copies and blame the cap. (Rows that
            # repeat within a page, a search for one field only, may repeat across pages too.)
            field, name = ("offsetParam", paging.offset_param)
            if paging.style == "Page":
                field, name = ("pageParam", paging.page_param)
            raise PagingFailed(
                f"page {number + 1}: the target answered the same rows as page {number}, so it ignores "
                f"{name}={request.query.get(name)}; check paging.{field}"
            )
        previous = page
        items.extend(page)
        following = await _following(paging, request, response, page, base_url, next_of, seen)
        if following is None:
            return PagedList(items, number + 1, complete=True)
        received += response.size
        if received >= max_bytes:
            return PagedList(items, number + 1, complete=False, cut_by="size")
        request = following
    return PagedList(items, paging.max_pages, complete=False, cut_by="maxPages")


async def _following(
    paging: PagingPlan,
    request: PageRequest,
    response: Response,
    page: list[Any],
    base_url: str,
    next_of: NextOf | None,
    seen: set[str],
) -> PageRequest | None:
    """The request for the page after `request`, or None when the list has ended."""
    number = request.number + 1
    if paging.style in ("Offset", "Page"):
        if len(page) < paging.page_size:
            return None
        return _positioned(
            paging, request.path, _unpositioned(paging, request.query), number, request.offset + len(page)
        )
    if paging.style == "LinkHeader":
        token = link_header_next(response.headers.get("link"))
    else:
        token = await next_of(response) if next_of is not None else None
    if token is None or token == "":
        return None
    token = str(token)
    if token in seen:
        raise PagingFailed(
            f"page {number}: the target named the same next page ({token[:100]!r}) twice; stopped instead of looping"
        )
    seen.add(token)
    offset = request.offset + len(page)
    if paging.style == "Cursor":
        return PageRequest(request.path, {**request.query, paging.cursor_param: token}, number, offset, token)
    return PageRequest(relative_to_base(base_url, request.path, token), {}, number, offset)


def _distinct(page: list[Any]) -> bool:
    """Whether a page holds at least two rows and no row twice."""
    return len(page) > 1 and len({json.dumps(row, sort_keys=True, default=str) for row in page}) == len(page)


def _unpositioned(paging: PagingPlan, query: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in query.items() if k not in (paging.offset_param, paging.page_param)}
