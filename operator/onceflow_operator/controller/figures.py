"""Business figures for Integration status, from the runners' stats heartbeats (pure).

Each runner process sends its cumulative counts every few seconds. The operator keeps the latest
heartbeat per pod and sums the pods of one revision; a pod silent for longer than `stale_after`
no longer counts toward lag (its counts stay, they happened). Heartbeats arrive typed
(`contract.messages.Heartbeat`, parsed by `natsio.subscribe_stats`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onceflow_runner.contract.messages import Heartbeat

__all__ = ["FigureBook"]


@dataclass
class FigureBook:
    """Latest heartbeat per (namespace, integration, revision, pod)."""

    stale_after: float = 30.0
    _beats: dict[tuple[str, str, str, str], tuple[float, Heartbeat]] = field(default_factory=dict)

    def record(self, namespace: str, beat: Heartbeat | Mapping[str, Any], *, now: float | None = None) -> None:
        """Keep a pod's newest heartbeat (a mapping is read as a Heartbeat; WireFormatError if it is not one)."""
        if not isinstance(beat, Heartbeat):
            beat = Heartbeat.from_dict(beat)
        key = (namespace, beat.integration, beat.revision, beat.pod)
        self._beats[key] = (now if now is not None else time.monotonic(), beat)

    def figures(
        self, namespace: str, integration: str, revision: str, *, now: float | None = None
    ) -> dict[str, Any] | None:
        """Status `figures` for one revision, or None when no runner of it has reported."""
        now = now if now is not None else time.monotonic()
        beats = [
            (t, b) for (ns, i, r, _), (t, b) in self._beats.items() if (ns, i, r) == (namespace, integration, revision)
        ]
        if not beats:
            return None
        totals: dict[str, int] = {}
        for _, beat in beats:
            for outcome, count in beat.totals.items():
                totals[outcome] = totals.get(outcome, 0) + count
        fresh = [b for t, b in beats if now - t <= self.stale_after]
        successes = [b.last_success_time for _, b in beats if b.last_success_time]
        out: dict[str, Any] = {
            "processed": totals.get("completed", 0),
            "failed": totals.get("transient", 0) + totals.get("exception", 0) + totals.get("deadLetter", 0),
            "exceptions": totals.get("exception", 0) + totals.get("parked", 0),
            "deadLettered": totals.get("deadLetter", 0),
            "consumerLag": max((b.consumer_lag for b in fresh), default=0),
        }
        if successes:
            out["lastSuccessTime"] = max(successes)
        return out

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
