"""Exceptions and decisions: what operations people see and do (`onceflow exceptions`, `trace`).

An exception is immutable: the runner stored the original bytes with why, where and which
revision. A decision (retry, approve, edit, discard, reject) is a separate record in
`onceflow.<ns>.decisions.<integration>`, keyed by the exception's sequence, so "waiting" means
"no decision yet" and the history stays complete. Retry, approve and edit send the original (or
edited) bytes back to the subject they first arrived on, marked with the decision; the record
then goes through its Integration once more, and its business key and idempotency keys make
that at most one effect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from nats.js import JetStreamContext

from onceflow_runner.adapters import natsio

__all__ = [
    "Decision",
    "ExceptionRecord",
    "ReviewError",
    "ReviewFigures",
    "decide",
    "list_exceptions",
    "review_figures",
    "trace",
    "with_fix",
]

Action = Literal["retry", "approve", "edit", "discard", "reject"]
_RESENDS = {"retry": "retried", "approve": "approved", "edit": "edited"}


class ReviewError(Exception):
    """A decision cannot be made; the message says why."""


@dataclass(frozen=True)
class ExceptionRecord:
    """One record waiting for (or decided by) a person."""

    sequence: int
    integration: str
    reason: str
    step: str
    error: str
    business_key: str
    revision: str
    time: str
    payload: bytes
    candidates: list[dict[str, Any]]
    decision: dict[str, Any] | None
    #: A rule's suggested fix, {"field", "value"}: shown to the reviewer, applied only by their decision.
    suggestion: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "integration": self.integration,
            "reason": self.reason,
            "step": self.step,
            "businessKey": self.business_key,
            "error": self.error,
            "revision": self.revision,
            "time": self.time,
            "decision": self.decision,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True)
class Decision:
    """What a person decided about one exception."""

    exception_sequence: int
    action: str
    who: str
    why: str
    time: str


def _record(msg: natsio.StoredMessage, decisions: dict[int, dict[str, Any]]) -> ExceptionRecord:
    h = msg.headers
    try:
        candidates = json.loads(h.get("Onceflow-Candidates", "[]"))
    except ValueError:
        candidates = []
    try:
        suggestion = json.loads(h["Onceflow-Suggestion"]) if "Onceflow-Suggestion" in h else None
    except ValueError:
        suggestion = None
    return ExceptionRecord(
        msg.sequence,
        h.get("Onceflow-Integration", ""),
        h.get("Onceflow-Reason", ""),
        h.get("Onceflow-Step", ""),
        h.get("Onceflow-Error", ""),
        h.get("Onceflow-Business-Key", ""),
        h.get("Onceflow-Revision", ""),
        msg.time,
        msg.data,
        candidates,
        decisions.get(msg.sequence),
        suggestion if isinstance(suggestion, dict) else None,
    )


async def _decisions(js: JetStreamContext, namespace: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for msg in await natsio.read_stream(js, "ONCEFLOW_DECISIONS", f"onceflow.{namespace}.decisions.>"):
        entry = json.loads(msg.data)
        out.setdefault(int(entry["exceptionSequence"]), entry)  # the first decision stands
    return out


async def list_exceptions(
    js: JetStreamContext,
    namespace: str,
    *,
    integration: str | None = None,
    reason: str | None = None,
    business_key: str | None = None,
    include_decided: bool = False,
) -> list[ExceptionRecord]:
    """Exceptions of a namespace (by default only those still waiting), oldest first."""
    decisions = await _decisions(js, namespace)
    subject = f"onceflow.{namespace}.exceptions.{integration or '*'}"
    records = [_record(m, decisions) for m in await natsio.read_stream(js, "ONCEFLOW_EXCEPTIONS", subject)]
    return [
        r
        for r in records
        if (include_decided or r.decision is None)
        and (reason is None or r.reason == reason)
        and (business_key is None or r.business_key == business_key)
    ]


async def get_exception(js: JetStreamContext, namespace: str, sequence: int) -> ExceptionRecord:
    msg = await natsio.get_stored(js, "ONCEFLOW_EXCEPTIONS", sequence)
    if msg is None or not msg.subject.startswith(f"onceflow.{namespace}.exceptions."):
        raise ReviewError(f"no exception {sequence} in namespace {namespace}")
    return _record(msg, await _decisions(js, namespace))


async def decide(
    js: JetStreamContext,
    namespace: str,
    sequence: int,
    action: Action,
    *,
    who: str,
    why: str,
    payload: bytes | None = None,
) -> Decision:
    """Record a decision and, for retry/approve/edit, send the record through its Integration again."""
    record = await get_exception(js, namespace, sequence)
    if record.decision is not None:
        d = record.decision
        raise ReviewError(f"exception {sequence} was already decided: {d['action']} by {d['who']} at {d['time']}")
    if action == "edit" and payload is None:
        raise ReviewError("edit needs the corrected payload")
    now = datetime.now(UTC).isoformat()
    decision = Decision(sequence, action, who, why, now)
    entry = {
        "exceptionSequence": sequence,
        "action": action,
        "who": who,
        "why": why,
        "time": now,
        "integration": record.integration,
        "businessKey": record.business_key,
        "reason": record.reason,
    }
    await js.publish(
        f"onceflow.{namespace}.decisions.{record.integration}",
        json.dumps(entry).encode(),
        headers={"Nats-Msg-Id": f"decision/{namespace}/{sequence}"},
    )
    if action in _RESENDS:
        stored = await natsio.get_stored(js, "ONCEFLOW_EXCEPTIONS", sequence)
        assert stored is not None
        headers = {k: v for k, v in stored.headers.items() if not k.startswith("Onceflow-") and k != "Nats-Msg-Id"}
        for keep in ("Onceflow-Origin", "Onceflow-Event", "Onceflow-Delivery-Id"):
            if keep in stored.headers:
                headers[keep] = stored.headers[keep]
        headers.update(
            {
                "Onceflow-Decision": _RESENDS[action],
                "Onceflow-Decided-By": who,
                "Nats-Msg-Id": f"resend/{namespace}/{sequence}",
            }
        )
        subject = stored.headers.get("Onceflow-Original-Subject", "")
        if not subject:
            raise ReviewError(f"exception {sequence} does not say where it came from; it cannot be resent")
        await js.publish(subject, payload if payload is not None else stored.data, headers=headers)
    audit = {
        "time": now,
        "integration": record.integration,
        "businessKey": record.business_key,
        "outcome": "decision",
        "detail": f"{action} by {who}: {why}",
        "exceptionSequence": sequence,
    }
    await js.publish(f"onceflow.{namespace}.audit.{record.integration}", json.dumps(audit).encode())
    return decision


async def trace(js: JetStreamContext, namespace: str, business_key: str) -> list[dict[str, Any]]:
    """Everything recorded about one business key, in time order: steps, exceptions, decisions."""
    events: list[dict[str, Any]] = []
    for msg in await natsio.read_stream(js, "ONCEFLOW_AUDIT", f"onceflow.{namespace}.audit.>"):
        entry = json.loads(msg.data)
        if entry.get("businessKey") == business_key:
            events.append({"kind": "audit", **entry})
    for record in await list_exceptions(js, namespace, business_key=business_key, include_decided=True):
        events.append({"kind": "exception", "time": record.time, **record.summary()})
    return sorted(events, key=lambda e: str(e.get("time", "")))


@dataclass(frozen=True)
class ReviewFigures:
    """How the people side of one Integration is doing, for metrics and alerts."""

    waiting_by_reason: dict[str, int]
    oldest_waiting_seconds: float
    decisions_last_hour: dict[str, int]
    mean_seconds_to_decision_last_hour: float


def with_fix(payload: bytes, suggestion: dict[str, Any]) -> bytes | None:
    """The payload with a suggested fix applied (for the reviewer to look at and send); None if it does not fit."""
    try:
        doc = json.loads(payload)
    except ValueError:
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


def _when(stamp: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def review_figures(records: list[ExceptionRecord], now: datetime) -> ReviewFigures:
    """Waiting exceptions by reason and the oldest one's age; decisions and time to decision in the last hour."""
    waiting: dict[str, int] = {}
    oldest = 0.0
    decided: dict[str, int] = {}
    delays: list[float] = []
    for record in records:
        parked = _when(record.time)
        if record.decision is None:
            waiting[record.reason] = waiting.get(record.reason, 0) + 1
            if parked is not None:
                oldest = max(oldest, (now - parked).total_seconds())
            continue
        at = _when(str(record.decision.get("time", "")))
        if at is None or (now - at).total_seconds() > 3600:
            continue
        action = str(record.decision.get("action", ""))
        decided[action] = decided.get(action, 0) + 1
        if parked is not None:
            delays.append((at - parked).total_seconds())
    mean = sum(delays) / len(delays) if delays else 0.0
    return ReviewFigures(waiting, oldest, decided, mean)
