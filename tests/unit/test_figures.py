from __future__ import annotations

from onceflow_operator.controller.figures import FigureBook


def beat(pod: str, revision: str = "r1", **totals: int) -> dict[str, object]:
    return {
        "integration": "flow",
        "revision": revision,
        "pod": pod,
        "totals": totals,
        "consumerLag": 7,
        "lastSuccessTime": f"2026-11-27T10:0{len(pod)}:00+00:00",
    }


def test_pods_of_one_revision_are_summed_and_other_revisions_ignored() -> None:
    book = FigureBook()
    book.record("ns", beat("a", completed=5, exception=1, transient=2), now=0)
    book.record("ns", beat("bb", completed=3, deadLetter=1, parked=2), now=0)
    book.record("ns", beat("c", revision="r2", completed=100), now=0)
    assert book.figures("ns", "flow", "r1", now=1) == {
        "processed": 8,
        "failed": 4,
        "exceptions": 3,
        "deadLettered": 1,
        "consumerLag": 7,
        "lastSuccessTime": "2026-11-27T10:02:00+00:00",
    }


def test_a_later_heartbeat_replaces_the_pods_earlier_one() -> None:
    book = FigureBook()
    book.record("ns", beat("a", completed=5), now=0)
    book.record("ns", beat("a", completed=9), now=2)
    assert book.figures("ns", "flow", "r1", now=3)["processed"] == 9  # type: ignore[index]


def test_silent_pods_stop_counting_toward_lag_and_unknown_revisions_have_no_figures() -> None:
    book = FigureBook(stale_after=30)
    book.record("ns", beat("a", completed=1), now=0)
    assert book.figures("ns", "flow", "r1", now=60)["consumerLag"] == 0  # type: ignore[index]
    assert book.figures("ns", "flow", "nope", now=1) is None
