"""The writing side of review: a person's decision about one exception, and the record sent again.

A decision (retry, approve, edit, discard, reject) is recorded on the exception's own subject,
`onceflow.<ns>.decisions.<integration>.<sequence>`, compare-and-set: JetStream stores it only if
nothing is stored there yet (`Nats-Expected-Last-Subject-Sequence: 0`). Two reviewers deciding
at once therefore cannot both win: the second is told who decided what (`AlreadyDecided`), and
only the winner sends anything. Retry, approve and edit send the original (or edited) bytes back
to the subject they first arrived on, marked with the decision; the record then goes through its
Integration once more, and its business key and idempotency keys make that at most one effect.
A record is only ever sent back into its own namespace: one whose original subject names another
is refused before anything is recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import APIError

from onceflow_operator.review.errors import AlreadyDecided, ReviewError
from onceflow_operator.review.reading import read_all
from onceflow_operator.review.records import (
    ExceptionRecord,
    decision_about,
    get_exception,
    parked_of,
    stored_exception,
)
from onceflow_runner.contract import subjects
from onceflow_runner.contract.headers import EXPECTED_LAST_SUBJECT_SEQUENCE
from onceflow_runner.contract.messages import AuditEntry, MatchVerdict, ReviewAction, ReviewDecision

__all__ = ["decide"]

#: JetStream's error code when `Nats-Expected-Last-Subject-Sequence` does not hold (JSStreamWrongLastSequenceErrF).
_WRONG_LAST_SEQUENCE = 10071


def _is_inside(subject: str, namespace: str) -> bool:
    """True when `subject` lies under `onceflow.<namespace>.` (tenancy: a decision stays in its namespace)."""
    try:
        return subjects.namespace_of(subject) == namespace
    except ValueError:
        return False


async def _record_first(js: JetStreamContext, namespace: str, decision: ReviewDecision) -> None:
    """Store the decision unless one is stored already; AlreadyDecided (naming the first) if so."""
    sequence = decision.exception_sequence
    subject = subjects.exception_decision_subject(namespace, decision.integration, sequence)
    expected = 0
    for _ in range(3):
        try:
            await js.publish(subject, decision.to_wire(), headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected)})
            return
        except APIError as exc:
            if exc.err_code != _WRONG_LAST_SEQUENCE:
                raise
        first = await decision_about(js, namespace, decision.integration, sequence)
        if first is not None:
            raise AlreadyDecided(first) from None
        # Only messages review did not write are there (reflected by a namespace's user, see
        # `records.trusted_decision`): still compare-and-set, after the last of them.
        stored = await read_all(js, subjects.DECISIONS_STREAM, subject)
        if not stored:  # stored, then gone (the stream's max age): still not ours to make
            break
        expected = stored[-1].sequence
    raise ReviewError(f"exception {sequence} was decided by someone else; nothing was sent")


def _verdict_words(decision: ReviewDecision) -> str:
    if decision.verdict == "same" and decision.same_as is not None:
        return f" (same as candidate {decision.same_as + 1})"
    return " (not the same as any candidate)" if decision.verdict == "notSame" else ""


def _check_verdict(
    record: ExceptionRecord, action: ReviewAction, verdict: MatchVerdict | None, same_as: int | None
) -> None:
    """ReviewError unless the verdict fits the record (it has candidates) and the action (see `decide`)."""
    if verdict is None:
        if same_as is not None:
            raise ReviewError("same_as needs the verdict 'same'")
        return
    if not record.candidates:
        raise ReviewError(f"exception {record.sequence} has no duplicate candidates to be the same as or not")
    if verdict == "same":
        if same_as is None or not 0 <= same_as < len(record.candidates):
            raise ReviewError(
                f"say which candidate it is the same as: 1 to {len(record.candidates)} (exception {record.sequence})"
            )
        if action not in ("reject", "discard"):
            raise ReviewError("a record that is the same as an existing one is rejected or discarded, not sent on")
    else:
        if same_as is not None:
            raise ReviewError("'not the same' names no candidate")
        if action not in ("approve", "edit"):
            # Not retry: it carries no approval of the duplicate check, so the record would match
            # the same candidates and be parked again with the same question.
            raise ReviewError(
                "a record that is none of its candidates goes on past the duplicate check: approve it "
                "(or edit it, and it is checked again); retry would park it again"
            )


async def decide(
    js: JetStreamContext,
    namespace: str,
    sequence: int,
    action: ReviewAction,
    *,
    who: str,
    why: str,
    payload: bytes | None = None,
    verdict: MatchVerdict | None = None,
    same_as: int | None = None,
) -> ReviewDecision:
    """Record a decision and, for retry/approve/edit, send the record through its Integration again.

    On a parked duplicate the decision may also say whether the record is the same as one of its
    candidates (`verdict` "same" with the candidate's 0-based index `same_as`, decided as reject
    or discard: nothing is created) or none of them ("notSame", decided as approve: it goes on to
    be created; or edit: the corrected record is checked again). That verdict is kept with the
    decision and read as labels (`review.labels`).

    Raises:
        AlreadyDecided: someone decided first (before this call, or at the same moment); nothing was sent.
        ReviewError: no such exception, or it cannot be sent again (the message says why).
    """
    record = await get_exception(js, namespace, sequence)
    if record.decision is not None:
        raise AlreadyDecided(record.decision)
    if action == "edit" and payload is None:
        raise ReviewError("edit needs the corrected payload")
    _check_verdict(record, action, verdict, same_as)
    stored = await stored_exception(js, namespace, sequence)
    decision = ReviewDecision(
        exception_sequence=sequence,
        action=action,
        who=who,
        why=why,
        time=datetime.now(UTC).isoformat(),
        integration=record.integration,
        business_key=record.business_key,
        reason=record.reason,
        step=record.step,
        **({"verdict": verdict, "same_as": same_as} if verdict is not None else {}),
    )
    resend_to = parked_of(stored).original_subject
    if decision.resends and not resend_to:
        raise ReviewError(f"exception {sequence} does not say where it came from; it cannot be resent")
    if decision.resends and not _is_inside(resend_to, namespace):
        raise ReviewError(
            f"exception {sequence} would be sent to {resend_to!r}, outside namespace {namespace}: refused, "
            "nothing was recorded or sent (a decision never leaves the record's namespace); discard it "
            "and check the Integration that parked it"
        )
    await _record_first(js, namespace, decision)
    if decision.resends:
        headers = decision.resend_headers(stored.headers, namespace)
        await js.publish(resend_to, payload if payload is not None else stored.data, headers=headers)
    audit = AuditEntry(
        time=decision.time,
        integration=record.integration,
        business_key=record.business_key,
        outcome="decision",
        detail=f"{action}{_verdict_words(decision)} by {who}: {why}",
        exception_sequence=sequence,
    )
    await js.publish(subjects.audit_subject(namespace, record.integration), audit.to_wire())
    return decision
