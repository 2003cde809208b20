"""The reading side of review: exceptions as people see them, with their decisions, and a key's trace.

An exception is immutable: the runner stored the original bytes with why, where and which
revision. Its decision is a separate record in the decisions stream, so "waiting" means "no
decision yet" and the history stays complete. Every read here goes to the end of its stream
(`reading.read_all` pages through and never stops at a count), so a decided record never
looks undecided because a stream grew. A possible duplicate's candidates are stored in full in a
message of their own; `get_exception` reads them, listings do not (they show no candidates).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from nats.js import JetStreamContext

from onceflow_operator.review.errors import ReviewError
from onceflow_operator.review.reading import first_on, read_all
from onceflow_runner.adapters import natsio
from onceflow_runner.contract import subjects
from onceflow_runner.contract.headers import REFLECTED
from onceflow_runner.contract.messages import AuditEntry, ParkedCandidates, ParkedRecord, ReviewDecision
from onceflow_runner.errors import WireFormatError

log = logging.getLogger(__name__)

__all__ = ["ExceptionRecord", "get_exception", "list_exceptions", "trace", "with_candidates"]


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
    #: The namespace it was parked in (from its subject), for listings across namespaces.
    namespace: str = ""
    #: The SyncPolicy entity of a possible duplicate ("" for other exceptions).
    entity: str = ""
    #: Candidates the runner left out to fit NATS's largest message (the weakest ones).
    candidates_omitted: int = 0
    #: Stream sequence of the message holding the candidates in full (0: none, or in the old header).
    candidates_at: int = 0
    #: The record as the dedupe step matched it (canonical), when the candidates message has it.
    matched: Any = None
    #: The record's sequence in the stream its Integration reads (its candidates message names it too).
    stream_sequence: int = 0

    def __post_init__(self) -> None:
        # Callers that built records before decisions were typed pass the decision's wire dict.
        if isinstance(self.decision, Mapping):
            decided = ReviewDecision.from_dict({"exceptionSequence": self.sequence, **self.decision})
            object.__setattr__(self, "decision", decided)

    def summary(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "namespace": self.namespace,
            "integration": self.integration,
            "reason": self.reason,
            "step": self.step,
            "businessKey": self.business_key,
            "error": self.error,
            "revision": self.revision,
            "time": self.time,
            "decision": self.decision.to_dict() if self.decision is not None else None,
            "suggestion": self.suggestion,
            "entity": self.entity,
        }


def _unreadable(msg: natsio.StoredMessage, exc: WireFormatError) -> ReviewError:
    return ReviewError(f"{msg.stream} message {msg.sequence} on {msg.subject}: {exc}")


def parked_of(msg: natsio.StoredMessage) -> ParkedRecord:
    """Why a stored exception waits; ReviewError when the message is not a parked record."""
    try:
        return ParkedRecord.from_headers(msg.headers)
    except WireFormatError as exc:
        raise _unreadable(msg, exc) from None


def _record(msg: natsio.StoredMessage, decision: ReviewDecision | None) -> ExceptionRecord:
    parked = parked_of(msg)
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
        decision,
        parked.suggestion,
        _namespace_of(msg.subject),
        parked.entity,
        candidates_at=parked.candidates_at,
        stream_sequence=parked.stream_sequence,
    )


async def with_candidates(js: JetStreamContext, namespace: str, record: ExceptionRecord) -> ExceptionRecord:
    """The record with its candidates in full, read from the message the runner stored them in.

    Only a message on the record's own Integration's candidates subject that explains this very
    record (its stream sequence) counts: another namespace's message, or another record's, at that
    sequence is never shown. A message gone by the stream's limits, or one that is no candidates
    message, leaves the record without candidates, as an old header cut short did; the record can
    still be opened and decided (without a verdict).
    """
    if not record.candidates_at:
        return record
    msg = await natsio.get_stored(js, subjects.EXCEPTIONS_STREAM, record.candidates_at)
    if msg is None or msg.subject != subjects.exception_candidates_subject(namespace, record.integration):
        return record
    try:
        stored = ParkedCandidates.from_wire(msg.data)
    except WireFormatError:
        return record
    if stored.stream_sequence != record.stream_sequence:
        return record
    return replace(record, candidates=stored.candidates, candidates_omitted=stored.omitted, matched=stored.record)


def _namespace_of(subject: str) -> str:
    try:
        return subjects.namespace_of(subject)
    except ValueError:
        return ""


def trusted_decision(msg: natsio.StoredMessage) -> ReviewDecision | None:
    """The decision a stored message holds, or None when it is not one review wrote (it is then ignored).

    Why not trust whatever is on a decisions subject: NATS checks no permission on a reply
    subject, so a namespace's user can have JetStream store its answers there (a publish ack, an
    API response, or a direct get of the user's own record; docs/install.md, "What per-namespace
    users do not stop"). Such a message must neither block a namespace's exception list (it is
    no decision) nor pass for one: it is unreadable, carries a direct get's headers, or names
    another Integration or exception than the subject it is on.
    """
    if any(header in msg.headers for header in REFLECTED):
        return None
    try:
        decision = ReviewDecision.from_wire(msg.data)
    except WireFormatError:
        return None
    tokens = msg.subject.split(".")  # onceflow.<ns>.decisions.<integration>[.<sequence>]
    if len(tokens) >= 4 and decision.integration and decision.integration != tokens[3]:
        return None
    if len(tokens) == 5 and tokens[4] != str(decision.exception_sequence):
        return None
    return decision


def _ignored(msg: natsio.StoredMessage) -> None:
    log.warning(
        "ignoring a message on a decisions subject that review did not write",
        extra={"stream": msg.stream, "sequence": msg.sequence, "subject": msg.subject},
    )


async def _decisions(js: JetStreamContext, namespace: str) -> dict[int, ReviewDecision]:
    out: dict[int, ReviewDecision] = {}
    subject = subjects.decisions_subject(namespace, subjects.ANY_TAIL)
    for msg in await read_all(js, subjects.DECISIONS_STREAM, subject):
        decision = trusted_decision(msg)
        if decision is None:
            _ignored(msg)
            continue
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
    """Exceptions of a namespace (`subjects.ANY_TOKEN`: of every one), by default only those waiting, oldest first."""
    decisions = await _decisions(js, namespace)
    subject = subjects.exceptions_subject(namespace, integration or subjects.ANY_TOKEN)
    records = [_record(m, decisions.get(m.sequence)) for m in await read_all(js, subjects.EXCEPTIONS_STREAM, subject)]
    return [
        r
        for r in records
        if (include_decided or r.decision is None)
        and (reason is None or r.reason == reason)
        and (business_key is None or r.business_key == business_key)
    ]


async def stored_exception(js: JetStreamContext, namespace: str, sequence: int) -> natsio.StoredMessage:
    """The stored message of one exception of a namespace; ReviewError when the namespace has none by that number."""
    msg = await natsio.get_stored(js, subjects.EXCEPTIONS_STREAM, sequence)
    if msg is None or not subjects.subject_matches(
        subjects.exceptions_subject(namespace, subjects.ANY_TOKEN), msg.subject
    ):
        raise ReviewError(f"no exception {sequence} in namespace {namespace}")
    return msg


async def decision_about(
    js: JetStreamContext, namespace: str, integration: str, sequence: int
) -> ReviewDecision | None:
    """The decision about one exception, or None while it waits.

    Read from the exception's own decision subject (one request); decisions written before
    decisions had their own subject are looked up among the Integration's older ones. Should
    both exist, the one stored first stands.
    """
    found: list[tuple[int, ReviewDecision]] = []
    subject = subjects.exception_decision_subject(namespace, integration, sequence)
    own = await first_on(js, subjects.DECISIONS_STREAM, subject)
    candidates = [own] if own is not None else []
    if own is not None and trusted_decision(own) is None:  # something else came first: read them all
        _ignored(own)
        candidates = await read_all(js, subjects.DECISIONS_STREAM, subject)
    for msg in candidates:
        decision = trusted_decision(msg)
        if decision is not None:
            found.append((msg.sequence, decision))
            break
    older = subjects.decisions_subject(namespace, integration)
    for msg in await read_all(js, subjects.DECISIONS_STREAM, older):
        decision = trusted_decision(msg)
        if decision is not None and decision.exception_sequence == sequence:
            found.append((msg.sequence, decision))
            break
    return min(found, key=lambda pair: pair[0])[1] if found else None


async def get_exception(js: JetStreamContext, namespace: str, sequence: int) -> ExceptionRecord:
    """One exception of a namespace, with its decision if there is one; ReviewError when there is none."""
    msg = await stored_exception(js, namespace, sequence)
    record = _record(msg, await decision_about(js, namespace, parked_of(msg).integration, sequence))
    return await with_candidates(js, namespace, record)


async def trace(js: JetStreamContext, namespace: str, business_key: str) -> list[dict[str, Any]]:
    """Everything recorded about one business key, in time order: steps, exceptions, decisions."""
    events: list[dict[str, Any]] = []
    subject = subjects.audit_subject(namespace, subjects.ANY_TAIL)
    for msg in await read_all(js, subjects.AUDIT_STREAM, subject):
        try:
            entry = AuditEntry.from_wire(msg.data)
        except WireFormatError as exc:
            raise _unreadable(msg, exc) from None
        if entry.business_key == business_key:
            events.append({"kind": "audit", **entry.to_dict()})
    for record in await list_exceptions(js, namespace, business_key=business_key, include_decided=True):
        events.append({"kind": "exception", "time": record.time, **record.summary()})
    return sorted(events, key=lambda e: str(e.get("time", "")))
