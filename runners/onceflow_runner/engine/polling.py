"""One poll of a schedule trigger's source: what changed since the watermark, page by page (no I/O).

Why a module of its own: many systems cannot send webhooks (ERPNext without its webhook app,
most on-premise ERPs), so a workflow starts from asking them what changed. Asking safely is
the hard part, and it is all here, testable without a server:

- The request is built by CEL with `watermark` bound: the stored watermark minus `lookBack`
  (clock skew between the target's clock and the rows it stamps, transactions committed late),
  formatted the way the target writes its timestamps. Rows seen again because of the look-back
  have the same business key, so they have one effect (`Nats-Msg-Id`, then the key store).
- The new watermark is the largest change time over the rows read (the `watermark` CEL over a
  row), never "now": the target's clock, not ours, decides what changed when.
- A list the target pages by offset shifts while people work: with `order_by modified asc`, a
  row already read that changes moves to the end, and the row after the current offset slides
  back into the pages already read, never to be seen. So the Offset style is not followed by
  offset: each page asks again from the last row's change time (`modified >= <last row's>`),
  with the offset counting only the rows that share that time. Nothing already read can then
  push an unread row out of sight. The rows must come in ascending change time; a target that
  answers otherwise fails the poll with a message saying to ask for ascending order.
- The other styles (Page, Cursor, NextLink, LinkHeader) are followed as the target pages them
  (`engine.paging`): cursors and next links are the target's own snapshot or keyset.

The caller passes `fetch` (one GET) and `publish` (store rows durably, return after the PubAcks);
the caller stores the returned watermark only after `poll_changes` returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from onceflow_runner.contract.plan import PagingPlan, PollPlan
from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.engine.paging import PageRequest, read_pages
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import PermanentFailure

__all__ = [
    "RFC3339",
    "PollFailed",
    "PollResult",
    "format_time",
    "initial_watermark",
    "parse_time",
    "poll_changes",
    "request_bound",
    "watermark_ceiling",
]

#: The `watermarkFormat` of targets that write ISO 8601 / RFC 3339 timestamps.
RFC3339 = "RFC3339"
#: The step name poll errors carry (there is no step yet: the record does not exist).
POLL_STEP = "poll"

Fetch = Callable[[str, Mapping[str, str]], Awaitable[Response]]
#: Store rows durably (PubAck each) before returning; rows are the target's, in the order read.
Publish = Callable[[list[Any]], Awaitable[None]]


class PollFailed(PermanentFailure):
    """The source cannot be polled as configured: rows out of order, no list, an unreadable watermark."""

    reason = "PollFailed"


@dataclass(frozen=True)
class PollResult:
    """What one poll read: rows published, pages asked, the new watermark (None: no row), all read or capped.

    `error` is why a poll stopped early: the rows published before it still count, and in the
    keyset mode `watermark` is how far they reached (safe to store: the next poll starts at most
    there, minus the look-back, so the rows not read yet are still ahead of it).
    """

    rows: int
    pages: int
    watermark: str | None
    complete: bool
    error: Exception | None = None
    #: Rows stamped after the poll's start plus `lookBack`: the watermark was held at that ceiling.
    ahead: int = 0


def parse_time(value: Any, fmt: str, zone: ZoneInfo) -> datetime:
    """A change time as an aware datetime: a CEL timestamp, or a string in `fmt` (RFC3339: ISO 8601).

    A time without an offset is read in `zone` (the target's server time zone; ERPNext writes
    local time without one).
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value) if fmt == RFC3339 else datetime.strptime(value, fmt)
        except ValueError:
            try:  # a target that drops the fraction when it is zero, or adds one
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise PollFailed(
                    f"the watermark {value[:64]!r} does not match watermarkFormat {fmt!r}", step=POLL_STEP
                ) from None
    else:
        raise PollFailed(
            f"the watermark expression gave {type(value).__name__} {str(value)[:64]!r}, not a timestamp or a "
            "time string",
            step=POLL_STEP,
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def format_time(moment: datetime, fmt: str, zone: ZoneInfo) -> str:
    """A time as the target writes it: in its zone; RFC3339 keeps the offset, a pattern writes local time."""
    local = moment.astimezone(zone)
    if fmt == RFC3339:
        return local.isoformat().replace("+00:00", "Z")
    return local.strftime(fmt)


def initial_watermark(plan: PollPlan, now: datetime) -> str:
    """Where a source is read from before any watermark was stored: `start`, or the first poll's time.

    The first poll stores it when it finds no row, so "from now" means from the first poll, not
    from whenever a runner restarts next (changes in between would be missed).
    """
    zone = ZoneInfo(plan.watermark_time_zone)
    return format_time(datetime.fromisoformat(plan.start) if plan.start else now, plan.watermark_format, zone)


def watermark_ceiling(plan: PollPlan, now: datetime) -> datetime:
    """The latest watermark a poll starting at `now` may store: `now` plus `lookBack`.

    Why: the watermark is the target's clock, but one row stamped in the far future (a mistyped
    date in an import, a clock fault on the target) would otherwise become the watermark, and every
    later change, stamped at the real time, would fall before it and never be read again. Holding
    the watermark at the ceiling can only make the next poll read rows again (duplicates, one
    effect), never skip one; a target clock ahead by more than `lookBack` (or a wrong
    `watermark.timeZone`) costs re-reads, which the poller logs. A `startFrom` later than that
    (a go-live date) is the user's own choice and raises the ceiling to it.
    """
    ceiling = now + timedelta(seconds=plan.look_back)
    return max(ceiling, datetime.fromisoformat(plan.start)) if plan.start else ceiling


def request_bound(plan: PollPlan, stored: str | None, now: datetime) -> str:
    """The `watermark` the first request of a poll is built with: the stored (or initial) one minus `lookBack`.

    A stored watermark past the ceiling (`watermark_ceiling`) counts as the ceiling, so a source
    whose watermark was once pushed into the future reads the present again.
    """
    zone = ZoneInfo(plan.watermark_time_zone)
    since = parse_time(stored if stored is not None else initial_watermark(plan, now), plan.watermark_format, zone)
    since = min(since, watermark_ceiling(plan, now))
    return format_time(since - timedelta(seconds=plan.look_back), plan.watermark_format, zone)


async def poll_changes(
    plan: PollPlan,
    *,
    bound: str,
    now: datetime,
    base_url: str,
    fetch: Fetch,
    publish: Publish,
) -> PollResult:
    """Read what changed since `bound`, publish it page by page, and say how far it reached."""
    zone = ZoneInfo(plan.watermark_time_zone)
    reader = _KeysetReader(plan, zone, now, fetch, publish)
    paging = plan.paging
    if paging is None or paging.style == "Offset":
        try:
            return await reader.keyset(bound, paging)
        except Exception as exc:  # the pages published so far keep their progress (see PollResult)
            if reader.rows == 0:
                raise
            watermark = reader.best[1] if reader.best else None
            return PollResult(reader.rows, reader.pages, watermark, False, exc, ahead=reader.ahead)
    return await reader.paged(bound, paging, base_url)


def answer_shape(body: Any) -> str:
    """What an answer is, without its content: text (an HTML page?), or a JSON value and its keys."""
    if isinstance(body, str | bytes):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        html = " (an HTML page)" if text.lstrip()[:1] == "<" else ""
        return f"text of {len(text)} characters{html}, not JSON" if text else "empty"
    if isinstance(body, dict):
        keys = sorted(str(key)[:40] for key in body)
        listed = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        return f"a JSON object with keys {listed}" if keys else "an empty JSON object"
    return "null" if body is None else f"a JSON {type(body).__name__}"


class _KeysetReader:
    def __init__(self, plan: PollPlan, zone: ZoneInfo, now: datetime, fetch: Fetch, publish: Publish) -> None:
        self.plan, self.zone, self.fetch, self.publish = plan, zone, fetch, publish
        self.now = format_time(now.astimezone(UTC), plan.watermark_format, zone)
        ceiling = watermark_ceiling(plan, now)
        self.ceiling = (ceiling, format_time(ceiling, plan.watermark_format, zone))
        self.ahead = 0
        self.unreadable, self.unreadable_reason = 0, ""
        self.best: tuple[datetime, str] | None = None
        self.rows = 0
        self.pages = 0

    def _query(self, bound: str) -> dict[str, str]:
        context = {"watermark": bound, "now": self.now}
        out = {}
        for name, source in self.plan.query.items():
            value = evaluate(source, context, step=POLL_STEP, what=f"poll.query.{name}")
            out[name] = value if isinstance(value, str) else str(value)
        return out

    def _items(self, response: Response, page: int) -> list[Any]:
        rows = self.rows_of(response, page)
        if not isinstance(rows, list):
            raise PollFailed(
                f"page {page}: poll.items gave a {type(rows).__name__}, not a list; the answer was "
                f"{answer_shape(response.body)}",
                step=POLL_STEP,
            )
        return rows

    def rows_of(self, response: Response, page: int) -> Any:
        """`poll.items` over one answer; an answer without them is named by its shape.

        Why: a target in trouble often answers 200 with an HTML error page or a JSON error
        envelope (ERPNext's `exc_type`, JSON-RPC's `error`), and "no such overload" or "no field
        'data'" says nothing of that. The shape (text, or the object's keys) says it without
        copying the answer, which may echo the request, into the status.
        """
        try:
            return evaluate(self.plan.items, {"response": response.body}, step=POLL_STEP, what="poll.items")
        except PermanentFailure:
            raise PollFailed(
                f"page {page}: poll.items ({self.plan.items[:80]}) found no rows in the answer, "
                f"{answer_shape(response.body)}",
                step=POLL_STEP,
            ) from None

    def _marks(self, rows: list[Any], page: int, *, full: bool) -> list[tuple[datetime, str] | None]:
        """Each row's change time (parsed, and as the target wrote it).

        A row whose change time cannot be read (a CEL error on it, null, another shape) is None:
        it is published all the same and the watermark moves over the rows around it, as a row
        without a business key goes in to be parked, so one bad row does not hold the source
        for ever; the poll counts it and fails with the first reason. A full page without one
        readable row fails the poll unpublished: it cannot be stepped over, and it is usually an
        expression no row can satisfy.
        """
        marks: list[tuple[datetime, str] | None] = []
        for row in rows:
            try:
                value = evaluate(self.plan.watermark, {"row": row}, step=POLL_STEP, what="poll.watermark")
                moment = parse_time(value, self.plan.watermark_format, self.zone)
            except PermanentFailure as exc:
                self.unreadable_reason = self.unreadable_reason or str(exc).splitlines()[0][:200]
                marks.append(None)
                continue
            raw = value if isinstance(value, str) else format_time(moment, self.plan.watermark_format, self.zone)
            marks.append((moment, raw))
        if full and rows and not any(marks):
            raise PollFailed(
                f"no row of page {page} has a readable poll.watermark ({self.unreadable_reason})", step=POLL_STEP
            )
        self.unreadable += marks.count(None)
        return marks

    @staticmethod
    def _descending(marks: list[tuple[datetime, str] | None]) -> tuple[str, str] | None:
        """The first two readable change times out of ascending order, or None."""
        read = [mark for mark in marks if mark is not None]
        for i in range(1, len(read)):
            if read[i][0] < read[i - 1][0]:
                return read[i - 1][1], read[i][1]
        return None

    def _seen(self, marks: list[tuple[datetime, str] | None]) -> None:
        for mark in marks:
            if mark is None:
                continue
            if mark[0] > self.ceiling[0]:  # stamped in the future: held at the ceiling (watermark_ceiling)
                self.ahead += 1
                mark = self.ceiling
            if self.best is None or mark[0] > self.best[0]:
                self.best = mark

    def unreadable_failure(self) -> PollFailed | None:
        """Why the poll counts as failed although it went on: rows whose change time could not be read."""
        if not self.unreadable:
            return None
        return PollFailed(
            f"{self.unreadable} row(s) without a readable poll.watermark went in and were stepped over "
            f"({self.unreadable_reason})",
            step=POLL_STEP,
        )

    def _result(self, pages: int, complete: bool) -> PollResult:
        watermark = self.best[1] if self.best else None
        return PollResult(self.rows, pages, watermark, complete, self.unreadable_failure(), ahead=self.ahead)

    async def keyset(self, bound: str, paging: PagingPlan | None) -> PollResult:
        """Page by change time (see the module docstring): each page starts at the last row read."""
        ties = 0  # rows already read whose change time is `bound`, skipped by offset
        bound_time: datetime | None = None
        pages = paging.max_pages if paging is not None else 1
        for number in range(pages):
            query = self._query(bound)
            if paging is not None:
                if paging.size_param:
                    query[paging.size_param] = str(paging.page_size)
                query[paging.offset_param] = str(ties)
            self.pages = number + 1
            rows = self._items(await self.fetch(self.plan.path, query), number + 1)
            full = paging is not None and len(rows) >= paging.page_size
            marks = self._marks(rows, number + 1, full=full)
            if (pair := self._descending(marks)) is not None:
                raise PollFailed(
                    f"page {number + 1}: rows are not in ascending order of their watermark ({pair[0]} before "
                    f"{pair[1]}); ask the target to sort by it (e.g. order_by: '\"modified asc, name asc\"')",
                    step=POLL_STEP,
                )
            if rows:
                await self.publish(rows)
                self.rows += len(rows)
                self._seen(marks)
            if not full:
                return self._result(number + 1, complete=True)
            # The rows already read from the first one at the last change time onwards (a row
            # without a readable time among or after them included) are stepped over by offset.
            last_time, last_raw = next(mark for mark in reversed(marks) if mark is not None)
            same = len(rows) - next(i for i, mark in enumerate(marks) if mark is not None and mark[0] == last_time)
            if bound_time is not None and last_time == bound_time:
                ties += same  # a whole page at one change time: step over it by offset
            else:
                bound, bound_time, ties = last_raw, last_time, same
        return self._result(pages, complete=False)

    async def paged(self, bound: str, paging: PagingPlan, base_url: str) -> PollResult:
        """The target's own paging (Page, Cursor, NextLink, LinkHeader), then publish what it listed."""

        async def fetch(request: PageRequest) -> Response:
            self.pages = request.number + 1
            return await self.fetch(request.path, request.query)

        async def items_of(response: Response) -> Any:
            return self._items(response, self.pages)

        async def next_of(response: Response) -> Any:
            if not paging.next:
                return None
            context = {"response": response.body, "headers": dict(response.headers)}
            return evaluate(paging.next, context, step=POLL_STEP, what="poll.paging.next")

        listed = await read_pages(
            paging,
            base_url=base_url,
            path=self.plan.path,
            query=self._query(bound),
            fetch=fetch,
            items_of=items_of,
            next_of=next_of,
        )
        if listed.items:
            marks = self._marks(listed.items, listed.pages, full=not listed.complete)
            if not listed.complete and self._descending(marks) is not None:
                # The rows past the cap may be older than the newest row read: no watermark is safe.
                cap = f"paging.maxPages ({paging.max_pages})" if listed.cut_by == "maxPages" else "64 MiB of answers"
                raise PollFailed(
                    f"the list was cut at {cap} and its rows are not in ascending "
                    "order of their watermark; raise maxPages or ask the target to sort by the watermark",
                    step=POLL_STEP,
                )
            await self.publish(listed.items)
            self.rows += len(listed.items)
            self._seen(marks)
        return self._result(listed.pages, listed.complete)
