"""The typed messages both planes write and read on NATS, besides the plan (pure).

Each model is used by its writer *and* its reader, with one method to put it on the wire and one
to read it back, so a field is named once:

    RecordHeaders   gateway, review resend  -> runner          headers of a record to settle
    Heartbeat       runner                  -> operator        figures and canary analysis
    AuditEntry      runner, review decide   -> `onceflow trace` one step outcome or decision
    ParkedRecord    runner `_park`          -> review          why a record waits (headers)
    ReviewDecision  review decide           -> review          a person's decision (decisions stream)
    DriftResult     drift job               -> operator        a SyncPolicy's drift figures
    MaxDeliveriesAdvisory  JetStream        -> runner          a record ran out of deliveries unsettled
    PollWatermark   poller                  -> poller, review  how far a schedule trigger has read (KV)
    PollLease       poller                  -> poller          which runner is an Integration's one poller (KV)
    PollFigures     runner (in Heartbeat)   -> operator        last poll, watermark, rows, errors

(The rollout's split marker is `contract.split.SplitMarker`.) Readers accept messages written
before a field existed (it takes its default) and ignore fields they do not know; a message
that is not the model at all raises `WireFormatError` saying what and where, never a KeyError.
JSON bodies are written with `json.dumps`, as before these models existed, so the bytes on
the wire are unchanged; a field a writer did not set is left out, as the hand-built dicts did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Self, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from onceflow_runner.contract import headers as h
from onceflow_runner.contract.split import Lane
from onceflow_runner.errors import WireFormatError

__all__ = [
    "MATCH_VERDICTS",
    "PARK_HEADROOM",
    "RESENT_AS",
    "REVIEW_ACTIONS",
    "AuditEntry",
    "AuditStep",
    "DriftResult",
    "Heartbeat",
    "MatchVerdict",
    "MaxDeliveriesAdvisory",
    "ParkedCandidates",
    "ParkedRecord",
    "PollFigures",
    "PollLease",
    "PollWatermark",
    "RecordHeaders",
    "ReviewAction",
    "ReviewDecision",
]

#: What a person can decide about a parked record (in the order the console offers them).
ReviewAction = Literal["retry", "approve", "edit", "reject", "discard"]
REVIEW_ACTIONS: Final[tuple[ReviewAction, ...]] = get_args(ReviewAction)
#: Decisions that send the record through its Integration again, and the `Onceflow-Decision` they carry.
RESENT_AS: Final[Mapping[ReviewAction, str]] = {"retry": "retried", "approve": "approved", "edit": "edited"}
#: A reviewer's word on a parked duplicate: the same record as one candidate, or none of them.
MatchVerdict = Literal["same", "notSame"]
MATCH_VERDICTS: Final[tuple[MatchVerdict, ...]] = get_args(MatchVerdict)


def _validation_message(what: str, exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"not a valid {what}: {where}: {first['msg']} ({exc.error_count()} error(s))"


_M = TypeVar("_M", bound=BaseModel)


def _read(model: type[_M], raw: Mapping[str, Any]) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise WireFormatError(_validation_message(model.__name__, exc)) from None


class _Wire(BaseModel):
    """A JSON message: camelCase on the wire, snake_case in Python, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        """The message as the JSON object the writer sends (fields it did not set are left out)."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    def to_wire(self) -> bytes:
        """The message body (pydantic's serializer: one pass, no intermediate dict)."""
        return self.model_dump_json(by_alias=True, exclude_unset=True).encode()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        """Read a decoded message; WireFormatError when it is not this model."""
        return _read(cls, raw)

    @classmethod
    def from_wire(cls, data: bytes | str) -> Self:
        """Read a message body; WireFormatError when it is not JSON or not this model."""
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:  # nested past the parser's depth: not JSON we read
            raise WireFormatError(f"not a valid {cls.__name__}: the body is not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise WireFormatError(f"not a valid {cls.__name__}: the body is {type(raw).__name__}, not an object")
        return cls.from_dict(raw)


@dataclass(frozen=True)
class RecordHeaders:
    """The headers a record carries into a runner: which delivery, from where, which trace, any decision.

    Written by the gateway (with the CloudEvents headers) and by a review resend (which copies the
    parked record's and adds the decision); read by the runner for its audit and ownership rules.
    None means "not sent"; `to_headers` leaves those out.
    """

    msg_id: str | None = None
    delivery_id: str | None = None
    origin: str | None = None
    origin_system: str | None = None
    event: str | None = None
    content_type: str | None = None
    traceparent: str | None = None
    decision: str | None = None
    decided_by: str | None = None
    #: The approval gates people let this record through (`APPROVED_STEPS`, comma-separated).
    approved_steps: str | None = None
    sender_delivery_id: str | None = None

    def to_headers(self) -> dict[str, str]:
        pairs = (
            (h.NATS_MSG_ID, self.msg_id),
            (h.DELIVERY_ID, self.delivery_id),
            (h.ORIGIN, self.origin),
            (h.ORIGIN_SYSTEM, self.origin_system),
            (h.EVENT, self.event),
            (h.CONTENT_TYPE, self.content_type),
            (h.TRACEPARENT, self.traceparent),
            (h.DECISION, self.decision),
            (h.DECIDED_BY, self.decided_by),
            (h.APPROVED_STEPS, self.approved_steps),
            (h.SENDER_DELIVERY_ID, self.sender_delivery_id),
        )
        return {name: value for name, value in pairs if value is not None}

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> RecordHeaders:
        found = headers or {}
        return cls(
            msg_id=found.get(h.NATS_MSG_ID),
            delivery_id=found.get(h.DELIVERY_ID),
            origin=found.get(h.ORIGIN),
            origin_system=found.get(h.ORIGIN_SYSTEM),
            event=found.get(h.EVENT),
            content_type=found.get(h.CONTENT_TYPE) or found.get(h.CE_CONTENT_TYPE),
            traceparent=h.w3c_traceparent(found.get(h.TRACEPARENT)),
            decision=found.get(h.DECISION),
            decided_by=found.get(h.DECIDED_BY),
            approved_steps=found.get(h.APPROVED_STEPS),
            sender_delivery_id=found.get(h.SENDER_DELIVERY_ID),
        )

    @property
    def approved_step_names(self) -> tuple[str, ...]:
        """The steps a person approved this record at; empty unless the decision is an approval."""
        if self.decision != RESENT_AS["approve"] or not self.approved_steps:
            return ()
        return tuple(s.strip() for s in self.approved_steps.split(",") if s.strip())


class PollWatermark(_Wire):
    """How far an Integration's schedule trigger has read, in its KV key (`subjects.poll_watermark_key`).

    `watermark` is the largest change time of the rows read so far, in the target's own format,
    written only after every row up to it had its PubAck; `at` when that was (RFC 3339).
    """

    watermark: str
    at: str = ""
    revision: str = ""
    rows: int = 0


class PollLease(_Wire):
    """Which runner process polls for an Integration, until when (epoch seconds); renewed with compare-and-set."""

    owner: str
    until: float


class PollFigures(_Wire):
    """The poller's figures in a heartbeat; only the runner holding the poll lease sends them.

    `records` are the rows the last poll published; `polls`, `errors` and `published` count since
    the process started polling; `last_error` is the last failed poll's message (one line).
    """

    last_poll_time: str | None = None
    last_success_time: str | None = None
    watermark: str | None = None
    records: int = 0
    pages: int = 0
    polls: int = 0
    errors: int = 0
    published: int = 0
    last_error: str | None = None


class Heartbeat(_Wire):
    """One runner process's figures, sent every few seconds on `onceflow.<ns>.stats.<integration>`.

    `totals` are cumulative counts per outcome since the process started; the other figures are
    over the runner's rolling window (see `metrics.RollingStats.snapshot`, whose keys they are).
    """

    integration: str
    revision: str
    lane: Lane = "main"
    pod: str = ""
    time: str = ""
    #: The trigger subject the runner consumes: how a gateway tells the lag of its own records.
    subject: str = ""
    consumer_lag: int = 0
    #: Records per second the lag grew by between the runner's last two readings (< 0: catching up).
    consumer_lag_growth: float = 0.0
    last_success_time: str | None = None
    count: int = 0
    error_ratio: float = 0.0
    exception_ratio: float = 0.0
    p50_latency_ms: float = 0.0
    p95_latency_ms: float = 0.0
    throughput: float = 0.0
    totals: dict[str, int] = Field(default_factory=dict)
    #: Set by the runner that polls (a schedule trigger's lease holder), absent otherwise.
    poll: PollFigures | None = None


class AuditStep(BaseModel):
    """One step's outcome inside an audit entry (field names as the engine's `StepResult`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    step: str
    kind: str = ""
    outcome: str
    detail: str = ""
    status: int | None = None
    latency_ms: float = 0.0


class AuditEntry(_Wire):
    """One line of a record's lineage on `onceflow.<ns>.audit.<integration>`, read by `onceflow trace`.

    `outcome` is what happened: completed, filtered, duplicate, retrying, exception, deadLetter
    (from a runner) or decision (from a person, with `exception_sequence`).
    """

    time: str
    integration: str
    revision: str = ""
    business_key: str | None = None
    delivery_id: str | None = None
    source: str | None = None
    delivered: int | None = None
    outcome: str
    detail: str = ""
    steps: list[AuditStep] = Field(default_factory=list)
    exception_sequence: int | None = None

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_unset=True, fallback=str).encode()


#: Bytes a park may add to a record's headers at most (every why-parked header at its cap, with its
#: name; `ParkedRecord.to_headers`). A producer leaves this much free under the broker's
#: `max_payload`, so every record it stores can still be parked or dead-lettered with its original
#: bytes: a record that fills the payload would be stored, and then refused by the exception and
#: dead-letter streams alike, and end nowhere a person looks.
PARK_HEADROOM: Final = 12 * 1024
#: Caps of the why-parked headers that carry names (Kubernetes names are at most 253 characters)
#: and the original subject (a NATS subject built from such names).
_NAME_CAP: Final = 253
_SUBJECT_CAP: Final = 1024
#: Cap of the error and the business key (header_safe's own).
_TEXT_CAP: Final = 1000


def _capped(text: str, limit: int) -> str:
    r"""`header_safe` at `limit` characters, then at `limit` bytes as `header_block` writes them.

    Bytes as UTF-8 with a surrogate escaped as `\udcff`; never half a character.
    """
    value = h.header_safe(text, limit)
    encoded = value.encode("utf-8", "backslashreplace")
    return value if len(encoded) <= limit else encoded[:limit].decode(errors="ignore")


class ParkedRecord(BaseModel):
    """Why a record waits in the exception (or dead-letter) stream: headers beside its original bytes.

    The runner's `_park` writes them (`to_headers`, over the record's own headers); the review side
    reads them back (`from_headers`). A possible duplicate's candidates are stored in full in a
    message of their own (`ParkedCandidates`), whose stream sequence `candidates_at` names; records
    parked before that carry them as JSON cut to fit a header (one cut short reads as none).
    The suggestion is JSON in a header.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    reason: str
    error: str = ""
    step: str = ""
    integration: str = ""
    revision: str = ""
    business_key: str = ""
    original_subject: str = ""
    stream_sequence: int = 0
    deliveries: int = 0
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    #: A rule's suggested fix, {"field", "value"}: shown to the reviewer, applied only by their decision.
    suggestion: dict[str, Any] | None = None
    #: Stream sequence of the `ParkedCandidates` message holding the candidates in full (0: none).
    candidates_at: int = 0
    #: The SyncPolicy entity of a possible duplicate (for duplicate incidence per entity).
    entity: str = ""

    def to_headers(self, original: Mapping[str, str] | None = None) -> dict[str, str]:
        """The original record's headers (less its Nats-Msg-Id) with why it was parked.

        Why-parked headers the original carries (forged, or left from an earlier park) are dropped,
        not only overwritten: an optional one this park does not write would otherwise show another
        record's candidates or suggestion, and take a verdict on a record nothing matched.
        """
        out = {k: v for k, v in (original or {}).items() if k != h.NATS_MSG_ID and k not in _PARKED_ONLY}
        # Every value has a cap in bytes, so that a park adds at most PARK_HEADROOM (names are
        # Kubernetes names, 253 ASCII characters at most, and never cut by these caps).
        out.update(
            {
                h.REASON: _capped(self.reason, _NAME_CAP),
                h.ERROR: _capped(self.error, _TEXT_CAP),
                h.STEP: _capped(self.step, _NAME_CAP) or "-",
                h.INTEGRATION: _capped(self.integration, _NAME_CAP),
                h.REVISION: _capped(self.revision, _NAME_CAP),
                h.BUSINESS_KEY: _capped(self.business_key, _TEXT_CAP) or "-",
                h.ORIGINAL_SUBJECT: _capped(self.original_subject, _SUBJECT_CAP),
                h.STREAM_SEQUENCE: str(self.stream_sequence),
                h.DELIVERIES: str(self.deliveries),
            }
        )
        if self.candidates_at:
            out[h.CANDIDATES_AT] = str(self.candidates_at)
        elif self.candidates:
            out[h.CANDIDATES] = _capped(json.dumps(self.candidates, default=str), 4000)
        if self.entity:
            out[h.ENTITY] = _capped(self.entity, _NAME_CAP)
        if self.suggestion:
            out[h.SUGGESTION] = _capped(json.dumps(self.suggestion, default=str), 2000)
        return out

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> ParkedRecord:
        """Read a parked record's headers; WireFormatError when it has no reason (it was never parked)."""
        found = headers or {}
        if h.REASON not in found:
            raise WireFormatError(f"not a parked record: no {h.REASON} header")
        candidates = _json_header(found, h.CANDIDATES)
        suggestion = _json_header(found, h.SUGGESTION)
        fields: dict[str, Any] = {
            "reason": found[h.REASON],
            "error": found.get(h.ERROR, ""),
            "step": found.get(h.STEP, ""),
            "integration": found.get(h.INTEGRATION, ""),
            "revision": found.get(h.REVISION, ""),
            "business_key": found.get(h.BUSINESS_KEY, ""),
            "original_subject": found.get(h.ORIGINAL_SUBJECT, ""),
            "stream_sequence": found.get(h.STREAM_SEQUENCE, "0"),
            "deliveries": found.get(h.DELIVERIES, "0"),
            "candidates": candidates if isinstance(candidates, list) else [],
            "suggestion": suggestion if isinstance(suggestion, dict) else None,
            "candidates_at": _sequence_header(found.get(h.CANDIDATES_AT, "")),
            "entity": found.get(h.ENTITY, ""),
        }
        return _read(cls, fields)


#: Levels of nesting kept in a parked duplicate's record and candidates (a reviewer reads far fewer;
#: pydantic's serializer stops at about 256).
MAX_CANDIDATE_DEPTH: Final = 64


#: Characters of one text value kept in a candidate when the candidates would not fit whole.
MAX_CANDIDATE_TEXT: Final = 2000


def _cut_long_text(value: Any, limit: int) -> Any:
    """`value` (plain JSON) with every text longer than `limit` cut, saying how long it was."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}…(cut: {len(value)} characters)"
    if isinstance(value, dict):
        return {k: _cut_long_text(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_long_text(v, limit) for v in value]
    return value


def plain_json(value: Any, depth: int) -> Any:
    """`value` as plain JSON: mappings with text keys, lists, text, numbers, booleans, null.

    Bytes are decoded (invalid UTF-8 replaced), sets and tuples become lists, anything else its
    text; below `depth` levels a value becomes a note saying it was cut.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth <= 0:
        return f"(nested deeper than {MAX_CANDIDATE_DEPTH} levels: not kept)"
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain_json(v, depth - 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return str(value)


class ParkedCandidates(_Wire):
    """A parked duplicate's candidates in full, on `subjects.exception_candidates_subject`.

    Why a message of its own: the exception keeps the record's original bytes as its body (a
    decision resends them), and a header is one line of a few kilobytes, so 100 candidates of 2 KB
    each never fit there. The runner stores this first and names its sequence in the exception
    (`ParkedRecord.candidates_at`); the review side reads it by that sequence. Each candidate is
    `{"rule", "score", "decision"?, "weight"?, "fields": [{"field", "level", "weight"?, "record",
    "candidate"}], "candidate": {...the row...}}`, best first.
    """

    integration: str
    business_key: str = ""
    #: The inbound record's stream sequence (as `ParkedRecord.stream_sequence`).
    stream_sequence: int = 0
    #: The record as it was matched (canonical, after the steps before dedupe), not its original bytes.
    record: Any = None
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    #: Candidates left out (the weakest) so the message fits NATS's largest payload.
    omitted: int = 0
    #: The matched record was left out (alone it was over the largest payload): show its original bytes.
    record_omitted: bool = False

    @field_validator("record", "candidates", mode="before")
    @classmethod
    def _plain_json(cls, value: Any) -> Any:
        """Values from outside systems made plain JSON, cut at `MAX_CANDIDATE_DEPTH` levels.

        Why: one row nested deeper than the serializer goes (valid JSON, ~256 levels), or bytes
        that are not UTF-8, failed the whole message, so the possible duplicate was never parked.
        """
        return plain_json(value, MAX_CANDIDATE_DEPTH)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, fallback=str).encode()

    def fitted(self, limit: int) -> tuple[ParkedCandidates, bytes]:
        """The message with the weakest candidates left out until its body is at most `limit` bytes.

        The candidates come best first, so the ones dropped are those a reviewer needs least; the
        count dropped is kept (`omitted`) and shown. A record over the limit on its own is left out
        first (`record_omitted`; the exception's body is the record), then texts over
        `MAX_CANDIDATE_TEXT` characters in the candidates are cut (saying so). A binary search over the count keeps the
        number of encodings logarithmic even for thousands of candidates.
        """
        wire = self.to_wire()
        if len(wire) <= limit:
            return self, wire
        if self.record is not None and len(self.model_copy(update={"candidates": []}).to_wire()) > limit:
            # The record alone is over the limit: no count of candidates fits beside it.
            return self.model_copy(update={"record": None, "record_omitted": True}).fitted(limit)
        cut = [_cut_long_text(c, MAX_CANDIDATE_TEXT) for c in self.candidates]
        if cut != self.candidates:
            # Long texts (notes, descriptions) go first: a candidate's explanation and its other
            # fields are worth more to the reviewer than whole candidates left out for them.
            return self.model_copy(update={"candidates": cut}).fitted(limit)
        keep, low = len(self.candidates), 0
        while keep - low > 1:  # the largest count that fits lies in [low, keep)
            middle = (low + keep) // 2
            trial = self.model_copy(update={"candidates": self.candidates[:middle], "omitted": self.omitted})
            if len(trial.to_wire()) <= limit:
                low = middle
            else:
                keep = middle
        kept = self.model_copy(
            update={"candidates": self.candidates[:low], "omitted": self.omitted + len(self.candidates) - low}
        )
        return kept, kept.to_wire()


#: Why-parked headers only `ParkedRecord.to_headers` writes, and only when it has them.
_PARKED_ONLY: Final = frozenset({h.CANDIDATES, h.CANDIDATES_AT, h.ENTITY, h.SUGGESTION})


def _sequence_header(value: str) -> int:
    """A stream sequence from a header, 0 (none) unless it is one: digits, above 0, within JetStream's range.

    Why lenient: a garbage value must not make the exception (and every listing it is in)
    unreadable; it reads as no candidates, as an old candidates header cut short always did.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        return 0
    number = int(value)
    return number if 0 < number < 2**63 else 0


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(headers[name]) if name in headers else None
    except (ValueError, RecursionError):  # cut short, or nested past the parser's depth: none
        return None


class ReviewDecision(_Wire):
    """What a person decided about one exception, on `onceflow.<ns>.decisions.<integration>.<sequence>`.

    Keyed by the exception's stream sequence. Review writes it compare-and-set on that subject of
    its own (`Nats-Expected-Last-Subject-Sequence: 0`), so there is one decision per exception.
    Decisions written before that sit on `onceflow.<ns>.decisions.<integration>` and are read as
    they always were: the first decision about an exception stands.
    (A rollout's promote/abort is a different thing: `onceflow_operator.rollout.decisions.Decision`.)
    """

    exception_sequence: int
    action: ReviewAction
    who: str
    why: str = ""
    time: str
    integration: str = ""
    business_key: str = ""
    reason: str = ""
    #: The step the record was parked at: an approval is for that step's gate only.
    step: str = ""
    #: On a parked duplicate: "same" (the record is candidate `same_as`) or "notSame" (none of them).
    #: Read back as labels for matching (`onceflow_operator.review.labels`).
    verdict: MatchVerdict | None = None
    #: Index (0-based, best first) of the candidate a "same" verdict names.
    same_as: int | None = None

    @property
    def resends(self) -> bool:
        """True when the decision sends the record through its Integration again."""
        return self.action in RESENT_AS

    def resend_headers(self, parked: Mapping[str, str], namespace: str) -> dict[str, str]:
        """Headers of the record sent again: its own, where it came from, and this decision.

        Why-parked headers are dropped (the runner writes fresh ones if it parks it again); the
        message id is new and fixed, so a second resend of the same exception is stored once.
        An approval names the step the record was parked at, after the steps approved earlier
        (`Onceflow-Approved-Steps`): the record passes those gates, and the next one parks it
        again. Retry and edit carry no approval (an edited record is a new one to approve).
        """
        if not self.resends:
            raise ValueError(f"a {self.action} decision sends nothing")
        out = {k: v for k, v in parked.items() if not k.startswith(h.ONCEFLOW_PREFIX) and k != h.NATS_MSG_ID}
        for keep in (h.ORIGIN, h.EVENT, h.DELIVERY_ID):
            if keep in parked:
                out[keep] = parked[keep]
        out.update(
            {
                h.DECISION: RESENT_AS[self.action],
                h.DECIDED_BY: self.who,
                h.NATS_MSG_ID: f"resend/{namespace}/{self.exception_sequence}",
            }
        )
        if self.action == "approve":
            earlier = RecordHeaders.from_headers(parked).approved_step_names
            approved = ",".join(dict.fromkeys([*earlier, *([self.step] if self.step else [])]))
            if approved:
                out[h.APPROVED_STEPS] = approved
        return out


class DriftResult(_Wire):
    """One drift check between a SyncPolicy's two systems (CloudEvent `io.onceflow.<entity>.drift`).

    The operator reads the newest one into the SyncPolicy's status (`to_status`).
    """

    sync_policy: str = ""
    entity: str = ""
    time: str
    compared: int = 0
    total: int
    missing_left: int
    missing_right: int
    mismatched: int
    examples: list[dict[str, Any]] = Field(default_factory=list)
    #: False when a side's paging stopped at maxPages: records only on the other side were not counted.
    complete: bool = True
    #: What was not read, and what to do, when `complete` is false.
    message: str = ""

    def to_status(self) -> dict[str, Any]:
        """The SyncPolicy's `status.drift`."""
        return {
            "total": self.total,
            "missingLeft": self.missing_left,
            "missingRight": self.missing_right,
            "mismatched": self.mismatched,
            "complete": self.complete,
            "message": self.message,
            "lastRunTime": self.time,
        }

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_unset=True, fallback=str).encode()


class MaxDeliveriesAdvisory(BaseModel):
    """JetStream's own advisory: a consumer's message was delivered `deliveries` times, never settled.

    Type `io.nats.jetstream.advisory.v1.max_deliver`, in JetStream's own snake_case.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int = 0

    @classmethod
    def from_wire(cls, data: bytes | str) -> MaxDeliveriesAdvisory:
        """Read an advisory body; WireFormatError when it is not one."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise WireFormatError(_validation_message(cls.__name__, exc)) from None
