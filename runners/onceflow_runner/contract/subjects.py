"""Where every kind of record goes on NATS: stream names and subjects, defined once (pure).

DESIGN.md's NATS layout, as code. The operator's planner writes these names into each plan, the
NATS adapter derives the streams' subject filters from them, and the review side reads with them,
so a subject is spelled in exactly one place:

    onceflow.<ns>.in.<connector>.<event>        ONCEFLOW_IN          records accepted by a gateway
    onceflow.<ns>.in._rollout.<integration>     (the trigger's)      split markers of a canary rollout
    onceflow.<ns>.in._poll.<integration>        ONCEFLOW_IN          rows a schedule trigger polled
    onceflow.<ns>.events.<entity>.<verb>        ONCEFLOW_EVENTS      canonical events (CloudEvents)
    onceflow.<ns>.events.<entity>.drift.<sp>    ONCEFLOW_EVENTS      a SyncPolicy's drift results
    onceflow.<ns>.exceptions.<integration>      ONCEFLOW_EXCEPTIONS  records waiting for a person
    onceflow.<ns>.exceptions.<integration>.candidates   (same)       a parked duplicate's candidates, in full
    onceflow.<ns>.decisions.<integration>.<seq> ONCEFLOW_DECISIONS   the one decision about exception <seq>
    onceflow.<ns>.decisions.<integration>       ONCEFLOW_DECISIONS   decisions written before they had their own subject
    onceflow.<ns>.dlq.<integration>             ONCEFLOW_DLQ         records out of deliveries
    onceflow.<ns>.audit.<integration>           ONCEFLOW_AUDIT       one entry per step outcome
    onceflow.<ns>.stats.<integration>           core NATS            runner heartbeats, not stored

Every function takes the namespace first: everything a namespace's pods publish or consume lies
under `onceflow.<ns>.` (tenancy). Where a reader wants every Integration, it passes a wildcard
(`ANY_TOKEN` or `ANY_TAIL`) as the Integration.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ADVISORIES_STREAM",
    "ADVISORY_SUBJECTS",
    "ANY_TAIL",
    "ANY_TOKEN",
    "AUDIT_STREAM",
    "DECISIONS_STREAM",
    "DLQ_STREAM",
    "DUPLICATE_WINDOW_SECONDS",
    "EVENTS_STREAM",
    "EXCEPTIONS_STREAM",
    "IN_STREAM",
    "ROOT",
    "STATS_SUBSCRIPTION",
    "STORED_LOOKUP_SUBSCRIPTION",
    "STREAM_AREAS",
    "Area",
    "audit_subject",
    "consumer_name",
    "decisions_subject",
    "dlq_subject",
    "drift_subject",
    "edi_bucket",
    "edi_outbound_prefix",
    "edi_outbound_subject",
    "event_subject",
    "events_prefix",
    "exception_candidates_subject",
    "exception_decision_subject",
    "exceptions_subject",
    "inbound_prefix",
    "inbound_subject",
    "inbox_prefix",
    "kv_bucket",
    "kv_stream",
    "kv_subject",
    "max_deliveries_advisory",
    "namespace_of",
    "namespace_root",
    "poll_bucket",
    "poll_lease_key",
    "poll_subject",
    "poll_watermark_key",
    "rollout_subject",
    "stats_subject",
    "stored_lookup_subject",
    "stream_of_trigger",
    "stream_subjects",
    "subject_matches",
]

ROOT: Final = "onceflow"
ANY_TOKEN: Final = "*"
ANY_TAIL: Final = ">"

IN_STREAM: Final = "ONCEFLOW_IN"
EVENTS_STREAM: Final = "ONCEFLOW_EVENTS"
#: JetStream's duplicate window on every stream: a message id seen within it is stored once. It is at
#: least every webhook timestamp tolerance, so a replay inside a tolerance is always a duplicate.
DUPLICATE_WINDOW_SECONDS: Final = 600
EXCEPTIONS_STREAM: Final = "ONCEFLOW_EXCEPTIONS"
DECISIONS_STREAM: Final = "ONCEFLOW_DECISIONS"
DLQ_STREAM: Final = "ONCEFLOW_DLQ"
AUDIT_STREAM: Final = "ONCEFLOW_AUDIT"
ADVISORIES_STREAM: Final = "ONCEFLOW_ADVISORIES"

#: The second token after `onceflow.<ns>.`: what kind of subject it is.
Area = Literal["in", "events", "exceptions", "decisions", "dlq", "audit", "stats"]

#: Stream -> the area it stores (of every namespace). Stats are core NATS and stored nowhere.
STREAM_AREAS: Final[dict[str, Area]] = {
    IN_STREAM: "in",
    EVENTS_STREAM: "events",
    EXCEPTIONS_STREAM: "exceptions",
    DECISIONS_STREAM: "decisions",
    DLQ_STREAM: "dlq",
    AUDIT_STREAM: "audit",
}

#: JetStream's own advisories, kept in ADVISORIES_STREAM so no max-deliveries or termination goes unseen.
ADVISORY_SUBJECTS: Final = (
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
)

#: Where the operator answers "the stored record at this sequence" for every namespace (see
#: `stored_lookup_subject`).
STORED_LOOKUP_SUBSCRIPTION: Final = f"{ROOT}.{ANY_TOKEN}._stored.{ANY_TOKEN}.{ANY_TOKEN}"

#: What the operator subscribes to for every runner's heartbeat.
STATS_SUBSCRIPTION: Final = f"{ROOT}.{ANY_TOKEN}.stats.{ANY_TOKEN}"

_ROLLOUT_TOKEN = "_rollout"
#: A Connector name is a DNS label, so `_poll` never collides with a webhook Connector's subjects.
_POLL_TOKEN = "_poll"


def namespace_root(namespace: str) -> str:
    """`onceflow.<ns>`: everything of one namespace lies under it."""
    return f"{ROOT}.{namespace}"


def _area(namespace: str, area: Area) -> str:
    return f"{namespace_root(namespace)}.{area}"


def inbox_prefix(namespace: str) -> str:
    """The reply inbox prefix of a namespace's processes: its NATS user may read replies only under it."""
    return f"_INBOX_{namespace}"


