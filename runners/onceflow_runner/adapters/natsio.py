"""Everything the data plane says to NATS JetStream, in one module (with `keystore`, its KV part).

The settle path's acknowledged writes go through `pubacks` (one reply inbox, PubAcks read lean).

Streams follow DESIGN.md's layout (one stream per purpose, subjects prefixed by namespace).
The data plane never creates or changes topology: the operator creates the streams, each lane's
durable pull consumer and the namespace's KV buckets (`onceflow_operator.clients.topology`), and a
gateway, runner or job only binds to them (`bind`): it looks each one up and, while one is
missing, logs what it waits for and stays not ready. That is what keeps a pod start from resetting
a stream's settings or scaling an R3 stream down, and what lets a pod's NATS identity lack every
stream and consumer management permission. Business keys are claimed and marked done in a KV
bucket per namespace (`keystore`), so a record re-sent long after JetStream's duplicate window,
or twice at once, still has one effect. Each lane also reads its consumer's max-delivery
advisories, so a record JetStream gave up on becomes a dead letter instead of disappearing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import nats
import nats.errors
from nats.aio.client import Client, RawCredentials
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
)
from nats.js.errors import BucketNotFoundError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from onceflow_runner import tracing
from onceflow_runner.adapters import pulls
from onceflow_runner.adapters.keystore import KeyStore
from onceflow_runner.adapters.pubacks import AckedPublisher, encode_block, header_block, header_line
from onceflow_runner.adapters.pulls import Puller
from onceflow_runner.contract import headers as h
from onceflow_runner.contract import subjects
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.environment import NAMESPACE_ENV
from onceflow_runner.contract.headers import NATS_MSG_ID
from onceflow_runner.contract.keys import bounded_id, bounded_key
from onceflow_runner.contract.messages import Heartbeat, ParkedCandidates
from onceflow_runner.contract.plan import NatsPlan, Plan
from onceflow_runner.contract.split import Lane, SplitMarker, SplitTable
from onceflow_runner.errors import WireFormatError

__all__ = [
    "AUTH_ENV",
    "RUNNER_PROCESSES",
    "STORED_STATUS",
    "STORED_SUBJECT",
    "STORED_TIME",
    "JetStreamEvents",
    "JetStreamWiring",
    "StoredMessage",
    "ack_floor",
    "advisory_config",
    "advisory_consumer",
    "auth_from_environment",
    "bind",
    "bind_bucket",
    "bind_consumer",
    "bind_stream",
    "connect",
    "consumer_config",
    "edi_outbound_config",
    "get_stored",
    "lane_consumer",
    "publish_split",
    "read_split",
    "remove_consumer",
    "rollout_subject",
    "server_urls",
    "subscribe_stats",
    "when_available",
]

#: Runner processes (replicas x processes per pod) that one lane's consumer serves at full
#: concurrency each: its max ack pending is the plan's concurrency times this.
RUNNER_PROCESSES = 64


#: Environment variables a process reads its NATS credentials from (filled from a Secret in pods):
#: user + password, a token, or a `.creds` file's content (a user JWT and its nkey seed).
AUTH_ENV = ("ONCEFLOW_NATS_USER", "ONCEFLOW_NATS_PASSWORD", "ONCEFLOW_NATS_TOKEN", "ONCEFLOW_NATS_CREDS")
#: A `.creds` file's path (the operator's own, mounted; `onceflow` commands run by people).
CREDS_FILE_ENV = "ONCEFLOW_NATS_CREDS_FILE"
#: The reply inbox prefix (`_INBOX_<namespace>` for a namespace's processes: their user reads no other replies).
INBOX_PREFIX_ENV = "ONCEFLOW_NATS_INBOX_PREFIX"


def auth_from_environment() -> dict[str, Any]:
    """Credentials for nats.connect: a `.creds` (content or file), else user and password, else a token."""
    user, password, token, creds = (os.environ.get(name, "") for name in AUTH_ENV)
    found: dict[str, Any] = {}
    if creds.strip():
        found["user_credentials"] = RawCredentials(creds)
    elif os.environ.get(CREDS_FILE_ENV, "").strip():
        found["user_credentials"] = os.environ[CREDS_FILE_ENV].strip()
    elif token:
        found["token"] = token
    elif user:
        found.update(user=user, password=password)
    namespace = os.environ.get(NAMESPACE_ENV, "").strip()
    if os.environ.get(INBOX_PREFIX_ENV, "").strip():
        found["inbox_prefix"] = os.environ[INBOX_PREFIX_ENV].strip()
    elif namespace and "user_credentials" in found:
        found["inbox_prefix"] = subjects.inbox_prefix(namespace)
    return found


def server_urls(url: str) -> list[str]:
    """The servers of a `--nats` value: one URL, or several separated by commas (a cluster's seeds).

    nats-py takes a list but treats a string as one URL; NATS tools accept `nats://a,nats://b`,
    and a client that knows every seed can start while any one of them is down.
    """
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, *, name: str, credentials: str | None = None) -> Client:
    """Connect with endless reconnects: a broker restart must not end a runner or gateway.

    `credentials` (a `.creds` text) replaces the environment's: the operator's connection into a
    namespace's account (account isolation) uses a user it minted for that account.
    """
    auth = {"user_credentials": RawCredentials(credentials)} if credentials else auth_from_environment()
    return await nats.connect(
        server_urls(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        **auth,
    )


T = TypeVar("T")

log = logging.getLogger("onceflow.nats")

#: Seconds between lookups of a missing stream, consumer or bucket: quick at first (the operator is
#: usually a moment behind a new Deployment), then no faster than this cap.
BIND_RETRY_CAP = 5.0


async def bind(what: str, lookup: Callable[[], Awaitable[T]], *, first_wait: float = 0.2) -> T:
    """Look `what` up until it exists; log once while it does not (the operator creates it).

    Only NotFoundError (and a missing bucket) is waited out; any other error (no permission,
    NATS away) is raised for the caller, which has its own retry and readiness.
    """
    wait, logged = first_wait, False
    while True:
        try:
            return await lookup()
        except (NotFoundError, BucketNotFoundError):
            if not logged:
                log.warning(
                    "waiting for the operator to create %s; not ready until it exists"
                    " (only the operator creates streams, consumers and KV buckets)",
                    what,
                )
                logged = True
        await asyncio.sleep(wait)
        wait = min(wait * 2, BIND_RETRY_CAP)


async def bind_stream(js: JetStreamContext, stream: str) -> Any:
    """The stream's info, once the operator created the stream (see `bind`)."""
    return await bind(f"stream {stream}", lambda: js.stream_info(stream))


async def bind_consumer(js: JetStreamContext, stream: str, consumer: str) -> Any:
    """The durable consumer's info, once the operator created it (see `bind`)."""
    return await bind(f"consumer {consumer} on stream {stream}", lambda: js.consumer_info(stream, consumer))


async def bind_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """The KV bucket, once the operator created it (see `bind`)."""
    return await bind(f"KV bucket {bucket}", lambda: js.key_value(bucket))


def rollout_subject(names: NatsPlan, namespace: str, integration: str) -> str:
    """Where split markers for an Integration go: in its trigger's stream, so they are ordered with its records."""
    return subjects.rollout_subject(namespace, integration, names.stream)


def lane_consumer(plan: Plan, lane: Lane) -> str:
    """The durable consumer a lane reads."""
    return plan.nats.consumer if lane == "main" else f"{plan.nats.consumer}_canary"


def consumer_config(plan: Plan, lane: Lane = "main", start_sequence: int | None = None) -> ConsumerConfig:
    """The durable pull consumer of one Integration lane, as its plan says.

    Both lanes also receive the Integration's split markers (see `split.py`), which is what lets
    the operator tell when a lane has settled everything before a marker. The canary lane starts
    at the rollout's first marker. The backoff list is *not* set on the consumer: JetStream would
    then use it as the ack deadline of each delivery, cutting short a slow but healthy call.
    `ack_wait` bounds a delivery; the backoff delays are applied by the runner with `nak(delay)`.
    """
    policy = plan.error_policy
    markers = rollout_subject(plan.nats, plan.namespace, plan.integration)
    filters = (
        [plan.nats.subject] if subjects.subject_matches(plan.nats.subject, markers) else [plan.nats.subject, markers]
    )
    name = lane_consumer(plan, lane)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"onceflow integration {plan.namespace}/{plan.integration} ({lane} lane)",
        deliver_policy=DeliverPolicy.ALL if start_sequence is None else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_sequence,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=policy.ack_wait,
        max_deliver=policy.max_deliver,
        filter_subjects=filters,
        # `concurrency` is each process's own limit (its pull loop fetches no more); the consumer
        # lets up to RUNNER_PROCESSES of them work at once, so replicas add capacity instead of
        # sharing one process's worth.
        max_ack_pending=plan.concurrency * RUNNER_PROCESSES,
    )


