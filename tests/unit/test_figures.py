"""Status figures from heartbeats and the exception stream (operator/onceflow_operator/controller/figures.py)."""

from __future__ import annotations

from dataclasses import dataclass

from onceflow_operator.api.integration import BusinessFigures
from onceflow_operator.controller.figures import ExceptionCount, FigureBook, exception_counts


def beat(pod: str, revision: str = "r1", lane: str = "main", **totals: int) -> dict[str, object]:
    return {
        "integration": "flow",
        "revision": revision,
        "lane": lane,
        "pod": pod,
        "totals": totals,
        "consumerLag": 7,
        "lastSuccessTime": f"2026-11-27T10:0{len(pod)}:00+00:00",
    }


@dataclass
class Parked:
    revision: str
    decision: object | None = None


def test_the_whole_integration_sums_every_revision_and_each_revision_keeps_its_own() -> None:
    book = FigureBook()
    book.record("ns", beat("a", completed=5, exception=1, transient=2), now=0)
    book.record("ns", beat("bb", completed=3, deadLetter=1, parked=2), now=0)
    book.record("ns", beat("ccc", revision="r2", lane="canary", completed=46), now=0)
    book.record("other", beat("d", completed=1000), now=0)
    figures = book.figures("ns", "flow", {"r1": 1, "r2": 2}, now=1)
    assert figures is not None
    assert (figures["processed"], figures["failed"], figures["deadLettered"]) == (54, 4, 1)
    assert figures["lastSuccessTime"] == "2026-11-27T10:03:00+00:00"
    assert figures["revisions"] == [
        {
            "revision": "r2",
            "number": 2,
            "processed": 46,
            "failed": 0,
            "deadLettered": 0,
            "lastSuccessTime": "2026-11-27T10:03:00+00:00",
        },
        {
            "revision": "r1",
            "number": 1,
            "processed": 8,
            "failed": 4,
            "deadLettered": 1,
            "lastSuccessTime": "2026-11-27T10:02:00+00:00",
        },
    ]
    assert "exceptions" not in figures  # not read from the stream yet: not guessed from heartbeats
    BusinessFigures.model_validate(figures)


def test_exceptions_count_waiting_apart_from_decided_per_revision_and_in_total() -> None:
    records = [Parked("r1"), Parked("r1", decision={"action": "retry"}), Parked("r2"), Parked("r2"), Parked("r1")]
    counts = exception_counts(records)
    assert counts == {"r1": ExceptionCount(total=3, waiting=2), "r2": ExceptionCount(total=2, waiting=2)}
    book = FigureBook()
    book.record("ns", beat("a", completed=1), now=0)
    book.record_exceptions("ns", "flow", counts)
    figures = book.figures("ns", "flow", {"r1": 1, "r2": 2}, now=1)
    assert figures is not None
    assert (figures["exceptions"], figures["exceptionsWaiting"]) == (5, 4)
    by_revision = {row["revision"]: row for row in figures["revisions"]}
    assert (by_revision["r1"]["exceptions"], by_revision["r1"]["exceptionsWaiting"]) == (3, 2)
    assert (
        by_revision["r2"]["exceptions"],
        by_revision["r2"]["exceptionsWaiting"],
        by_revision["r2"]["processed"],
    ) == (
        2,
        2,
        0,
    )
    book.record_exceptions("ns", "flow", exception_counts([Parked("r1", decision={"action": "discard"})]))
    after = book.figures("ns", "flow", {"r1": 1}, now=2)
    assert after is not None
    assert (after["exceptions"], after["exceptionsWaiting"]) == (1, 0)  # decided: no longer waiting


def test_a_later_heartbeat_replaces_the_pods_earlier_one() -> None:
    book = FigureBook()
    book.record("ns", beat("a", completed=5), now=0)
    book.record("ns", beat("a", completed=9), now=2)
    assert book.figures("ns", "flow", now=3)["processed"] == 9  # type: ignore[index]


def test_silent_pods_stop_counting_toward_lag_and_an_unknown_integration_has_no_figures() -> None:
    book = FigureBook(stale_after=30)
    book.record("ns", beat("a", completed=1), now=0)
    assert book.figures("ns", "flow", now=1)["consumerLag"] == 7  # type: ignore[index]
    assert book.figures("ns", "flow", now=60)["consumerLag"] == 0  # type: ignore[index]
    assert book.figures("ns", "nope", now=1) is None


def test_revisions_are_listed_newest_first_and_at_most_ten() -> None:
    book = FigureBook()
    for n in range(12):
        book.record("ns", beat(f"p{n}", revision=f"r{n}", completed=1), now=0)
    figures = book.figures("ns", "flow", {f"r{n}": n + 1 for n in range(1, 12)}, now=1)
    assert figures is not None
    assert [row["revision"] for row in figures["revisions"]] == [f"r{n}" for n in range(11, 1, -1)]
    assert figures["processed"] == 12  # the total still counts every revision


def test_status_shows_the_fastest_growing_lane_and_a_silent_one_stops_counting() -> None:
    book = FigureBook(stale_after=30)
    book.record("ns", {**beat("a"), "consumerLagGrowth": -40.0}, now=0)
    book.record("ns", {**beat("b", lane="canary"), "consumerLagGrowth": 125.5}, now=0)
    figures = book.figures("ns", "flow", now=1)
    assert figures is not None
    assert figures["consumerLagGrowth"] == 125.5
    BusinessFigures.model_validate(figures)  # the status model takes it
    assert book.figures("ns", "flow", now=60)["consumerLagGrowth"] == 0.0  # type: ignore[index]
