"""The writing side of review: a person's decision about one exception, and the record sent again.

A decision (retry, approve, edit, discard, reject) is recorded in
`onceflow.<ns>.decisions.<integration>`, keyed by the exception's sequence. Retry, approve and
edit send the original (or edited) bytes back to the subject they first arrived on, marked with
the decision; the record then goes through its Integration once more, and its business key and
idempotency keys make that at most one effect.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext

from onceflow_operator.review.errors import AlreadyDecided, ReviewError
from onceflow_operator.review.records import get_exception, parked_of, stored_exception
from onceflow_runner.contract import subjects
from onceflow_runner.contract.headers import NATS_MSG_ID
from onceflow_runner.contract.messages import AuditEntry, ReviewAction, ReviewDecision

__all__ = ["decide"]


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
        raise AlreadyDecided(record.decision)
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
        stored = await stored_exception(js, namespace, sequence)
        subject = parked_of(stored).original_subject
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
