"""Schedule triggers without a server: cron firing times, watermarks, one poll over a changing list,
what `onceflow validate` refuses (and what it lets through), the plan, and the status figures.

The list a poll reads here is the sandbox ERP's own `list_documents` (Frappe's ordering, filters
and offsets) over documents a test changes between two pages, as people do while a poll runs;
the same over HTTP with runner processes is tests/integration/test_polling.py.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from onceflow_operator.api import Connector, Integration
from onceflow_operator.compiler.planner import plan_from_integration
from onceflow_operator.compiler.validation import validate_manifest
from onceflow_operator.controller.figures import FigureBook
from onceflow_runner.contract.messages import Heartbeat, PollFigures
from onceflow_runner.contract.plan import PagingPlan, PollPlan
from onceflow_runner.contract.schedule import InvalidSchedule, next_fire, parse_cron
from onceflow_runner.engine.polling import (
    PollFailed,
    format_time,
    initial_watermark,
    parse_time,
    poll_changes,
    request_bound,
)
from onceflow_runner.engine.ports import Response
from onceflow_runner.testing.sandbox.erp import list_documents

FRAPPE = "%Y-%m-%d %H:%M:%S.%f"
UTC_ZONE = ZoneInfo("UTC")

# ---------------------------------------------------------------- cron


def at(text: str, zone: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("*/5 * * * *", "2026-11-30 10:02:30", "2026-11-30 10:05:00"),
        ("0 6 * * MON-FRI", "2026-11-28 07:00:00", "2026-11-30 06:00:00"),  # Saturday -> Monday
        ("30 2 1 * *", "2026-11-30 10:00:00", "2026-12-01 02:30:00"),
        ("@hourly", "2026-11-30 10:00:00", "2026-11-30 11:00:00"),
        ("0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),
        ("0 12 13 * 5", "2026-11-30 00:00:00", "2026-12-04 12:00:00"),  # day 13 OR a Friday (Vixie cron)
        ("15,45 9-10 * JAN,DEC 0", "2026-11-30 00:00:00", "2026-12-06 09:15:00"),  # Sundays in December
    ],
)
def test_cron_fires_at_the_next_matching_minute(cron: str, after: str, expected: str) -> None:
    assert next_fire(cron=cron, interval=None, zone="UTC", after=at(after)) == at(expected)


def test_cron_in_a_time_zone_fires_at_local_time_across_daylight_saving() -> None:
    summer = next_fire(cron="0 6 * * *", interval=None, zone="Europe/Berlin", after=at("2026-07-01 00:00:00"))
    winter = next_fire(cron="0 6 * * *", interval=None, zone="Europe/Berlin", after=at("2026-12-01 00:00:00"))
    assert summer.astimezone(UTC).hour == 4
    assert winter.astimezone(UTC).hour == 5
    # 02:30 does not exist on the spring-forward night: it fires once that night (03:30 local), not never.
    skipped = next_fire(cron="30 2 * * *", interval=None, zone="Europe/Berlin", after=at("2026-03-29 00:00:00"))
    assert skipped.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_an_interval_fires_that_many_seconds_later() -> None:
    start = at("2026-11-30 10:00:00")
    assert next_fire(cron=None, interval=2.5, zone="UTC", after=start) == start + timedelta(seconds=2.5)


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("* * * *", "five fields"),
        ("61 * * * *", "minute: 61 is outside 0-59"),
        ("* * * FOO *", "month: 'FOO' is not a number or a name"),
        ("*/0 * * * *", "step '0'"),
        ("5-1 * * * *", "runs backwards"),
        ("0 0 30 2 *", "never fires"),
        ("*/5 * * * * *", "for seconds use interval"),
    ],
)
def test_a_cron_expression_that_cannot_fire_says_which_part_is_wrong(cron: str, says: str) -> None:
    with pytest.raises(InvalidSchedule, match=says.replace("(", r"\(").replace("*", r"\*")):
        parse_cron(cron).next_after(at("2026-01-01 00:00:00"))


# ---------------------------------------------------------------- watermarks


def poll_plan(**changes: Any) -> PollPlan:
    base: dict[str, Any] = {
        "interval": 1.0,
        "connector": "erp",
        "path": "/api/resource/Sales Invoice",
        "query": {
            "fields": "'[\"*\"]'",
            "filters": '\'[["modified", ">=", "\' + watermark + \'"]]\'',
            "order_by": "'modified asc'",
        },
        "watermark": "row.modified",
        "watermark_format": FRAPPE,
        "look_back": 60.0,
        "paging": PagingPlan(page_size=10),
        "subject": "onceflow.t.in._poll.invoices",
        "bucket": "onceflow-poll-t",
    }
    return PollPlan(**{**base, **changes})


def test_the_request_starts_at_the_stored_watermark_minus_the_look_back_written_as_the_target_writes_it() -> None:
    plan, now = poll_plan(), datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert request_bound(plan, "2026-11-30 10:00:30.250000", now) == "2026-11-30 09:59:30.250000"
    rfc = poll_plan(watermark_format="RFC3339", look_back=5.0)
    assert request_bound(rfc, "2026-11-30T10:00:00+01:00", now) == "2026-11-30T08:59:55Z"


def test_the_first_poll_starts_at_start_from_or_at_its_own_time_in_the_targets_zone() -> None:
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    dated = poll_plan(start="2026-01-01T00:00:00+00:00", look_back=0.0, watermark_time_zone="Europe/Berlin")
    assert initial_watermark(dated, now) == "2026-01-01 01:00:00.000000"
    assert initial_watermark(poll_plan(watermark_time_zone="Europe/Berlin"), now) == "2026-11-30 10:00:00.000000"


def test_a_watermark_in_another_shape_is_refused_naming_the_format() -> None:
    with pytest.raises(PollFailed, match="does not match watermarkFormat"):
        parse_time("30/11/2026", FRAPPE, UTC_ZONE)
    with pytest.raises(PollFailed, match="not a timestamp"):
        parse_time(None, FRAPPE, UTC_ZONE)
    # A fraction the pattern does not expect still reads (ISO 8601), in the target's zone.
    assert parse_time("2026-11-30 10:00:00", FRAPPE, UTC_ZONE) == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert format_time(datetime(2026, 11, 30, 10, tzinfo=UTC), "RFC3339", UTC_ZONE) == "2026-11-30T10:00:00Z"


# ---------------------------------------------------------------- one poll over a changing list


class Erp:
    """Sales invoices listed as the sandbox ERP lists them; `between_pages` changes documents."""

    def __init__(self, count: int, *, same_time: int = 1) -> None:
        first = datetime(2026, 11, 1, 8, 0)
        self.docs = {
            f"INV-{i:03d}": {
                "name": f"INV-{i:03d}",
                "modified": (first + timedelta(seconds=i // same_time)).strftime(FRAPPE),
            }
            for i in range(count)
        }
        self.clock = first + timedelta(days=1)
        self.requests: list[dict[str, str]] = []
        self.between_pages: dict[int, list[str]] = {}

    def touch(self, name: str) -> None:
        self.clock += timedelta(seconds=1)
        self.docs[name]["modified"] = self.clock.strftime(FRAPPE)

    async def fetch(self, path: str, query: Mapping[str, str]) -> Response:
        for name in self.between_pages.get(len(self.requests), []):
            self.touch(name)
        self.requests.append(dict(query))
        rows = list_documents(
            list(self.docs.values()),
            filters=json.loads(query["filters"]),
            fields=json.loads(query["fields"]),
            order_by=query["order_by"],
            start=int(query.get("limit_start", "0")),
            length=int(query.get("limit_page_length", "20")),
        )
        return Response(200, {"data": [copy.deepcopy(r) for r in rows]})


class Intake:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def publish(self, rows: list[Any]) -> None:
        self.rows += rows

    def latest_seen(self, erp: Erp) -> set[str]:
        """Names of the documents whose current version was published."""
        seen = {(r["name"], r["modified"]) for r in self.rows}
        return {name for name, doc in erp.docs.items() if (name, doc["modified"]) in seen}


async def poll(erp: Erp, intake: Intake, plan: PollPlan, bound: str = "2026-01-01 00:00:00.000000") -> Any:
    return await poll_changes(
        plan, bound=bound, now=datetime.now(UTC), base_url="http://erp", fetch=erp.fetch, publish=intake.publish
    )


async def test_rows_changed_while_the_poll_pages_are_neither_skipped_nor_lost() -> None:
    erp, intake = Erp(95), Intake()
    # Before pages 2, 3 and 5: a row already read changes (it moves to the end of the list, which
    # under plain offset paging slides an unread row back into the pages already read), and one not yet read.
    erp.between_pages = {1: ["INV-002", "INV-050"], 2: ["INV-011", "INV-090"], 4: ["INV-000"]}
    result = await poll(erp, intake, poll_plan())
    assert intake.latest_seen(erp) == set(erp.docs), "a changed or shifted row was never read"
    assert result.complete
    assert result.watermark == max(d["modified"] for d in erp.docs.values())


async def test_plain_offset_paging_of_the_same_list_would_have_lost_rows() -> None:
    """Why the poll does not follow offsets: the same changes under limit_start paging skip rows."""
    erp, seen = Erp(95), set()
    erp.between_pages = {1: ["INV-002", "INV-050"], 2: ["INV-011", "INV-090"], 4: ["INV-000"]}
    start = 0
    while True:
        query = {"filters": '[["modified", ">=", "2026-01-01"]]', "fields": '["*"]', "order_by": "modified asc"}
        page = (await erp.fetch("", {**query, "limit_start": str(start), "limit_page_length": "10"})).body["data"]
        seen |= {(r["name"], r["modified"]) for r in page}
        start += len(page)
        if len(page) < 10:
            break
    missed = {name for name, doc in erp.docs.items() if (name, doc["modified"]) not in seen}
    assert missed, "offset paging kept up here; the test no longer shows the hazard"


async def test_a_page_of_rows_sharing_one_change_time_is_stepped_over_by_offset_not_read_for_ever() -> None:
    erp, intake = Erp(45, same_time=25), Intake()  # 25 rows at 08:00:00, 20 at 08:00:01
    result = await poll(erp, intake, poll_plan())
    assert {r["name"] for r in intake.rows} == set(erp.docs)
    assert result.complete
    assert [q["limit_start"] for q in erp.requests][:3] == ["0", "10", "20"]


class TieShufflingErp(Erp):
    """A database that returns rows sharing one `modified` in any order, query by query (MariaDB
    with ORDER BY modified and LIMIT/OFFSET does), unless the order names a unique tiebreaker."""

    def __init__(self, count: int, *, same_time: int) -> None:
        super().__init__(count, same_time=same_time)
        self.random = random.Random(7)

    async def fetch(self, path: str, query: Mapping[str, str]) -> Response:
        docs = list(self.docs.items())
        self.random.shuffle(docs)
        self.docs = dict(docs)  # the sandbox's sort is stable: ties keep this query's order
        return await super().fetch(path, query)


@pytest.mark.parametrize(("order_by", "loses"), [("'modified asc'", True), ("'modified asc, name asc'", False)])
async def test_rows_sharing_one_change_time_need_a_unique_tiebreaker_in_the_order(order_by: str, loses: bool) -> None:
    """Why the example orders by `modified asc, name asc`: the offset that steps over rows already
    read at one change time counts positions among them, which only a stable order keeps."""
    erp, intake = TieShufflingErp(45, same_time=25), Intake()  # a bulk update stamped 25 rows alike
    await poll(erp, intake, poll_plan(query={**poll_plan().query, "order_by": order_by}))
    missed = set(erp.docs) - {r["name"] for r in intake.rows}
    assert bool(missed) == loses, missed


async def test_a_poll_capped_at_max_pages_reports_how_far_it_read_and_the_next_one_goes_on() -> None:
    erp, intake = Erp(50), Intake()
    plan = poll_plan(paging=PagingPlan(page_size=10, max_pages=2))
    first = await poll(erp, intake, plan)
    assert (first.complete, first.rows) == (False, 20)
    assert first.watermark == erp.docs["INV-019"]["modified"]
    rest = await poll(erp, intake, plan.model_copy(update={"paging": PagingPlan(page_size=10)}), first.watermark or "")
    assert rest.complete
    assert {r["name"] for r in intake.rows} == set(erp.docs)


async def test_a_target_failing_mid_poll_keeps_the_progress_of_the_pages_published_before() -> None:
    erp, intake = Erp(50), Intake()
    fetch = erp.fetch

    async def fails_on_page_3(path: str, query: Mapping[str, str]) -> Response:
        if len(erp.requests) == 2:
            raise TimeoutError("read timed out")
        return await fetch(path, query)

    erp.fetch = fails_on_page_3  # type: ignore[method-assign]
    result = await poll(erp, intake, poll_plan())
    assert isinstance(result.error, TimeoutError)
    assert (result.rows, result.complete) == (20, False)
    assert result.watermark == erp.docs["INV-019"]["modified"]


async def test_a_target_failing_on_the_first_page_fails_the_poll() -> None:
    intake = Intake()

    async def down(path: str, query: Mapping[str, str]) -> Response:
        raise TimeoutError("connect timed out")

    with pytest.raises(TimeoutError):
        await poll_changes(
            poll_plan(), bound="x", now=datetime.now(UTC), base_url="http://erp", fetch=down, publish=intake.publish
        )


async def test_rows_in_descending_order_fail_the_poll_saying_to_sort_by_the_watermark() -> None:
    erp, intake = Erp(30), Intake()
    plan = poll_plan(query={**poll_plan().query, "order_by": "'modified desc'"})
    with pytest.raises(PollFailed, match="ascending order"):
        await poll(erp, intake, plan)
    assert intake.rows == [], "nothing is published from a page read in the wrong order"


async def test_a_row_stamped_in_the_far_future_does_not_hide_the_changes_after_it() -> None:
    """One row with a mistyped date must not become the watermark: every later change would fall before it."""
    erp, intake = Erp(30), Intake()
    erp.docs["INV-007"]["modified"] = "2099-01-01 00:00:00.000000"
    plan = poll_plan()
    first = await poll(erp, intake, plan)
    now = datetime.now(UTC)
    assert (first.complete, first.ahead) == (True, 1)
    assert first.watermark is not None
    assert parse_time(first.watermark, FRAPPE, UTC_ZONE) <= now + timedelta(seconds=plan.look_back)
    erp.clock = now.replace(tzinfo=None)  # the target's clock, in its zone (UTC here)
    erp.touch("INV-003")
    await poll(erp, intake, plan, request_bound(plan, first.watermark, datetime.now(UTC)))
    assert "INV-003" in intake.latest_seen(erp), "a change after the far-future row was never read"


def test_a_stored_watermark_in_the_future_is_read_from_the_present() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    plan = poll_plan(look_back=60.0)
    assert request_bound(plan, "2099-01-01 00:00:00.000000", now) == "2026-11-30 10:00:00.000000"
    # A startFrom in the future (a go-live date) is a choice, not a bad row: it is kept.
    live = poll_plan(look_back=60.0, start="2026-12-07T00:00:00+00:00")
    assert request_bound(live, None, now) == "2026-12-06 23:59:00.000000"
    assert request_bound(live, "2026-12-07 00:00:00.000000", now) == "2026-12-06 23:59:00.000000"


@pytest.mark.parametrize("bad", [None, 1764496800, "30/11/2026 10:00", ""])
async def test_one_row_without_a_readable_change_time_does_not_hold_the_source(bad: Any) -> None:
    """The row goes in (its record is settled or parked like any other), the poll says why it failed,
    and the watermark moves over the rows around it, so the next poll is not stuck on it."""
    erp, intake = Erp(45), Intake()
    plan = poll_plan(watermark="row.changed")  # the target's own change time, missing on a legacy row
    for doc in erp.docs.values():
        doc["changed"] = doc["modified"]
    erp.docs["INV-012"]["changed"] = bad
    result = await poll(erp, intake, plan)
    assert {r["name"] for r in intake.rows} == set(erp.docs), "rows after the bad one were never read"
    assert result.watermark == erp.docs["INV-044"]["modified"]
    assert isinstance(result.error, PollFailed)
    assert str(result.error).startswith("1 row(s) without a readable poll.watermark")


async def test_a_watermark_expression_no_row_can_read_still_fails_the_poll() -> None:
    erp, intake = Erp(25), Intake()
    with pytest.raises(PollFailed, match="no row of page 1"):
        await poll(erp, intake, poll_plan(watermark="row.modifed"))
    assert intake.rows == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text of 50 characters (an HTML page), not JSON"),
        ({"exc_type": "PermissionError", "exception": "Not permitted"}, "a JSON object with keys exc_type, exception"),
        ({"jsonrpc": "2.0", "error": {"code": -32000, "message": "x"}}, "a JSON object with keys error, jsonrpc"),
        ({"data": None}, "a JSON object with keys data"),
    ],
)
@pytest.mark.parametrize("style", ["Offset", "Cursor"])
async def test_a_200_answer_without_rows_names_what_came_instead(body: Any, says: str, style: str) -> None:
    """An HTML error page or a JSON error envelope answered with 200 fails the poll saying what it was,
    not "no such overload" or "the record has no field", and without copying the answer."""

    async def fetch(path: str, query: Mapping[str, str]) -> Response:
        return Response(200, body)

    plan = poll_plan(paging=PagingPlan(style=style, page_size=10, next="response.next" if style == "Cursor" else None))
    with pytest.raises(PollFailed, match=r"page 1: poll\.items") as failed:
        await poll_changes(
            plan, bound="x", now=datetime.now(UTC), base_url="http://erp", fetch=fetch, publish=Intake().publish
        )
    assert says in str(failed.value)
    assert "Not permitted" not in str(failed.value)


async def test_without_paging_one_request_is_the_whole_poll() -> None:
    erp, intake = Erp(30), Intake()
    result = await poll(erp, intake, poll_plan(paging=None))
    assert (len(erp.requests), result.rows, result.complete) == (1, 20, True)  # the ERP's own 20-row default


# ---------------------------------------------------------------- validate, plan, status

ERP = {
    "apiVersion": "onceflow.io/v1alpha1",
    "kind": "Connector",
    "metadata": {"name": "erp"},
    "spec": {"type": "REST", "rest": {"baseURL": "http://erp.test"}},
}


def integration(**schedule: Any) -> dict[str, Any]:
    poll_block = {
        "connector": "erp",
        "path": "/api/resource/Sales Invoice",
        "query": {"filters": '\'[["modified", ">=", "\' + watermark + \'"]]\'', "order_by": "'modified asc'"},
        "paging": {"style": "Offset", "pageSize": 50},
        "watermark": {"expression": "row.modified", "format": FRAPPE},
    }
    spec_schedule = {"cron": "*/5 * * * *", "poll": poll_block}
    for key, value in schedule.items():
        if key in ("cron", "interval", "timeZone") and value is None:
            spec_schedule.pop(key, None)
        elif key in ("cron", "interval", "timeZone"):
            spec_schedule[key] = value
        elif key == "watermark":
            poll_block["watermark"] = {**poll_block["watermark"], **value}  # type: ignore[dict-item]
        else:
            poll_block[key] = value
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": "invoices"},
        "spec": {
            "trigger": {"schedule": spec_schedule},
            "businessKey": "input.name + '@' + input.modified",
            "steps": [{"name": "post", "call": {"connector": "erp", "path": "/api/resource/Journal Entry"}}],
        },
    }


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in validate_manifest(doc, "flow.yaml")]


def test_a_schedule_trigger_that_can_run_is_valid() -> None:
    assert problems(integration()) == []
    assert problems(integration(cron=None, interval="30s", watermark={"startFrom": "2026-01-01T00:00:00Z"})) == []


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        ({"cron": "*/5 * * *"}, "spec.trigger.schedule.cron", "five fields"),
        ({"cron": "0 25 * * *"}, "spec.trigger.schedule.cron", "hour: 25 is outside 0-23"),
        ({"cron": "0 0 30 2 *"}, "spec.trigger.schedule.cron", "never fires"),
        ({"cron": "0 0 31 4,6,9,11 *"}, "spec.trigger.schedule.cron", "never fires"),
        ({"query": {"order_by": "'modified asc'"}}, "spec.trigger.schedule.poll.query", "no query value uses"),
        ({"cron": None}, "spec.trigger.schedule", "exactly one of cron"),
        ({"interval": "10s"}, "spec.trigger.schedule", "exactly one of cron"),
        ({"cron": None, "interval": "100ms"}, "spec.trigger.schedule.interval", "outside 1s..24h"),
        ({"timeZone": "Mars/Olympus"}, "spec.trigger.schedule.timeZone", "not an IANA time zone"),
        ({"watermark": {"format": "modified"}}, "spec.trigger.schedule.poll.watermark.format", "strftime"),
        (
            {"watermark": {"startFrom": "yesterday"}},
            "spec.trigger.schedule.poll.watermark.startFrom",
            "neither Now nor an ISO 8601",
        ),
        (
            {"watermark": {"startFrom": "2026-01-01T00:00:00"}},
            "spec.trigger.schedule.poll.watermark.startFrom",
            "with an offset",
        ),
        ({"watermark": {"expression": "row.modified +"}}, "spec.trigger.schedule.poll.watermark.expression", "CEL"),
        ({"query": {"filters": "watermark >"}}, "spec.trigger.schedule.poll.query.filters", "CEL does not compile"),
        ({"path": "/api/resource/a//b"}, "spec.trigger.schedule.poll.path", "empty segment"),
        ({"paging": {"style": "Cursor"}}, "spec.trigger.schedule.poll.paging", "next is set"),
    ],
)
def test_validate_refuses_a_schedule_trigger_only_where_it_is_wrong_naming_the_field(
    change: dict[str, Any], path: str, says: str
) -> None:
    found = problems(integration(**change))
    assert any(p == path and says in m for p, m in found), found


def test_a_missing_watermark_expression_is_named() -> None:
    doc = integration()
    del doc["spec"]["trigger"]["schedule"]["poll"]["watermark"]["expression"]
    assert any(p == "spec.trigger.schedule.poll.watermark.expression" for p, _ in problems(doc))


def test_a_schedule_trigger_without_a_business_key_is_refused_saying_why() -> None:
    doc = integration()
    del doc["spec"]["businessKey"]
    ((path, message),) = problems(doc)
    assert path == "spec.businessKey"
    assert "read twice" in message


def test_the_plan_polls_the_connector_into_the_integrations_intake() -> None:
    plan = plan_from_integration(
        Integration.model_validate(integration(watermark={"lookBack": "5m", "startFrom": "2026-01-01T00:00:00Z"})),
        {"erp": Connector.model_validate(ERP)},
        None,
        namespace="sales",
    )
    assert plan.poll is not None
    assert plan.nats.subject == plan.poll.subject == "onceflow.sales.in._poll.invoices"
    assert plan.nats.stream == "ONCEFLOW_IN"
    assert (plan.poll.bucket, plan.poll.look_back, plan.poll.start) == (
        "onceflow-poll-sales",
        300.0,
        "2026-01-01T00:00:00+00:00",
    )
    assert plan.poll.paging is not None
    assert plan.poll.paging.page_size == 50
    assert plan.source == "erp"
    assert "erp" in plan.connectors


def test_a_schedule_trigger_on_a_missing_or_webhook_connector_is_refused_by_the_planner() -> None:
    from onceflow_operator.compiler.planner import InvalidSpec

    hook = {
        **ERP,
        "spec": {
            "type": "Webhook",
            "webhook": {"path": "/x", "signature": {"scheme": "github", "secretRef": {"name": "s", "key": "k"}}},
        },
    }
    obj = Integration.model_validate(integration())
    with pytest.raises(InvalidSpec, match=r"spec.trigger.schedule.poll.connector: Connector 'erp' does not exist"):
        plan_from_integration(obj, {}, None, namespace="sales")
    with pytest.raises(InvalidSpec, match="polling needs REST"):
        plan_from_integration(obj, {"erp": Connector.model_validate(hook)}, None, namespace="sales")


def test_status_shows_the_pollers_last_poll_watermark_records_and_errors() -> None:
    book = FigureBook()
    book.record("sales", Heartbeat(integration="invoices", revision="r1", pod="a"), now=0)
    polled = PollFigures(
        last_poll_time="2026-11-30T10:00:00+00:00",
        watermark="2026-11-30 09:59:58.000000",
        records=42,
        pages=3,
        polls=7,
        errors=1,
        last_error="erp refused GET /api/resource/Sales Invoice with 403",
    )
    book.record("sales", Heartbeat(integration="invoices", revision="r1", pod="b", poll=polled), now=0)
    figures = book.figures("sales", "invoices", now=1)
    assert figures is not None
    assert figures["poll"]["watermark"] == "2026-11-30 09:59:58.000000"
    assert (figures["poll"]["records"], figures["poll"]["errors"]) == (42, 1)
    assert "403" in figures["poll"]["lastError"]
    from onceflow_operator.api.integration import BusinessFigures

    assert BusinessFigures.model_validate(figures).poll is not None  # fits the status schema