def stream_subjects(stream: str) -> list[str]:
    """The subject filter a stream is created with (all namespaces)."""
    if stream == ADVISORIES_STREAM:
        return list(ADVISORY_SUBJECTS)
    return [f"{ROOT}.{ANY_TOKEN}.{STREAM_AREAS[stream]}.{ANY_TAIL}"]


def inbound_prefix(namespace: str, connector: str) -> str:
    """Where a webhook Connector's gateway publishes; the event name is appended."""
    return f"{_area(namespace, 'in')}.{connector}"


def inbound_subject(namespace: str, connector: str, event: str) -> str:
    """One event of one webhook Connector (`event` may be `>` in a trigger)."""
    return f"{inbound_prefix(namespace, connector)}.{event}"


def events_prefix(namespace: str) -> str:
    """Where canonical events go; entity and verb are appended."""
    return _area(namespace, "events")


def event_subject(namespace: str, entity: str, verb: str) -> str:
    """One canonical event kind, e.g. `onceflow.sales.events.customer.created`."""
    return f"{events_prefix(namespace)}.{entity}.{verb}"


def drift_subject(namespace: str, entity: str, sync_policy: str) -> str:
    """Where a SyncPolicy's drift results go (kept in ONCEFLOW_EVENTS; the last one is its status)."""
    return f"{event_subject(namespace, entity, 'drift')}.{sync_policy}"


def exceptions_subject(namespace: str, integration: str) -> str:
    """Records of an Integration waiting for a person."""
    return f"{_area(namespace, 'exceptions')}.{integration}"


def exception_candidates_subject(namespace: str, integration: str) -> str:
    """Where a parked duplicate's candidates are stored in full, one message each, beside the exceptions.

    Why the exceptions stream: the candidates live and expire with the records they explain, and a
    reader of `exceptions_subject(ns, ANY_TOKEN)` (one token) never mistakes them for an exception.
    """
    return f"{exceptions_subject(namespace, integration)}.candidates"


def decisions_subject(namespace: str, integration: str) -> str:
    """People's decisions about an Integration's exceptions."""
    return f"{_area(namespace, 'decisions')}.{integration}"


def exception_decision_subject(namespace: str, integration: str, sequence: int) -> str:
    """The one decision about one exception: written compare-and-set, so the first decision is the only one."""
    return f"{decisions_subject(namespace, integration)}.{sequence}"


def dlq_subject(namespace: str, integration: str) -> str:
    """Records of an Integration that ran out of deliveries."""
    return f"{_area(namespace, 'dlq')}.{integration}"


def audit_subject(namespace: str, integration: str) -> str:
    """One entry per step outcome and decision of an Integration."""
    return f"{_area(namespace, 'audit')}.{integration}"


def stats_subject(namespace: str, integration: str) -> str:
    """Heartbeats of an Integration's runners (core NATS)."""
    return f"{_area(namespace, 'stats')}.{integration}"