def edi_outbound_config(plan: EdiPartnerPlan) -> ConsumerConfig:
    """The durable consumer an EDI partner's pods read the documents `sendEdi` steps hand over from.

    Created by the operator (clients/topology.py) like every consumer; the pods only bind. Its ack
    deadline covers one pass of the pod (a document is settled within the pass that took it).
    """
    name = subjects.edi_outbound_consumer(plan.namespace, plan.connector)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"onceflow EDI partner {plan.namespace}/{plan.connector}: documents to send",
        filter_subject=f"{subjects.edi_outbound_prefix(plan.namespace, plan.connector)}.>",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=max(60.0, plan.sftp.lease_seconds),
        max_ack_pending=1000,
    )


def advisory_consumer(consumer: str) -> str:
    """The durable consumer (in ADVISORIES_STREAM) that reads `consumer`'s max-delivery advisories."""
    return f"{consumer}_advisories"


def advisory_config(plan: Plan, lane: Lane = "main") -> ConsumerConfig:
    """The durable consumer of a lane's max-delivery advisories (in ADVISORIES_STREAM), read by its runners."""
    name = advisory_consumer(lane_consumer(plan, lane))
    return ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"onceflow integration {plan.namespace}/{plan.integration}: records out of deliveries",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        filter_subject=subjects.max_deliveries_advisory(plan.nats.stream, lane_consumer(plan, lane)),
    )


