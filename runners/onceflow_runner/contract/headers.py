"""NATS header names both planes use, defined once, and the one CloudEvents header builder (pure).

Records move through NATS with their business meaning in headers:

- JetStream's `Nats-Msg-Id` (de-duplication) and W3C `traceparent` (one trace across systems);
- CloudEvents binary mode (`ce-specversion`, `ce-type`, `ce-source`, `ce-id`, `ce-time`,
  `content-type`), built only by `cloudevent_headers`: gateways, runner events, drift results;
- `Onceflow-*`: where a record came from (origin, event, sender's delivery id), why it was
  parked (reason, error, step, ...), what a person decided, and the rollout marker.

NATS header values are one line each; `header_safe` is applied to any free text (an error
message, a business key) before it becomes a header value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "APPROVED_STEPS",
    "BUSINESS_KEY",
    "CANDIDATES",
    "CANDIDATES_AT",
    "CE_CONTENT_TYPE",
    "CE_ID",
    "CE_SOURCE",
    "CE_SPECVERSION",
    "CE_TIME",
    "CE_TYPE",
    "CLOUDEVENTS_VERSION",
    "CONTENT_TYPE",
    "DECIDED_BY",
    "DECISION",
    "DELIVERIES",
    "DELIVERY_ID",
    "ENTITY",
    "ERROR",
    "EVENT",
    "EXPECTED_LAST_SUBJECT_SEQUENCE",
    "IDEMPOTENCY_KEY",
    "INTEGRATION",
    "KV_DELETE",
    "KV_OPERATION",
    "KV_PURGE",
    "NATS_MSG_ID",
    "ONCEFLOW_PREFIX",
    "ORIGIN",
    "ORIGINAL_SUBJECT",
    "ORIGIN_SYSTEM",
    "REASON",
    "REFLECTED",
    "REFUSED_REQUEST_HEADERS",
    "REVISION",
    "ROLLOUT",
    "SENDER_DELIVERY_ID",
    "STEP",
    "STREAM_SEQUENCE",
    "SUGGESTION",
    "TRACEPARENT",
    "cloudevent_headers",
    "header_safe",
    "refused_request_header",
    "w3c_traceparent",
]

# -- NATS, W3C and HTTP -------------------------------------------------------------------------
NATS_MSG_ID: Final = "Nats-Msg-Id"
TRACEPARENT: Final = "traceparent"
#: Headers JetStream puts on a direct get's answer. Onceflow never publishes them, so a stored
#: message carrying one was reflected: NATS checks no permission on a reply subject, and a
#: namespace's user can have a direct get of its own record answered onto another subject
#: (docs/install.md, "What per-namespace users do not stop").
REFLECTED: Final = ("Nats-Stream", "Nats-Sequence")
#: The record's own content type, as the sender declared it (set by the gateway).
CONTENT_TYPE: Final = "Content-Type"
#: Outbound HTTP calls carry the business idempotency key here.
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
#: JetStream compare-and-set: the publish is stored only if the subject's last sequence is this (0: none).
EXPECTED_LAST_SUBJECT_SEQUENCE: Final = "Nats-Expected-Last-Subject-Sequence"
#: JetStream KV: an entry that is a delete or purge marker says so here.
KV_OPERATION: Final = "KV-Operation"
KV_DELETE: Final = "DEL"
KV_PURGE: Final = "PURGE"

# -- CloudEvents, binary mode -------------------------------------------------------------------
CLOUDEVENTS_VERSION: Final = "1.0"
CE_SPECVERSION: Final = "ce-specversion"
CE_TYPE: Final = "ce-type"
CE_SOURCE: Final = "ce-source"
CE_ID: Final = "ce-id"
CE_TIME: Final = "ce-time"
#: `datacontenttype` in binary mode (events the data plane writes itself).
CE_CONTENT_TYPE: Final = "content-type"

# -- Onceflow: where a record came from -----------------------------------------------------------
ONCEFLOW_PREFIX: Final = "Onceflow-"
ORIGIN: Final = "Onceflow-Origin"
#: The system (a Connector's `spec.system`, e.g. erpnext) the record came from: a webhook Connector
#: and the REST Connector of the same system have different names, so echoes are judged by system.
ORIGIN_SYSTEM: Final = "Onceflow-Origin-System"
EVENT: Final = "Onceflow-Event"
DELIVERY_ID: Final = "Onceflow-Delivery-Id"
#: The delivery id the sender *claimed* in an unsigned header (github, shopify, hmac): for tracing only.
SENDER_DELIVERY_ID: Final = "Onceflow-Sender-Delivery-Id"
REVISION: Final = "Onceflow-Revision"

# -- Onceflow: why a record was parked (exception and dead-letter streams) ------------------------
REASON: Final = "Onceflow-Reason"
ERROR: Final = "Onceflow-Error"
STEP: Final = "Onceflow-Step"
INTEGRATION: Final = "Onceflow-Integration"
BUSINESS_KEY: Final = "Onceflow-Business-Key"
ORIGINAL_SUBJECT: Final = "Onceflow-Original-Subject"
STREAM_SEQUENCE: Final = "Onceflow-Stream-Sequence"
DELIVERIES: Final = "Onceflow-Deliveries"
#: Candidates cut to fit one header: written before they were stored in full (`CANDIDATES_AT`), still read.
CANDIDATES: Final = "Onceflow-Candidates"
#: Stream sequence of the message holding a parked duplicate's candidates in full (`ParkedCandidates`).
CANDIDATES_AT: Final = "Onceflow-Candidates-At"
#: The SyncPolicy entity (customer, item, ...) of a record parked as a possible duplicate.
ENTITY: Final = "Onceflow-Entity"
SUGGESTION: Final = "Onceflow-Suggestion"

# -- Onceflow: a person's decision, on a record sent through again --------------------------------
DECISION: Final = "Onceflow-Decision"
DECIDED_BY: Final = "Onceflow-Decided-By"
#: The approval gates people let this record through, comma-separated step names: an approval is
#: for the step the record was parked at, and earlier approvals of the same record stay with it.
APPROVED_STEPS: Final = "Onceflow-Approved-Steps"

# -- Onceflow: a canary rollout's split marker (see contract/split.py) ---------------------------
ROLLOUT: Final = "Onceflow-Rollout"


#: W3C Trace Context: version, trace id, parent id, flags; a later version may add `-...` fields.
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)


def w3c_traceparent(value: str | None) -> str | None:
    """The version-00 traceparent a W3C `traceparent` value names; None when it names none.

    Why: a webhook sender writes this header, and the record carries it to NATS and to every
    outbound call; passed on as sent, `00-é...` failed each HTTP step (non-ASCII header) and
    kilobytes of text reached every target. Rules of W3C Trace Context: lowercase hex, version
    `ff` and all-zero ids invalid, version 00 exactly 55 characters, a later version read for
    its first four fields; only the sampled flag is passed on.
    """
    found = _TRACEPARENT.fullmatch(value) if value else None
    if found is None:
        return None
    version, trace_id, parent_id, flags, extra = found.groups()
    if version == "ff" or (version == "00" and extra is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return f"00-{trace_id}-{parent_id}-{int(flags, 16) & 1:02x}"


def header_safe(text: str, limit: int = 1000) -> str:
    """NATS header values are one line."""
    return " ".join(str(text).split())[:limit]


def cloudevent_headers(
    *,
    event_type: str,
    source: str,
    event_id: str,
    time: str | None = None,
    content_type: str | None = None,
) -> dict[str, str]:
    """CloudEvents binary-mode headers: specversion, type, source, id, time (now unless given).

    Args:
        event_type: reverse-DNS event type, e.g. `io.onceflow.customer.created`.
        source: the producer, e.g. `/namespaces/sales/integrations/customer-sync`.
        event_id: the business idempotency key (or the sender's delivery id), unique per source.
        time: RFC 3339 time of the occurrence; now when not given.
        content_type: the data's media type, as `content-type`; left out when None (a gateway
            keeps the sender's own `Content-Type` instead).
    """
    headers = {
        CE_SPECVERSION: CLOUDEVENTS_VERSION,
        CE_TYPE: event_type,
        CE_SOURCE: source,
        CE_ID: event_id,
        CE_TIME: time if time is not None else datetime.now(UTC).isoformat(),
    }
    if content_type is not None:
        headers[CE_CONTENT_TYPE] = content_type
    return headers


#: Request headers a Connector or a step may not set (lowercase): hop-by-hop headers and framing
#: belong to the HTTP client, credentials to `rest.auth` (a header in a manifest is in Git, and
#: a Secret is the only place for them), and these three to Onceflow's delivery guarantees.
REFUSED_REQUEST_HEADERS: Final = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "host", "content-length", "content-type", "expect",
        "authorization", "proxy-authorization", "cookie",
        IDEMPOTENCY_KEY.lower(), TRACEPARENT.lower(), ORIGIN.lower(),
    }
)  # fmt: skip


def refused_request_header(name: str) -> str | None:
    """Why a Connector or step may not set header `name`, or None when it may."""
    lowered = name.lower()
    if lowered not in REFUSED_REQUEST_HEADERS and not lowered.startswith("proxy-"):
        return None
    if lowered in {"authorization", "proxy-authorization", "cookie"}:
        return f"header {name} carries credentials: set them through rest.auth from a Secret"
    if lowered in {IDEMPOTENCY_KEY.lower(), TRACEPARENT.lower(), ORIGIN.lower()}:
        return f"header {name} is set by Onceflow itself (idempotency key, trace, origin)"
    return f"header {name} belongs to the HTTP connection, which Onceflow's client manages"
