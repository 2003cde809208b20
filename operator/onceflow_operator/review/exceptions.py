"""Exceptions and decisions: what operations people see and do (`onceflow exceptions`, `trace`).

This module is the review side's public face; the work is split by responsibility:

- `records`: reading exceptions with their decisions, and a business key's trace;
- `decisions`: recording a person's decision (compare-and-set) and sending the record again;
- `reading`: paging through whole streams, never cut short; `errors`: the error tree.

Here too: the pure figures behind the operator's review gauges, and applying a suggested fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from onceflow_operator.api.types import ENTITIES
from onceflow_operator.review.decisions import decide
from onceflow_operator.review.errors import AlreadyDecided, ReviewError, StreamUnreadable
from onceflow_operator.review.records import ExceptionRecord, get_exception, list_exceptions, trace
from onceflow_runner.contract.timestamps import parse_time

__all__ = [
    "AlreadyDecided",
    "ExceptionRecord",
    "ReviewError",
    "ReviewFigures",
    "StreamUnreadable",
    "decide",
    "get_exception",
    "list_exceptions",
    "review_figures",
    "trace",
    "with_fix",
]


@dataclass(frozen=True)
class ReviewFigures:
    """How the people side of one Integration is doing, for metrics and alerts."""

    waiting_by_reason: dict[str, int]
    oldest_waiting_seconds: float
    decisions_last_hour: dict[str, int]
    mean_seconds_to_decision_last_hour: float
    #: Entity -> possible duplicates a person decided are the same as an existing record, in the
    #: decisions the streams hold (the people's share of duplicate incidence). An entity the API
    #: does not know counts as "other", so the label set stays bounded.
    duplicates_caught: dict[str, int] = field(default_factory=dict)


def with_fix(payload: bytes, suggestion: dict[str, Any]) -> bytes | None:
    """The payload with a suggested fix applied (for the reviewer to look at and send); None if it does not fit."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    *parents, leaf = str(suggestion.get("field", "")).split(".")
    node = doc
    for key in parents:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return None
        node = node[key]
    if not isinstance(node, dict) or not leaf:
        return None
    node[leaf] = suggestion.get("value")
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


def review_figures(records: list[ExceptionRecord], now: datetime) -> ReviewFigures:
    """Waiting exceptions by reason and the oldest one's age; decisions and time to decision in the last hour.

    Also the duplicates people caught, per entity, over every decision held (not only the last hour).
    """
    waiting: dict[str, int] = {}
    oldest = 0.0
    decided: dict[str, int] = {}
    delays: list[float] = []
    caught: dict[str, int] = {}
    for record in records:
        parked = parse_time(record.time)
        if record.decision is not None and record.decision.verdict == "same":
            # A gauge label: only the API's entities, never a header's text as written.
            entity = record.entity if record.entity in ENTITIES else "other"
            caught[entity] = caught.get(entity, 0) + 1
        if record.decision is None:
            waiting[record.reason] = waiting.get(record.reason, 0) + 1
            if parked is not None:
                oldest = max(oldest, (now - parked).total_seconds())
            continue
        at = parse_time(record.decision.time)
        if at is None or (now - at).total_seconds() > 3600:
            continue
        action = record.decision.action
        decided[action] = decided.get(action, 0) + 1
        if parked is not None:
            delays.append((at - parked).total_seconds())
    mean = sum(delays) / len(delays) if delays else 0.0
    return ReviewFigures(waiting, oldest, decided, mean, caught)