#: Seconds a JetStream API call or publish waits for its answer.
JS_TIMEOUT: Final = 5.0

#: Bytes left for a message's headers when its body is fitted to the server's `max_payload`.
_HEADER_ROOM = 4096


@dataclass
class JetStreamWiring:
    """One revision's JetStream handles: its consumer subscription, publishers and key store."""

    nc: Client
    js: JetStreamContext
    keys: KeyStore
    plan: Plan

    lane: Lane = "main"
    #: The settle path's acknowledged writes (see `pubacks`); made on first use when not given.
    acks: AckedPublisher | None = None

    @classmethod
    async def open(cls, nc: Client, plan: Plan, lane: Lane = "main") -> JetStreamWiring:
        """Bind the lane's consumer, its advisory consumer and the namespace's key bucket; create nothing."""
        js = nc.jetstream(timeout=JS_TIMEOUT)
        await bind_consumer(js, plan.nats.stream, lane_consumer(plan, lane))
        await bind_consumer(js, subjects.ADVISORIES_STREAM, advisory_consumer(lane_consumer(plan, lane)))
        await bind_bucket(js, plan.nats.kv_bucket)
        acks = AckedPublisher(nc, timeout=JS_TIMEOUT)
        keys = KeyStore(js, plan.nats.kv_bucket, plan.integration, plan.revision, acks)
        return cls(nc, js, keys, plan, lane, acks)

    async def subscribe(self) -> Puller | JetStreamContext.PullSubscription:
        """The lane's consumer to fetch from: a `pulls.Puller`, or nats-py's pull subscription without it."""
        consumer = lane_consumer(self.plan, self.lane)
        if not pulls.supported(self.nc):
            return await self.js.pull_subscribe_bind(consumer, stream=self.plan.nats.stream)
        puller = Puller(self.js, self.plan.nats.stream, consumer)
        await puller.start()
        return puller

    async def subscribe_advisories(self) -> JetStreamContext.PullSubscription:
        """The lane's max-delivery advisories (see `advisory_config`)."""
        name = advisory_config(self.plan, self.lane).durable_name
        return await self.js.pull_subscribe_bind(str(name), stream=subjects.ADVISORIES_STREAM)

    async def split_table(self) -> SplitTable | None:
        return await read_split(self.js, self.plan.nats.stream, self.rollout_subject)

    @property
    def rollout_subject(self) -> str:
        return rollout_subject(self.plan.nats, self.plan.namespace, self.plan.integration)

    async def publish(self, subject: str, payload: bytes, headers: Mapping[str, str], msg_id: str) -> bool:
        """Publish to a stream and wait for its PubAck; return True when it was a duplicate.

        The message id is bounded (`contract.keys.bounded_id`): a long one is hashed, never cut.
        """
        return await self.publish_block(subject, payload, header_block({**headers, NATS_MSG_ID: bounded_id(msg_id)}))

    async def publish_block(self, subject: str, payload: bytes, block: bytes) -> bool:
        """As `publish`, with the header block (its `Nats-Msg-Id` included) already encoded."""
        if self.acks is None:
            self.acks = AckedPublisher(self.nc, timeout=JS_TIMEOUT)
        stored = await self.acks.publish_block(subject, payload, block)
        return stored.duplicate

    async def publish_candidates(self, candidates: ParkedCandidates, msg_id: str | None = None) -> int:
        """Store a parked duplicate's candidates in full beside the exceptions; return their stream sequence.

        The body is cut to what the server accepts (`ParkedCandidates.fitted`, less room for the
        headers), so a long candidate list never turns into a publish the server refuses forever.
        A retried park within the duplicate window gets the sequence of the copy stored first: the
        message id names the namespace, Integration, the stream it reads and the record's sequence
        there, since the exceptions stream is shared and a same-named Integration elsewhere (or one
        reading events) meets the same sequence numbers.
        """
        subject = subjects.exception_candidates_subject(self.plan.namespace, self.plan.integration)
        if msg_id is None:
            msg_id = (
                f"candidates/{self.plan.namespace}/{self.plan.integration}/{self.plan.nats.stream}/"
                f"{candidates.stream_sequence}"
            )
        _, body = candidates.fitted(max(self.nc.max_payload - _HEADER_ROOM, 1024))
        ack = await self.js.publish(subject, body, headers={NATS_MSG_ID: bounded_id(msg_id)})
        return int(ack.seq)

    async def stored(self, stream: str, sequence: int) -> StoredMessage | None:
        """One stored message by its sequence (a record an advisory names), or None when it is gone.

        Asked of the operator first (`subjects.stored_lookup_subject`): a namespace's NATS user may
        not read a shared stream by sequence. Without an operator answering (a local run, NATS
        without per-namespace users), read directly.
        """
        subject = subjects.stored_lookup_subject(self.plan.namespace, stream, sequence)
        try:
            reply = await self.nc.request(subject, b"", timeout=5)
        except nats.errors.NoRespondersError:
            return await get_stored(self.js, stream, sequence)
        found = dict(reply.headers or {})
        if found.pop(STORED_STATUS, "") != "200":
            return None
        return StoredMessage(
            stream, sequence, found.pop(STORED_SUBJECT, ""), found, reply.data or b"", found.pop(STORED_TIME, "")
        )

    async def publish_untracked(self, subject: str, payload: bytes) -> None:
        """Core-NATS publish (no PubAck): for audit entries and heartbeats, never for records."""
        await self.nc.publish(subject, payload)


