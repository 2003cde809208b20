"""A schedule trigger: its checks (for `onceflow validate` and the operator) and its plan (pure).

Why a module of its own: a schedule trigger is the one trigger with work of its own to compile
(a request, a watermark, a schedule), and its checks should refuse only what cannot run: a cron
expression or time zone that never fires, a watermark format or start that cannot be read, a
request path the runner would refuse, a record without a business key (the poller's
`Nats-Msg-Id` and the key store both need one, or a row read twice would have two effects).
The cron parser is the runner's own (`contract.schedule`), so a schedule that validates fires.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from onceflow_operator.api import Integration
from onceflow_operator.api.integration import ScheduleTrigger
from onceflow_operator.compiler.paths import reconcile_path_problems
from onceflow_operator.compiler.steps import paging_plan
from onceflow_runner.contract import subjects
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.plan import PollPlan
from onceflow_runner.contract.schedule import InvalidSchedule, parse_cron, time_zone

__all__ = [
    "MAX_INTERVAL_SECONDS",
    "MIN_INTERVAL_SECONDS",
    "SCHEDULE_PATH",
    "poll_expressions",
    "poll_plan",
    "schedule_problems",
]

SCHEDULE_PATH = "spec.trigger.schedule"
#: Bounds of `interval`: under a second a poll could not finish before the next; over a day use cron.
MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 86400.0
_WATERMARK = re.compile(r"\bwatermark\b")


def poll_expressions(integration: Integration) -> Iterator[tuple[str, str]]:
    """(field path, CEL) of every expression of a schedule trigger's poll."""
    schedule = integration.spec.trigger.schedule
    if schedule is None:
        return
    poll, at = schedule.poll, f"{SCHEDULE_PATH}.poll"
    for name, source in poll.query.items():
        yield f"{at}.query.{name}", source
    yield f"{at}.items", poll.items
    yield f"{at}.watermark.expression", poll.watermark.expression
    if poll.paging is not None and poll.paging.next:
        yield f"{at}.paging.next", poll.paging.next


def _start(text: str) -> datetime | None:
    """`startFrom` as an aware time; None for Now. ValueError when it is neither."""
    if text == "Now":
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("has no offset")
    return moment


def schedule_problems(integration: Integration) -> Iterator[tuple[str, str]]:
    """(path, message) for a schedule trigger that cannot run as written."""
    schedule = integration.spec.trigger.schedule
    if schedule is None:
        return
    if schedule.cron is not None:
        try:
            # next_after too: an expression that parses may still never fire (30 February), which
            # the runner only finds when it asks for the next firing, and then never polls.
            parse_cron(schedule.cron).next_after(datetime.now(UTC))
        except InvalidSchedule as exc:
            yield f"{SCHEDULE_PATH}.cron", f"{schedule.cron!r}: {exc}"
    if schedule.interval is not None:
        seconds = parse_duration(schedule.interval)
        if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
            yield (
                f"{SCHEDULE_PATH}.interval",
                f"{schedule.interval} is outside 1s..24h; poll less often than every second, or use cron for "
                "schedules longer than a day",
            )
    for path, zone in (
        (f"{SCHEDULE_PATH}.timeZone", schedule.time_zone),
        (f"{SCHEDULE_PATH}.poll.watermark.timeZone", schedule.poll.watermark.time_zone),
    ):
        try:
            time_zone(zone)
        except InvalidSchedule as exc:
            yield path, str(exc)
    watermark = schedule.poll.watermark
    if watermark.format != "RFC3339":
        try:
            sample = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
            written = sample.strftime(watermark.format)
            if "%" not in watermark.format or datetime.strptime(written, watermark.format).year != 2026:
                raise ValueError("no year")
        except ValueError:
            yield (
                f"{SCHEDULE_PATH}.poll.watermark.format",
                f"{watermark.format!r} is not a strftime pattern with a date and time (e.g. '%Y-%m-%d %H:%M:%S.%f'); "
                "or use RFC3339",
            )
    try:
        _start(watermark.start_from)
    except ValueError:
        yield (
            f"{SCHEDULE_PATH}.poll.watermark.startFrom",
            f"{watermark.start_from!r} is neither Now nor an ISO 8601 time with an offset (e.g. 2026-01-01T00:00:00Z)",
        )
    yield from reconcile_path_problems(f"{SCHEDULE_PATH}.poll.path", schedule.poll.path)
    if not any(_WATERMARK.search(source) for source in schedule.poll.query.values()):
        # The query is the only place the watermark reaches the target (the path is a literal):
        # without it every poll asks for the whole list from its start, and the Offset style,
        # which pages by change time through the watermark, would not get past its first rows.
        yield (
            f"{SCHEDULE_PATH}.poll.query",
            "no query value uses `watermark`, so every poll would read the whole list from its start; filter by "
            'it, e.g. for ERPNext filters: \'[["modified", ">=", "\' + watermark + \'"]]\'',
        )
    if not integration.spec.business_key:
        yield (
            "spec.businessKey",
            "a schedule trigger needs a business key, so that a row read twice (the look-back, a poll run again "
            "after a crash) has one effect; e.g. input.name + '@' + input.modified for one effect per version of "
            "a row",
        )


def _lease_seconds(schedule: ScheduleTrigger) -> float:
    """How long a poller's lease lasts unrenewed: a few firings of an interval, 10 to 60 seconds."""
    period = parse_duration(schedule.interval) if schedule.interval else 60.0
    return min(max(3 * period, 10.0), 60.0)


def poll_plan(integration: Integration, *, namespace: str) -> PollPlan:
    """The runner's poll contract for a schedule trigger (checked by `schedule_problems` first)."""
    schedule = integration.spec.trigger.schedule
    assert schedule is not None
    name = str(integration.metadata.get("name"))
    poll, watermark = schedule.poll, schedule.poll.watermark
    start = _start(watermark.start_from)
    return PollPlan(
        cron=schedule.cron,
        interval=parse_duration(schedule.interval) if schedule.interval else None,
        time_zone=schedule.time_zone,
        connector=poll.connector,
        path=poll.path,
        query=dict(poll.query),
        items=poll.items,
        watermark=watermark.expression,
        watermark_format=watermark.format,
        watermark_time_zone=watermark.time_zone,
        look_back=parse_duration(watermark.look_back),
        start=start.isoformat() if start else None,
        paging=paging_plan(poll.paging),
        subject=subjects.poll_subject(namespace, name),
        bucket=subjects.poll_bucket(namespace),
        lease_seconds=_lease_seconds(schedule),
    )
