"""When a schedule fires: five-field cron expressions and fixed intervals (pure).

Why a module of its own, in the contract: the operator checks a schedule (`onceflow validate`
names the field of a bad cron) with the very parser the runner fires it with, so a schedule that
validates is one that runs. Why not a library: the five-field grammar Kubernetes CronJobs accept
is small, and the runner image stays without another dependency.

Grammar (as CronJob and Vixie cron): minute, hour, day of month, month, day of week; each field
`*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; months and
days of week also by name (`JAN`, `MON`; Sunday is 0 or 7); the macros `@yearly`, `@monthly`,
`@weekly`, `@daily`, `@hourly`. When both day fields are restricted, a day matching either fires
(Vixie cron's rule). Times are computed in the schedule's IANA time zone, so `0 6 * * *` in
`Europe/Berlin` is 06:00 there in summer and in winter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronSchedule", "InvalidSchedule", "next_fire", "parse_cron", "time_zone"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
)
_DOW: tuple[str, int, int, dict[str, int]] = ("day of week", 0, 7, _DAYS)


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot fire; the message names the part that is wrong."""


@dataclass(frozen=True)
class CronSchedule:
    """The values each field allows (day of week 0-6, Sunday 0)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7
        if self.any_day or self.any_weekday:
            return moment.day in self.days and weekday in self.weekdays
        return moment.day in self.days or weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment` (an aware datetime), in `moment`'s time zone."""
        zone = moment.tzinfo
        local = moment.replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        # Five years of minutes is the longest a valid expression waits (29 February on a Monday...).
        limit = local + timedelta(days=366 * 5)
        while local < limit:
            if local.month not in self.months:
                local = (local.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(local):
                local = local.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if local.hour not in self.hours:
                local = local.replace(minute=0) + timedelta(hours=1)
                continue
            if local.minute not in self.minutes:
                local += timedelta(minutes=1)
                continue
            # A local time a daylight-saving jump skips (02:30 on the spring-forward night) is read with
            # the offset before the jump, so it fires once, an hour later on the wall clock, not never.
            return local.replace(tzinfo=zone)
        raise InvalidSchedule("the cron expression never fires (e.g. 30 February)")


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """The values one field allows, and whether it is unrestricted (`*`)."""
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise InvalidSchedule(f"{name}: {token!r} is not a number{' or a name' if names else ''}")
        value = int(token)
        if not low <= value <= high:
            raise InvalidSchedule(f"{name}: {value} is outside {low}-{high}")
        return value

    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidSchedule(f"{name}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = number(a), number(b)
            if first > last:
                raise InvalidSchedule(f"{name}: range {base!r} runs backwards")
        else:
            first = number(base)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values), text == "*"


def parse_cron(expression: str) -> CronSchedule:
    """Parse a five-field cron expression (or a macro); InvalidSchedule says which field is wrong."""
    text = _MACROS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise InvalidSchedule(
            f"a cron expression has five fields (minute hour day-of-month month day-of-week), not {len(parts)}; "
            "for seconds use interval"
        )
    found = [_field(part, *spec) for part, spec in zip(parts[:4], _FIELDS, strict=True)]
    weekdays, any_weekday = _field(parts[4], *_DOW)
    return CronSchedule(
        minutes=found[0][0],
        hours=found[1][0],
        days=found[2][0],
        months=found[3][0],
        weekdays=frozenset(d % 7 for d in weekdays),
        any_day=found[2][1],
        any_weekday=any_weekday,
    )


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone of a schedule; InvalidSchedule when the name is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None


def next_fire(*, cron: str | None, interval: float | None, zone: str, after: datetime) -> datetime:
    """When a schedule (a cron expression, or else an interval in seconds) next fires after `after` (aware)."""
    if cron:
        return parse_cron(cron).next_after(after.astimezone(time_zone(zone)))
    if not interval or interval <= 0:
        raise InvalidSchedule("a schedule needs a cron expression or a positive interval")
    return after + timedelta(seconds=interval)