class JetStreamEvents:
    """EventSink that publishes canonical CloudEvents (binary mode) to ONCEFLOW_EVENTS.

    Why the header block is assembled here: of an event's ten or so headers only the id, the
    time, the origin system, the traceparent and the message id change per record; the rest are
    encoded once per entity and verb. The bytes are `header_block`'s for the same headers in
    the same order (ce-specversion, ce-type, ce-source, ce-id, ce-time, content-type, origin,
    origin system, revision, traceparent, Nats-Msg-Id), which tests/unit/test_header_block.py
    checks against `cloudevent_headers`.
    """

    def __init__(self, wiring: JetStreamWiring) -> None:
        self.wiring = wiring
        self.plan = wiring.plan
        plan = self.plan
        #: (entity, verb) -> (subject, the lines before ce-id).
        self._heads: dict[tuple[str, str], tuple[str, str]] = {}
        #: The lines between ce-time and the origin system: always the same.
        self._middle = header_line(h.CE_CONTENT_TYPE, "application/json") + header_line(h.ORIGIN, plan.source)
        self._revision = header_line(h.REVISION, plan.revision)
        self._origin_system = header_line(h.ORIGIN_SYSTEM, plan.source_system) if plan.source_system else ""
        self._scope = f"{plan.namespace}/{plan.integration}/"

    def _head(self, entity: str, verb: str) -> tuple[str, str]:
        found = self._heads.get((entity, verb))
        if found is None:
            source = f"/namespaces/{self.plan.namespace}/integrations/{self.plan.integration}"
            lines = (
                header_line(h.CE_SPECVERSION, h.CLOUDEVENTS_VERSION)
                + header_line(h.CE_TYPE, f"io.onceflow.{entity}.{verb}")
                + header_line(h.CE_SOURCE, source)
            )
            found = self._heads[(entity, verb)] = (f"{self.plan.nats.events_prefix}.{entity}.{verb}", lines)
        return found

    async def publish_event(self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]) -> None:
        subject, head = self._head(entity, verb)
        origin_system = meta.get("originSystem")
        # With tracing on, the event names the step that published it (same trace, one hop deeper).
        traceparent = tracing.current_traceparent() or meta.get("traceparent")
        block = (
            "NATS/1.0\r\n"
            + head
            + header_line(h.CE_ID, bounded_key(str(meta["businessKey"])))
            + header_line(h.CE_TIME, datetime.now(UTC).isoformat())
            + self._middle
            + (header_line(h.ORIGIN_SYSTEM, str(origin_system)) if origin_system else self._origin_system)
            + self._revision
            + (header_line(h.TRACEPARENT, str(traceparent)) if traceparent else "")
            # Scoped: another Integration (or namespace) may publish for the same business key and step name.
            + header_line(NATS_MSG_ID, bounded_id(self._scope + msg_id))
            + "\r\n"
        )
        await self.wiring.publish_block(subject, json.dumps(data, default=str).encode(), encode_block(block))

    async def hand_over_edi(
        self, connector: str, document: str, data: Any, *, step: str, msg_id: str, meta: Mapping[str, Any]
    ) -> None:
        """The record for a partner's EDI pod (docs/edi.md): it keys the document by the business key header."""
        headers = {
            h.BUSINESS_KEY: h.header_safe(str(meta["businessKey"])),
            h.INTEGRATION: self.plan.integration,
            h.REVISION: self.plan.revision,
            h.STEP: step,
            h.CONTENT_TYPE: "application/json",
        }
        if meta.get("traceparent"):
            headers[h.TRACEPARENT] = str(meta["traceparent"])
        subject = subjects.edi_outbound_subject(self.plan.namespace, connector, document)
        scoped = f"{self.plan.namespace}/{self.plan.integration}/{msg_id}"
        await self.wiring.publish(subject, json.dumps(data, default=str).encode(), headers, scoped)


