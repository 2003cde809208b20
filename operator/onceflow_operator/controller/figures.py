"""Business figures for Integration status, from the runners' heartbeats and the exception stream (pure).

Each runner process sends its cumulative counts every few seconds. The operator keeps the latest
heartbeat per pod and sums the pods of each revision, then the revisions of the Integration; a
pod silent for longer than `stale_after` no longer counts toward lag (its counts stay, they
happened). Heartbeats arrive typed (`contract.messages.Heartbeat`, parsed by
`natsio.subscribe_stats`).

A schedule trigger's polling (`poll`: last poll, watermark, rows, errors) comes from the heartbeat
of the runner that holds the poll lease; after a take-over the newest poll wins.

Exceptions are not taken from heartbeats: a runner only knows how many records it parked since
it started, not whether a person has decided them since. The operator reads the exception stream
(`review_metrics` in the handlers) and records, per revision, how many records it holds and how
many of those wait for a decision; the same numbers `onceflow exceptions list` shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from onceflow_runner.contract.messages import Heartbeat

__all__ = ["MAX_REVISIONS", "ExceptionCount", "FigureBook", "exception_counts"]

#: Revisions listed in `status.figures.revisions` (newest first), as the CRD bounds the list.
MAX_REVISIONS = 10


@dataclass(frozen=True)
class ExceptionCount:
    """Records of one revision in the exception stream: all of them, and those still waiting."""

    total: int = 0
    waiting: int = 0


class _Parked(Protocol):
    @property
    def revision(self) -> str: ...

    @property
    def decision(self) -> object | None: ...


def exception_counts(records: Iterable[_Parked]) -> dict[str, ExceptionCount]:
    """Per revision, how many parked records the stream holds and how many wait for a decision."""
    totals: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for record in records:
        totals[record.revision] = totals.get(record.revision, 0) + 1
        if record.decision is None:
            waiting[record.revision] = waiting.get(record.revision, 0) + 1
    return {revision: ExceptionCount(total, waiting.get(revision, 0)) for revision, total in totals.items()}


@dataclass
class FigureBook:
    """Latest heartbeat per (namespace, integration, revision, pod); exception counts per Integration."""

    stale_after: float = 30.0
    _beats: dict[tuple[str, str, str, str], tuple[float, Heartbeat]] = field(default_factory=dict)
    _exceptions: dict[tuple[str, str], dict[str, ExceptionCount]] = field(default_factory=dict)

    def record(self, namespace: str, beat: Heartbeat | Mapping[str, Any], *, now: float | None = None) -> None:
        """Keep a pod's newest heartbeat (a mapping is read as a Heartbeat; WireFormatError if it is not one)."""
        if not isinstance(beat, Heartbeat):
            beat = Heartbeat.from_dict(beat)
        key = (namespace, beat.integration, beat.revision, beat.pod)
        self._beats[key] = (now if now is not None else time.monotonic(), beat)

    def record_exceptions(self, namespace: str, integration: str, counts: Mapping[str, ExceptionCount]) -> None:
        """Replace an Integration's exception counts with a fresh reading of the stream."""
        self._exceptions[(namespace, integration)] = dict(counts)

    def figures(
        self,
        namespace: str,
        integration: str,
        numbers: Mapping[str, int] | None = None,
        *,
        now: float | None = None,
    ) -> dict[str, Any] | None:
        """Status `figures`: the whole Integration and each revision; None before anything reported.

        `numbers` are the revisions' numbers (from their ControllerRevisions): they order the
        per-revision list newest first; revisions without one (pruned) come last.
        """
        now = now if now is not None else time.monotonic()
        numbers = numbers or {}
        beats = [(r, t, b) for (ns, i, r, _), (t, b) in self._beats.items() if (ns, i) == (namespace, integration)]
        exceptions = self._exceptions.get((namespace, integration))
        if not beats and exceptions is None:
            return None
        revisions = {r for r, _, _ in beats} | set(exceptions or {})
        rows = [
            self._revision_row(r, [b for rr, _, b in beats if rr == r], (exceptions or {}).get(r), numbers.get(r))
            for r in revisions
        ]
        rows.sort(key=lambda row: (row.get("number") is None, -(row.get("number") or 0), row["revision"]))
        fresh = [b for _, t, b in beats if now - t <= self.stale_after]
        out: dict[str, Any] = {
            key: sum(int(row[key]) for row in rows) for key in ("processed", "failed", "deadLettered")
        }
        if exceptions is not None:
            out["exceptions"] = sum(c.total for c in exceptions.values())
            out["exceptionsWaiting"] = sum(c.waiting for c in exceptions.values())
        out["consumerLag"] = max((b.consumer_lag for b in fresh), default=0)  # the slower lane's backlog
        out["consumerLagGrowth"] = max((b.consumer_lag_growth for b in fresh), default=0.0)
        successes = [row["lastSuccessTime"] for row in rows if row.get("lastSuccessTime")]
        if successes:
            out["lastSuccessTime"] = max(successes)
        out["revisions"] = rows[:MAX_REVISIONS]
        polled = [b.poll for _, _, b in beats if b.poll is not None and b.poll.last_poll_time]
        if polled:  # the lease holder reports; after a take-over, the newest poll is the one to show
            out["poll"] = max(polled, key=lambda p: p.last_poll_time or "").to_dict()
        return out

    @staticmethod
    def _revision_row(
        revision: str, beats: list[Heartbeat], exceptions: ExceptionCount | None, number: int | None
    ) -> dict[str, Any]:
        totals: dict[str, int] = {}
        for beat in beats:
            for outcome, count in beat.totals.items():
                totals[outcome] = totals.get(outcome, 0) + count
        row: dict[str, Any] = {"revision": revision}
        if number is not None:
            row["number"] = number
        row.update(
            processed=totals.get("completed", 0),
            failed=totals.get("transient", 0) + totals.get("exception", 0) + totals.get("deadLetter", 0),
            deadLettered=totals.get("deadLetter", 0),
        )
        if exceptions is not None:
            row.update(exceptions=exceptions.total, exceptionsWaiting=exceptions.waiting)
        successes = [b.last_success_time for b in beats if b.last_success_time]
        if successes:
            row["lastSuccessTime"] = max(successes)
        return row

    def analysis(
        self, namespace: str, integration: str, revision: str, *, now: float | None = None
    ) -> dict[str, float] | None:
        """The `result` a canary analysis sees: one revision's last-minute window over its live pods.

        Ratios are weighted by each pod's record count, throughput is summed, p95 is the worst pod's.
        None when no live pod of the revision settled a record in the window (no data is no verdict).
        """
        now = now if now is not None else time.monotonic()
        live = [
            b
            for (ns, i, r, _), (t, b) in self._beats.items()
            if (ns, i, r) == (namespace, integration, revision) and now - t <= self.stale_after
        ]
        count = sum(b.count for b in live)
        if count == 0:
            return None
        return {
            "count": count,
            "errorRatio": round(sum(b.error_ratio * b.count for b in live) / count, 4),
            "exceptionRatio": round(sum(b.exception_ratio * b.count for b in live) / count, 4),
            "p95LatencyMs": max(b.p95_latency_ms for b in live),
            "throughput": round(sum(b.throughput for b in live), 3),
        }
