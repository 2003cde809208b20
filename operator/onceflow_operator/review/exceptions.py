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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext

from onceflow_runner.adapters import natsio
from onceflow_runner.contract import subjects
from onceflow_runner.contract.headers import NATS_MSG_ID
from onceflow_runner.contract.messages import AuditEntry, ParkedRecord, ReviewAction, ReviewDecision
from onceflow_runner.contract.timestamps import parse_time
from onceflow_runner.errors import WireFormatError

__all__ = [
    "ExceptionRecord",
    "ReviewError",
    "ReviewFigures",
    "decide",
    "get_exception",
    "list_exceptions",
    "review_figures",
    "trace",
    "with_fix",
]


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
    decision: ReviewDecision | None
    #: A rule's suggested fix, {"field", "value"}: shown to the reviewer, applied only by their decision.
    suggestion: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Callers that built records before decisions were typed pass the decision's wire dict.
        if isinstance(self.decision, Mapping):
            decided = ReviewDecision.from_dict({"exceptionSequence": self.sequence, **self.decision})
            object.__setattr__(self, "decision", decided)

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
            "decision": self.decision.to_dict() if self.decision is not None else None,
            "suggestion": self.suggestion,
        }


def _record(msg: natsio.StoredMessage, decisions: Mapping[int, ReviewDecision]) -> ExceptionRecord:
    try:
        parked = ParkedRecord.from_headers(msg.headers)
    except WireFormatError as exc:
        raise ReviewError(f"{msg.stream} message {msg.sequence} on {msg.subject}: {exc}") from None
    return ExceptionRecord(
        msg.sequence,
        parked.integration,
        parked.reason,
        parked.step,
        parked.error,
        parked.business_key,
        parked.revision,
        msg.time,
        msg.data,
        parked.candidates,
        decisions.get(msg.sequence),
        parked.suggestion,
    )


async def _decisions(js: JetStreamContext, namespace: str) -> dict[int, ReviewDecision]:
    out: dict[int, ReviewDecision] = {}
    subject = subjects.decisions_subject(namespace, subjects.ANY_TAIL)
    for msg in await natsio.read_stream(js, subjects.DECISIONS_STREAM, subject):
        try:
            decision = ReviewDecision.from_wire(msg.data)
        except WireFormatError as exc:
            raise ReviewError(f"{msg.stream} message {msg.sequence} on {msg.subject}: {exc}") from None
        out.setdefault(decision.exception_sequence, decision)  # the first decision stands
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
    subject = subjects.exceptions_subject(namespace, integration or subjects.ANY_TOKEN)
    records = [_record(m, decisions) for m in await natsio.read_stream(js, subjects.EXCEPTIONS_STREAM, subject)]
    return [
        r
        for r in records
        if (include_decided or r.decision is None)
        and (reason is None or r.reason == reason)
        and (business_key is None or r.business_key == business_key)
    ]


async def get_exception(js: JetStreamContext, namespace: str, sequence: int) -> ExceptionRecord:
    """One exception of a namespace, with its decision if there is one; ReviewError when there is none."""
    msg = await natsio.get_stored(js, subjects.EXCEPTIONS_STREAM, sequence)
    if msg is None or not subjects.subject_matches(
        subjects.exceptions_subject(namespace, subjects.ANY_TOKEN), msg.subject
    ):
        raise ReviewError(f"no exception {sequence} in namespace {namespace}")
    return _record(msg, await _decisions(js, namespace))


async def decide(
    js: JetStreamContext,
    namespace: str,
    sequence: int,
    action: ReviewAction,
    *,
    who: str,
    why: str,
    payload: bytes | None = None,
) -> ReviewDecision:
    """Record a decision and, for retry/approve/edit, send the record through its Integration again."""
    record = await get_exception(js, namespace, sequence)
    if record.decision is not None:
        d = record.decision
        raise ReviewError(f"exception {sequence} was already decided: {d.action} by {d.who} at {d.time}")
    if action == "edit" and payload is None:
        raise ReviewError("edit needs the corrected payload")
    decision = ReviewDecision(
        exception_sequence=sequence,
        action=action,
        who=who,
        why=why,
        time=datetime.now(UTC).isoformat(),
        integration=record.integration,
        business_key=record.business_key,
        reason=record.reason,
    )
    await js.publish(
        subjects.decisions_subject(namespace, record.integration),
        decision.to_wire(),
        headers={NATS_MSG_ID: f"decision/{namespace}/{sequence}"},
    )
    if decision.resends:
        stored = await natsio.get_stored(js, subjects.EXCEPTIONS_STREAM, sequence)
        assert stored is not None
        subject = ParkedRecord.from_headers(stored.headers).original_subject
        if not subject:
            raise ReviewError(f"exception {sequence} does not say where it came from; it cannot be resent")
        headers = decision.resend_headers(stored.headers, namespace)
        await js.publish(subject, payload if payload is not None else stored.data, headers=headers)
    audit = AuditEntry(
        time=decision.time,
        integration=record.integration,
        business_key=record.business_key,
        outcome="decision",
        detail=f"{action} by {who}: {why}",
        exception_sequence=sequence,
    )
    await js.publish(subjects.audit_subject(namespace, record.integration), audit.to_wire())
    return decision


async def trace(js: JetStreamContext, namespace: str, business_key: str) -> list[dict[str, Any]]:
    """Everything recorded about one business key, in time order: steps, exceptions, decisions."""
    events: list[dict[str, Any]] = []
    subject = subjects.audit_subject(namespace, subjects.ANY_TAIL)
    for msg in await natsio.read_stream(js, subjects.AUDIT_STREAM, subject):
        try:
            entry = AuditEntry.from_wire(msg.data)
        except WireFormatError as exc:
            raise ReviewError(f"{msg.stream} message {msg.sequence} on {msg.subject}: {exc}") from None
        if entry.business_key == business_key:
            events.append({"kind": "audit", **entry.to_dict()})
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


def review_figures(records: list[ExceptionRecord], now: datetime) -> ReviewFigures:
    """Waiting exceptions by reason and the oldest one's age; decisions and time to decision in the last hour."""
    waiting: dict[str, int] = {}
    oldest = 0.0
    decided: dict[str, int] = {}
    delays: list[float] = []
    for record in records:
        parked = parse_time(record.time)
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
    return ReviewFigures(waiting, oldest, decided, mean)
