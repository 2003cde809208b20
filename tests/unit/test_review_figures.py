"""Exception and decision figures for the gauges (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from onceflow_operator.review.exceptions import ExceptionRecord, review_figures

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(seq: int, reason: str, parked_minutes_ago: float, decision: dict[str, Any] | None = None) -> ExceptionRecord:
    parked = (NOW - timedelta(minutes=parked_minutes_ago)).isoformat()
    return ExceptionRecord(seq, "sync", reason, "check", "e", f"k{seq}", "r1", parked, b"{}", [], decision)


def decided(action: str, minutes_ago: float) -> dict[str, Any]:
    return {"action": action, "who": "alice", "time": (NOW - timedelta(minutes=minutes_ago)).isoformat()}


def test_waiting_counts_by_reason_and_the_oldest_age() -> None:
    figures = review_figures(
        [record(1, "InvalidRecord", 90), record(2, "InvalidRecord", 5), record(3, "ApprovalRequired", 30)], NOW
    )
    assert figures.waiting_by_reason == {"InvalidRecord": 2, "ApprovalRequired": 1}
    assert figures.oldest_waiting_seconds == 90 * 60
    assert figures.decisions_last_hour == {}
    assert figures.mean_seconds_to_decision_last_hour == 0.0


def test_decisions_of_the_last_hour_and_their_mean_time_to_decision() -> None:
    figures = review_figures(
        [
            record(1, "InvalidRecord", 50, decided("edit", 10)),  # 40 min to decide
            record(2, "ApprovalRequired", 30, decided("approve", 10)),  # 20 min
            record(3, "InvalidRecord", 300, decided("discard", 120)),  # decided 2 h ago: not counted
        ],
        NOW,
    )
    assert figures.waiting_by_reason == {}
    assert figures.oldest_waiting_seconds == 0.0
    assert figures.decisions_last_hour == {"edit": 1, "approve": 1}
    assert figures.mean_seconds_to_decision_last_hour == 30 * 60


def test_the_page_fills_a_suggested_fix_into_the_edit_form_without_sending_it() -> None:
    from onceflow_operator.review.console import Console, Identity
    from onceflow_operator.review.exceptions import with_fix

    payload = b'{"data": {"currency": "\\u20ac", "credit_limit": 300000}}'
    fixed = with_fix(payload, {"field": "data.currency", "value": "EUR"})
    assert fixed is not None
    assert b'"currency": "EUR"' in fixed
    assert b'"credit_limit": 300000' in fixed
    assert with_fix(payload, {"field": "data.missing.deeper", "value": 1}) is None
    parked = ExceptionRecord(
        7,
        "sync",
        "InvalidRecord",
        "check",
        "currency must be ISO",
        "k7",
        "r1",
        NOW.isoformat(),
        payload,
        [],
        None,
        {"field": "data.currency", "value": "EUR"},
    )
    page = Console("nats://unused", None, auth="proxy")._detail(parked, "sales", Identity("alice"), None)  # type: ignore[arg-type]
    assert "Suggested fix:</strong> set <code>data.currency</code> to <code>&quot;EUR&quot;</code>" in page
    assert "nothing changes until you send it" in page
    assert "&quot;currency&quot;: &quot;EUR&quot;" in page.split("<textarea")[1]  # pre-filled, not sent