async def read_split(js: JetStreamContext, stream: str, subject: str) -> SplitTable | None:
    """The newest split marker's table, or None when the Integration never had a rollout."""
    try:  # a direct get by subject: what a namespace's NATS permissions allow (see build/natsauth.py)
        msg = await js.get_last_msg(stream, subject, direct=True)
    except NotFoundError:
        return None
    return SplitTable.from_marker(int(msg.seq or 0), msg.data or b"{}")


async def publish_split(js: JetStreamContext, subject: str, table: SplitTable | None, weight: int) -> SplitTable:
    """Publish the next split marker; return the table it makes (its entry carries the marker's sequence)."""
    base = table or SplitTable()
    ack = await js.publish(subject, base.marker_payload(weight), headers=SplitMarker.headers())
    return base.then(int(ack.seq), weight)


async def ack_floor(js: JetStreamContext, stream: str, consumer: str) -> int | None:
    """Stream sequence up to which a consumer has settled everything; None when it does not exist."""
    try:
        info = await js.consumer_info(stream, consumer)
    except NotFoundError:
        return None
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


async def remove_consumer(js: JetStreamContext, stream: str, consumer: str) -> bool:
    """Delete a durable consumer; False when it was already gone."""
    try:
        return bool(await js.delete_consumer(stream, consumer))
    except NotFoundError:
        return False


