"""Timestamps as both planes write them (RFC 3339, UTC) and the one parser that reads them back.

Kubernetes status uses `2026-01-02T03:04:05Z`; Python's isoformat writes `+00:00`; both appear
in streams and status. Every reader goes through `parse_time`, so a malformed stamp is None in
one place instead of a ValueError in five.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["format_time", "parse_time"]


def parse_time(value: Any) -> datetime | None:
    """A timezone-aware datetime from a datetime or an RFC 3339 string; None for anything else.

    A stamp without a zone is taken as UTC (older messages wrote naive local-free UTC times).
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """`2026-01-02T03:04:05Z`: the form Kubernetes status and its printers expect (a naive time is taken as UTC)."""
    return (moment.astimezone(UTC) if moment.tzinfo is not None else moment).strftime("%Y-%m-%dT%H:%M:%SZ")
