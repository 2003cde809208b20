"""The plan: the contract between the operator (which writes it) and the runner (which runs it).

One plan is one revision of one Integration, self-contained: steps with their CEL, the
Connectors they call (endpoints and *where* the secrets are, never the secrets), the error
policy, the SyncPolicy rules and the NATS names. The runner refuses a plan whose
`planVersion` it does not know, so an old runner can never half-run a newer plan.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onceflow_runner.contract.headers import refused_request_header
from onceflow_runner.errors import PlanError

_P = TypeVar("_P", bound=BaseModel)

__all__ = [
    "PLAN_VERSION",
    "PROTECTED_FIELDS",
    "STEP_KINDS",
    "AnswerRulePlan",
    "ApprovePlan",
    "AuthPlan",
    "ConnectorPlan",
    "DriftCheckPlan",
    "DriftCheckSide",
    "ErrorPolicyPlan",
    "GatewayPlan",
    "MapPlan",
    "MatchFieldPlan",
    "MatchRulePlan",
    "MatchingPlan",
    "NatsPlan",
    "PagingPlan",
    "Plan",
    "PollPlan",
    "PublishPlan",
    "RequestPlan",
    "SecretRef",
    "SendEdiPlan",
    "SessionLoginPlan",
    "SignaturePlan",
    "StepKindName",
    "StepPlan",
    "SyncPolicyPlan",
    "ValidatePlan",
    "load_drift_check_plan",
    "load_gateway_plan",
    "load_plan",
    "worst_call_seconds",
]

PLAN_VERSION = "onceflow.io/plan/v1"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Contract):
    """A Secret key; the runner reads it from `<secrets dir>/<name>/<key>` (a Secret volume)."""

    name: str
    key: str


class SessionLoginPlan(_Contract):
    """A login request and how its session is kept and sent (the API's `sessionLogin`, durations in seconds)."""

    method: str = "POST"
    path: str
    secrets: dict[str, SecretRef]
    #: CEL over `secrets`: the JSON body.
    body: str | None = None
    #: CEL over `response`, `cookies`, `headers` of the login answer: the session.
    session: str | None = None
    #: CEL over the same: the session's lifetime in seconds.
    expires_in: str | None = None
    lifetime: float | None = None
    refresh_before: float = 30
    send_as: Literal["Cookies", "Header"] = "Cookies"
    header: str = ""
    #: CEL over `session`, `secrets`: the header's value.
    header_value: str | None = None
    #: CEL over `status`, `response`, `headers`: this answer says the session is gone.
    expired_when: str | None = None


class AuthPlan(_Contract):
    """Outbound authentication; every secret is a reference."""

    type: Literal["None", "Bearer", "Basic", "APIKey", "ERPNextToken", "OAuth2ClientCredentials", "SessionLogin"] = (
        "None"
    )
    header: str = ""
    token: SecretRef | None = None
    username: SecretRef | None = None
    password: SecretRef | None = None
    api_key: SecretRef | None = None
    api_secret: SecretRef | None = None
    client_id: SecretRef | None = None
    client_secret: SecretRef | None = None
    token_url: str = ""
    scopes: tuple[str, ...] = ()
    #: OAuth2 with a signed JWT instead of a client secret (RFC 7523): the key, its kid, the algorithm.
    assertion_key: SecretRef | None = None
    assertion_key_id: str = ""
    assertion_algorithm: Literal["", "PS256", "RS256", "ES256"] = ""
    session_login: SessionLoginPlan | None = None


def worst_call_seconds(
    *, attempts: int, connect_timeout: float, read_timeout: float, initial_backoff: float, max_backoff: float
) -> float:
    """The longest one call to a Connector can take: every attempt times out, every pause is the longest.

    A pause between attempts is the target's Retry-After (at most `max_backoff`, or the call gives
    up) or the doubling backoff with up to 50% jitter. The runner's delivery must outlast this:
    it is what `errorPolicy.ackWait` is checked against.
    """
    pauses = sum(max(max_backoff, 1.5 * min(initial_backoff * 2.0**i, max_backoff)) for i in range(attempts - 1))
    return attempts * (connect_timeout + read_timeout) + pauses


class ConnectorPlan(_Contract):
    """A REST endpoint as the runner calls it."""

    name: str
    base_url: str
    #: The Connector's `spec.system`: a record whose origin system is this one is never sent back to it.
    system: str = ""
    auth: AuthPlan = AuthPlan()
    requests_per_second: float = 50
    burst: int = 10
    connect_timeout: float = 5
    read_timeout: float = 30
    attempts: int = 3
    initial_backoff: float = 0.2
    max_backoff: float = 10
    #: Upper bound of one call, connection to last byte (read_timeout bounds each read only).
    total_timeout: float = 60
    #: Larger answers are dropped as a transient failure (the body is never read past this).
    max_response_bytes: int = 10 * 1024 * 1024
    #: What a 3xx answer is (redirects are never followed): Fail = permanent, Retry = transient.
    on_redirect: Literal["Fail", "Retry"] = "Fail"
    #: Sent on every call (names checked against `headers.refused_request_header`).
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_refused_header(self) -> ConnectorPlan:
        for name in self.headers:
            if (why := refused_request_header(name)) is not None:
                raise ValueError(f"Connector {self.name}: {why}")
        return self

    @property
    def worst_call_seconds(self) -> float:
        """The longest one call can take (see `worst_call_seconds`)."""
        return worst_call_seconds(
            attempts=self.attempts,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff,
        )


#: Field names no suggestion may change (prices, credit): checked again here, so that a plan made
#: by hand cannot slip one past the operator.
PROTECTED_FIELDS = re.compile(r"(?i)(price|credit|rate|amount|total|discount|cost)")


class ValidatePlan(_Contract):
    """Canonical entity, (CEL rule, message) pairs, and suggested fixes by rule index."""

    entity: str | None = None
    rules: tuple[tuple[str, str], ...] = ()
    #: (rule index, payload field path, CEL giving the proposed value)
    suggestions: tuple[tuple[int, str, str], ...] = ()

    @model_validator(mode="after")
    def _no_suggestion_touches_prices_or_credit(self) -> ValidatePlan:
        for _, path, _ in self.suggestions:
            if PROTECTED_FIELDS.search(path):
                raise ValueError(f"a suggestion may not change {path}: price and credit fields are decided by people")
        return self


class MapPlan(_Contract):
    """Target field -> CEL."""

    fields: dict[str, str]
    mode: Literal["Replace", "Merge"] = "Replace"


PagingStyle = Literal["Offset", "Page", "Cursor", "NextLink", "LinkHeader"]


class PagingPlan(_Contract):
    """How a list or search is read page by page (`engine.paging` follows it).

    Offset and Page put the position in query parameters (ERPNext's `limit_start`, NetSuite's
    `offset`, OData's `$skip`); Cursor sends back a token the answer gave (`next` is CEL over the
    answer); NextLink calls the URL the answer's body names (OData `@odata.nextLink`, `links`);
    LinkHeader calls the URL of the RFC 8288 `Link: <...>; rel="next"` header. A page shorter than
    `page_size` (Offset, Page) or without a next token or link ends the list.
    """

    style: PagingStyle = "Offset"
    page_size: int = Field(default=100, ge=1)
    #: Query parameter carrying the page size; None when the target has no such parameter.
    size_param: str | None = "limit_page_length"
    offset_param: str = "limit_start"
    page_param: str = "page"
    first_page: int = 1
    cursor_param: str = "cursor"
    #: CEL over `response` (the body) and `headers`: the next cursor (Cursor) or URL (NextLink).
    next: str | None = None
    #: Pages read at most; a list longer than that is reported incomplete, never cut silently.
    max_pages: int = Field(default=50, ge=1)


class AnswerRulePlan(_Contract):
    """What an answer means when `when` (CEL over status, response, headers) holds."""

    when: str
    outcome: Literal["Failed", "Retry", "NotFound", "AlreadyExists", "Succeeded"]
    message: str | None = None


class RequestPlan(_Contract):
    """lookup, dedupe and call share one request shape."""

    connector: str
    method: str
    path: str
    query: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    idempotency_key: str | None = None
    not_found: Literal["Fail", "Continue"] = "Continue"
    #: CEL selecting the list in one answer: dedupe's candidates, and a paged lookup's rows of a page.
    candidates: str = "response.data"
    #: dedupe: target field -> canonical field (dotted paths), applied to each candidate row before matching.
    candidate_fields: dict[str, str] = Field(default_factory=dict)
    on_match: Literal["Approve", "Skip", "Exception"] = "Approve"
    #: Follow the answer across pages (dedupe and lookup searches); one request when None.
    paging: PagingPlan | None = None
    #: Header -> CEL, for this record (names checked as the Connector's).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Which answers are failures (first that holds wins), and CEL over `response` giving the result.
    answers: tuple[AnswerRulePlan, ...] = ()
    result: str | None = None

    @model_validator(mode="after")
    def _no_refused_header(self) -> RequestPlan:
        for name in self.headers:
            if (why := refused_request_header(name)) is not None:
                raise ValueError(why)
        return self


class PollPlan(_Contract):
    """A schedule trigger's source: ask a Connector for what changed since a watermark (`runner.poller`).

    On each firing of the schedule the runner holding the Integration's poll lease builds the
    request (`query` values are CEL with `watermark` bound: the stored watermark minus `look_back`,
    formatted as the target writes its timestamps), reads the answer page by page, publishes each
    row to `subject` with a `Nats-Msg-Id` from the business key, and stores the new watermark (the
    largest `watermark` CEL value over the rows) only after every row had its PubAck.
    """

    #: Five-field cron expression, or None when `interval` sets the pace.
    cron: str | None = None
    #: Seconds between polls, when there is no cron expression.
    interval: float | None = None
    time_zone: str = "UTC"
    connector: str
    path: str
    #: Query parameter -> CEL (sees `watermark`, a string, and `now`, the poll's start as a string).
    query: dict[str, str] = Field(default_factory=dict)
    #: CEL over `response`: the rows of one answer.
    items: str = "response.data"
    #: CEL over `row`: the row's change time (a string in `watermark_format`, or a CEL timestamp).
    watermark: str
    #: strftime/strptime pattern of the target's timestamps, or "RFC3339".
    watermark_format: str = "RFC3339"
    #: Zone of timestamps without an offset (the target's server time zone).
    watermark_time_zone: str = "UTC"
    #: Seconds subtracted from the stored watermark in each request: clock skew and late commits.
    look_back: float = 60.0
    #: Where the first poll starts (ISO 8601, aware); None: from the moment of the first poll.
    start: str | None = None
    paging: PagingPlan | None = None
    subject: str
    #: KV bucket of the namespace's watermarks and poll leases.
    bucket: str
    #: How long a poller holds the lease without renewing it before another runner may take over.
    lease_seconds: float = 30.0


class PublishPlan(_Contract):
    """A canonical event to publish."""

    entity: str
    verb: str
    data: str | None = None


class ApprovePlan(_Contract):
    """Park for a person when `when` holds."""

    reason: str
    when: str | None = None


class SendEdiPlan(_Contract):
    """Hand a record to an EDI partner's pod, which sends it as `document` (855, 856, 810)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    connector: str
    document: Literal["855", "856", "810"]
    #: CEL: the document's source; the current record when None.
    from_: str | None = Field(default=None, alias="from")


#: The step kinds a plan may name; the runner has one module per kind (`engine.steps`) and checks
#: at import that it runs exactly these.
StepKindName = Literal["validate", "map", "filter", "lookup", "dedupe", "call", "publish", "approve", "sendEdi"]
STEP_KINDS: tuple[str, ...] = get_args(StepKindName)


# Each kind's block is the field of its name, except `filter` (its `condition`) and lookup, dedupe
# and call, which share the `request` block. A new kind adds its name to StepKindName, its block
# model and its field here: the plan's wire shape is this model, so it stays explicit.
class StepPlan(_Contract):
    """One step; `kind` names the one block that is set."""

    name: str
    kind: StepKindName
    validate_: ValidatePlan | None = Field(default=None, alias="validate")
    map: MapPlan | None = None
    condition: str | None = None
    request: RequestPlan | None = None
    publish: PublishPlan | None = None
    approve: ApprovePlan | None = None
    send_edi: SendEdiPlan | None = Field(default=None, alias="sendEdi")


class ErrorPolicyPlan(_Contract):
    """Redelivery delays and limits, in seconds."""

    backoff: tuple[float, ...] = (1.0, 10.0, 60.0)
    max_deliver: int = 5
    ack_wait: float = 30
    permanent_failures: Literal["Exception", "DeadLetter"] = "Exception"


class MatchRulePlan(_Contract):
    """One identity match rule of the SyncPolicy."""

    name: str
    exact: tuple[str, ...] = ()
    fuzzy_field: str | None = None
    fuzzy_threshold: float = 1.0


class MatchFieldPlan(_Contract):
    """One compared field of probabilistic matching, with m/u per level of its comparison (defaults filled in)."""

    #: Dotted paths: one, or first and last name for `personName`.
    paths: tuple[str, ...]
    comparison: str
    m: tuple[float, ...]
    u: tuple[float, ...]


class MatchingPlan(_Contract):
    """The SyncPolicy's probabilistic matching, self-contained: the runner needs no defaults of its own."""

    fields: tuple[MatchFieldPlan, ...]
    prior_link_rate: float
    match_threshold: float = 0.99
    review_threshold: float = 0.5
    #: A certain match: Skip acknowledges the record; Update runs the later steps with the match bound.
    on_certain_match: Literal["Skip", "Update"] = "Skip"


class SyncPolicyPlan(_Contract):
    """The entity rules compiled in from the Integration's SyncPolicy."""

    name: str
    entity: str
    owner_default: str
    owners: dict[str, str] = Field(default_factory=dict)
    identity_keys: tuple[str, ...] = ()
    match_rules: tuple[MatchRulePlan, ...] = ()
    matching: MatchingPlan | None = None
    conflict_policy: Literal["SystemOfRecordWins", "Manual"] = "SystemOfRecordWins"
    price_deviation_percent: float = 0


class NatsPlan(_Contract):
    """Every NATS name the revision uses (DESIGN.md, NATS layout)."""

    stream: str
    subject: str
    consumer: str
    exceptions_subject: str
    dlq_subject: str
    audit_subject: str
    events_prefix: str
    stats_subject: str
    decisions_subject: str
    kv_bucket: str


class Plan(_Contract):
    """Everything one revision of one Integration needs to run."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    plan_version: str = Field(alias="planVersion")
    namespace: str
    integration: str
    revision: str
    version: str = ""
    source: str = Field(default="", description="Connector the trigger reads from (origin of records).")
    source_system: str = Field(default="", description="`spec.system` of the trigger's Connector.")
    business_key: str | None = None
    steps: tuple[StepPlan, ...]
    connectors: dict[str, ConnectorPlan] = Field(default_factory=dict)
    error_policy: ErrorPolicyPlan = ErrorPolicyPlan()
    sync_policy: SyncPolicyPlan | None = None
    concurrency: int = 16
    #: Deadline in seconds of one CEL expression that iterates, evaluated in a killable worker.
    expression_timeout: float = 1.0
    nats: NatsPlan
    #: A schedule trigger's source; None for webhook and subject triggers.
    poll: PollPlan | None = None

    def to_json(self) -> str:
        """Serialise as the operator stores it in the plan ConfigMap."""
        return self.model_dump_json(by_alias=True, indent=1)


class SignaturePlan(_Contract):
    """How the gateway checks a sender's signature."""

    scheme: Literal["github", "stripe", "shopify", "standard-webhooks", "hmac"]
    secret: SecretRef
    header: str = ""
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    tolerance_seconds: int = 300


class GatewayPlan(_Contract):
    """Everything one webhook gateway (one inbound Connector) needs."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    plan_version: str = Field(alias="planVersion")
    namespace: str
    connector: str
    #: The Connector's `spec.system`, stamped on every record as its origin system.
    system: str = ""
    path: str = "/"
    signature: SignaturePlan
    event_header: str | None = None
    event_body_field: str | None = None
    event_default: str = "received"
    max_body_bytes: int = 1048576
    #: Consumer lag (from runner heartbeats) at which webhooks get 429; 0 (older plans): no limit.
    max_backlog: int = 0
    #: Publishes waiting for their PubAck at once; more get 503.
    max_pending_publishes: int = 1024
    #: Gateway processes in one pod serving the webhook port together (SO_REUSEPORT).
    processes: int = Field(default=1, ge=1, le=64)
    subject_prefix: str

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1)


class DriftCheckSide(_Contract):
    """Where one system lists the entity."""

    connector: ConnectorPlan
    path: str
    key_field: str
    #: Every page of the list is read (ERPNext's Offset paging unless the SyncPolicy says otherwise).
    paging: PagingPlan = PagingPlan()


class DriftCheckPlan(_Contract):
    """A SyncPolicy's periodic drift check (run by its CronJob as `onceflow drift-check`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    plan_version: str = Field(alias="planVersion")
    namespace: str
    sync_policy: str
    entity: str
    left: DriftCheckSide
    right: DriftCheckSide
    events_subject: str

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1)


def load_drift_check_plan(path: Path) -> DriftCheckPlan:
    """Read a drift-check plan file; raise PlanError when it cannot be run."""
    return _load(path, DriftCheckPlan)


def load_plan(path: Path) -> Plan:
    """Read a runner plan file; raise PlanError with one clear sentence when it cannot be run."""
    return _load(path, Plan)


def load_gateway_plan(path: Path) -> GatewayPlan:
    """Read a gateway plan file; raise PlanError when it cannot be run."""
    return _load(path, GatewayPlan)


def _load(path: Path, model: type[_P]) -> _P:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read plan {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise PlanError(f"plan {path} is not a JSON object")
    version = raw.get("planVersion")
    if version != PLAN_VERSION:
        raise PlanError(
            f"plan {path} has planVersion {version!r}; this runner understands {PLAN_VERSION!r} "
            "(run the runner image that matches the operator)"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"plan {path} is invalid at {where}: {first['msg']} ({exc.error_count()} error(s))") from None