async def subscribe_stats(
    nc: Client, handler: Callable[[str, Heartbeat], None], *, namespace: str | None = None
) -> None:
    """Hand every runner heartbeat (`onceflow.<ns>.stats.<integration>`) to `handler(namespace, beat)`.

    Of every namespace, or of `namespace` only (a gateway reads its own namespace's runners).

    A heartbeat that is not one (not JSON, or not a Heartbeat) is dropped: it is figures, not a
    record, and the next one comes in seconds.
    """

    async def on_message(msg: Msg) -> None:
        try:
            beat = Heartbeat.from_wire(msg.data)
            namespace = subjects.namespace_of(msg.subject)
        except (WireFormatError, ValueError):
            return
        handler(namespace, beat)

    subject = subjects.stats_subject(namespace, subjects.ANY_TOKEN) if namespace else subjects.STATS_SUBSCRIPTION
    await nc.subscribe(subject, cb=on_message)


#: Headers of the operator's answer to a stored-record lookup (beside the record's own headers).
STORED_STATUS = "Onceflow-Stored-Status"
STORED_SUBJECT = "Onceflow-Stored-Subject"
STORED_TIME = "Onceflow-Stored-Time"


@dataclass(frozen=True)
class StoredMessage:
    """A message as a stream keeps it."""

    stream: str
    sequence: int
    subject: str
    headers: dict[str, str]
    data: bytes
    time: str


async def get_stored(js: JetStreamContext, stream: str, sequence: int) -> StoredMessage | None:
    """One stored message by its sequence, or None."""
    try:
        msg = await js.get_msg(stream, sequence)
    except NotFoundError:
        return None
    stamp = msg.time.isoformat() if msg.time else ""
    return StoredMessage(stream, sequence, msg.subject or "", dict(msg.headers or {}), msg.data or b"", stamp)


#: What JetStream answers while a stream, consumer or the meta group has no leader (an election
#: after a node died, quorum lost on a cluster, a server restarting): a wait, not a refusal.
UNAVAILABLE: Final = (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError, TimeoutError)
#: Longest pause between two tries of `when_available`.
UNAVAILABLE_RETRY_CAP: Final = 5.0


async def when_available(what: str, call: Callable[[], Awaitable[T]], *, first_wait: float = 0.2) -> T:
    """`call()`, tried again while JetStream is unavailable (see UNAVAILABLE); one warning names `what`.

    Why: a runner or gateway that starts while its stream has no leader (a NATS node was killed
    and the cluster is electing, or two of three are down) exited with a traceback, and in
    Kubernetes then waited out a growing crash-loop back-off after NATS was back. Waiting here, not
    ready meanwhile, it starts as soon as JetStream answers. Any other error is raised.
    """
    wait, logged = first_wait, False
    while True:
        try:
            return await call()
        except UNAVAILABLE as exc:
            if not logged:
                log.warning(
                    "JetStream unavailable; waiting for it (not ready until then)",
                    extra={"waiting_for": what, "error": type(exc).__name__},
                )
                logged = True
        await asyncio.sleep(wait)
        wait = min(wait * 2, UNAVAILABLE_RETRY_CAP)