def stored_lookup_subject(namespace: str, stream: str, sequence: int) -> str:
    """Where a namespace's runner asks the operator for a stored record by sequence (core NATS request).

    A namespace's NATS user may not read a shared stream by sequence (that reads anyone's record),
    so the operator reads it and answers only when the record lies under the asking namespace.
    """
    return f"{namespace_root(namespace)}._stored.{stream}.{sequence}"


def stream_of_trigger(subject: str) -> str:
    """The stream that stores a trigger subject: canonical events, or else what gateways accepted."""
    tokens = subject.split(".")
    return EVENTS_STREAM if len(tokens) > 2 and tokens[0] == ROOT and tokens[2] == "events" else IN_STREAM


def rollout_subject(namespace: str, integration: str, stream: str) -> str:
    """Where split markers of an Integration go: in its trigger's stream, so they are ordered with its records."""
    area: Area = "events" if stream == EVENTS_STREAM else "in"
    return f"{_area(namespace, area)}.{_ROLLOUT_TOKEN}.{integration}"


def poll_subject(namespace: str, integration: str) -> str:
    """Where a schedule trigger's poller publishes the rows it read (the Integration's intake)."""
    return f"{_area(namespace, 'in')}.{_POLL_TOKEN}.{integration}"


def poll_bucket(namespace: str) -> str:
    """The KV bucket of a namespace's poll watermarks and leases (no TTL: a watermark must not expire)."""
    return f"{ROOT}-poll-{namespace}"


def poll_watermark_key(integration: str) -> str:
    """The key of an Integration's watermark in `poll_bucket` (one per Integration, not per revision)."""
    return f"{integration}.watermark"


def poll_lease_key(integration: str) -> str:
    """The key of an Integration's poll lease: whoever holds it is the one poller."""
    return f"{integration}.lease"


def consumer_name(namespace: str, integration: str) -> str:
    """The durable consumer of an Integration's main lane (consumer names are global to a stream)."""
    return f"{namespace}_{integration}"


def edi_outbound_consumer(namespace: str, connector: str) -> str:
    """The durable consumer of the documents `sendEdi` steps hand to one EDI partner's pod.

    Named by namespace (consumer names are global to the shared stream, so two namespaces' partners
    of the same name must not share one) with a double underscore, which no Integration's consumer
    name (`<namespace>_<integration>[_canary]`, DNS labels) can contain.
    """
    return f"{namespace}__edi_{connector}"


def kv_bucket(namespace: str) -> str:
    """The key-value bucket of a namespace's completed business keys."""
    return f"{ROOT}-keys-{namespace}"


def edi_bucket(namespace: str) -> str:
    """The key-value bucket of a namespace's EDI state: control number counters, sent documents, files seen."""
    return f"{ROOT}-edi-{namespace}"


#: The token after `in` under which `sendEdi` steps hand documents to a partner's EDI pod. It holds
#: an underscore, which no Kubernetes name may, so it never collides with a Connector's prefix.
EDI_OUTBOUND_TOKEN: Final = "_edi_outbound"


def edi_outbound_prefix(namespace: str, connector: str) -> str:
    """Where `sendEdi` steps put the records a partner's EDI pod turns into documents; the set id is appended."""
    return f"{_area(namespace, 'in')}.{EDI_OUTBOUND_TOKEN}.{connector}"


def edi_outbound_subject(namespace: str, connector: str, document: str) -> str:
    """One document kind (855, 856, 810) to send to one EDI partner Connector."""
    return f"{edi_outbound_prefix(namespace, connector)}.{document}"


def kv_stream(bucket: str) -> str:
    """The stream behind a JetStream KV bucket."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject one key of a KV bucket is stored on (what compare-and-set publishes go to)."""
    return f"$KV.{bucket}.{key}"


def max_deliveries_advisory(stream: str, consumer: str) -> str:
    """JetStream's advisory for a message of `consumer` that ran out of deliveries (kept in ADVISORIES_STREAM)."""
    return f"{ADVISORY_SUBJECTS[0].removesuffix(ANY_TAIL)}{stream}.{consumer}"


def namespace_of(subject: str) -> str:
    """The namespace token of an `onceflow.<ns>.…` subject; ValueError for any other subject."""
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != ROOT:
        raise ValueError(f"{subject!r} is not an onceflow subject (onceflow.<namespace>.<area>...)")
    return tokens[1]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching (`*` one token, `>` the rest)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ANY_TAIL:
            return len(have) > i
        if i >= len(have) or (token != ANY_TOKEN and token != have[i]):
            return False
    return len(want) == len(have)
