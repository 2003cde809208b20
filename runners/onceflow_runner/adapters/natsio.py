"""Everything the data plane says to NATS JetStream, in one module (with `keystore`, its KV part).

Streams follow DESIGN.md's layout (one stream per purpose, subjects prefixed by namespace).
A revision consumes through a durable pull consumer with explicit acks; creating it with the
plan's config on every start is also how drift is corrected (JetStream creates or updates a
consumer whose editable fields differ). Business keys are claimed and marked done in a KV bucket
per namespace (`keystore`), so a record re-sent long after JetStream's duplicate window, or
twice at once, still has one effect. Each lane also reads its consumer's max-delivery
advisories, so a record JetStream gave up on becomes a dead letter instead of disappearing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from onceflow_runner import tracing
from onceflow_runner.adapters.keystore import KeyStore
from onceflow_runner.contract import headers as h
from onceflow_runner.contract import subjects
from onceflow_runner.contract.headers import NATS_MSG_ID, cloudevent_headers
from onceflow_runner.contract.keys import bounded_id, bounded_key
from onceflow_runner.contract.messages import Heartbeat, ParkedCandidates
from onceflow_runner.contract.plan import NatsPlan, Plan
from onceflow_runner.contract.split import Lane, SplitMarker, SplitTable
from onceflow_runner.errors import WireFormatError

__all__ = [
    "AUTH_ENV",
    "RUNNER_PROCESSES",
    "STREAMS",
    "JetStreamEvents",
    "JetStreamWiring",
    "StoredMessage",
    "ack_floor",
    "advisory_config",
    "advisory_consumer",
    "auth_from_environment",
    "connect",
    "consumer_config",
    "ensure_streams",
    "get_stored",
    "lane_consumer",
    "provision_consumer",
    "publish_split",
    "read_split",
    "remove_consumer",
    "rollout_subject",
    "server_urls",
    "subscribe_stats",
    "when_available",
]

_DAY = 86400.0

#: name -> (subjects, max age in seconds, retention); subjects as `contract.subjects` lays them out.
STREAMS: dict[str, tuple[list[str], float, RetentionPolicy]] = {
    name: (subjects.stream_subjects(name), max_age, RetentionPolicy.LIMITS)
    for name, max_age in (
        (subjects.IN_STREAM, 7 * _DAY),
        (subjects.EVENTS_STREAM, 7 * _DAY),
        (subjects.EXCEPTIONS_STREAM, 90 * _DAY),
        (subjects.DECISIONS_STREAM, 90 * _DAY),
        (subjects.DLQ_STREAM, 90 * _DAY),
        (subjects.AUDIT_STREAM, 30 * _DAY),
        # JetStream's own advisories, kept so that no max-deliveries or termination goes unseen.
        (subjects.ADVISORIES_STREAM, 30 * _DAY),
    )
}
KEY_TTL = 90 * _DAY
#: Runner processes (replicas x processes per pod) that one lane's consumer serves at full
#: concurrency each: its max ack pending is the plan's concurrency times this.
RUNNER_PROCESSES = 64


#: Environment variables a process reads its NATS credentials from (filled from a Secret in pods).
AUTH_ENV = ("ONCEFLOW_NATS_USER", "ONCEFLOW_NATS_PASSWORD", "ONCEFLOW_NATS_TOKEN")


def auth_from_environment() -> dict[str, str]:
    """User and password, or a token, for nats.connect; nothing when none is set."""
    user, password, token = (os.environ.get(name, "") for name in AUTH_ENV)
    if token:
        return {"token": token}
    if user:
        return {"user": user, "password": password}
    return {}


def server_urls(url: str) -> list[str]:
    """The servers of a `--nats` value: one URL, or several separated by commas (a cluster's seeds).

    nats-py takes a list but treats a string as one URL; NATS tools accept `nats://a,nats://b`,
    and a client that knows every seed can start while any one of them is down.
    """
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, *, name: str) -> Client:
    """Connect with endless reconnects: a broker restart must not end a runner or gateway."""
    return await nats.connect(
        server_urls(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        **auth_from_environment(),
    )


#: Durable consumers one stream may hold. Set explicitly because nats-server (2.15 measured) caps a
#: stream that leaves `max_consumers` unset (-1) at 1,000: every Integration has a consumer per lane
#: on its trigger's stream, so the 1,001st Integration of a cluster could not be provisioned (the
#: "800 of 1,000 Ready" of issue #14, after 200 earlier ones). Raising it is allowed on a live stream.
MAX_CONSUMERS_PER_STREAM = 100_000


async def ensure_streams(js: JetStreamContext, *, replicas: int | None = None) -> None:
    """Create every Onceflow stream, or update it to the expected subjects and limits.

    `replicas` None (what a pod start passes): a new stream gets one replica and an existing one
    keeps its own, so a gateway or runner starting never scales an R3 stream down to R1 (issue
    #12; its first item moves stream management to the operator altogether).
    """
    for name, (filters, max_age, retention) in STREAMS.items():
        config = StreamConfig(
            name=name,
            subjects=filters,
            retention=retention,
            storage=StorageType.FILE,
            max_age=max_age,
            num_replicas=replicas or 1,
            duplicate_window=float(subjects.DUPLICATE_WINDOW_SECONDS),
            max_consumers=MAX_CONSUMERS_PER_STREAM,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            if replicas is None:
                config.num_replicas = (await js.stream_info(name)).config.num_replicas
            await js.update_stream(config)


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

    @classmethod
    async def open(cls, nc: Client, plan: Plan, lane: Lane = "main") -> JetStreamWiring:
        js = nc.jetstream(timeout=5)
        await ensure_streams(js)
        if lane == "main":  # the canary lane's consumer is made by the operator, at the rollout's first marker
            await js.add_consumer(plan.nats.stream, consumer_config(plan))
        await js.add_consumer(subjects.ADVISORIES_STREAM, advisory_config(plan, lane))
        try:
            await js.key_value(plan.nats.kv_bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(KeyValueConfig(bucket=plan.nats.kv_bucket, history=1, ttl=KEY_TTL))
        return cls(nc, js, KeyStore(js, plan.nats.kv_bucket, plan.integration, plan.revision), plan, lane)

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        return await self.js.pull_subscribe_bind(lane_consumer(self.plan, self.lane), stream=self.plan.nats.stream)

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
        ack = await self.js.publish(subject, payload, headers={**headers, NATS_MSG_ID: bounded_id(msg_id)})
        return bool(ack.duplicate)

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
        """One stored message by its sequence (a record an advisory names), or None when it is gone."""
        return await get_stored(self.js, stream, sequence)

    async def publish_untracked(self, subject: str, payload: bytes) -> None:
        """Core-NATS publish (no PubAck): for audit entries and heartbeats, never for records."""
        await self.nc.publish(subject, payload)


class JetStreamEvents:
    """EventSink that publishes canonical CloudEvents (binary mode) to ONCEFLOW_EVENTS."""

    def __init__(self, wiring: JetStreamWiring) -> None:
        self.wiring = wiring
        self.plan = wiring.plan

    async def publish_event(self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]) -> None:
        headers = cloudevent_headers(
            event_type=f"io.onceflow.{entity}.{verb}",
            source=f"/namespaces/{self.plan.namespace}/integrations/{self.plan.integration}",
            event_id=bounded_key(str(meta["businessKey"])),
            content_type="application/json",
        )
        headers[h.ORIGIN] = self.plan.source
        origin_system = str(meta.get("originSystem") or self.plan.source_system)
        if origin_system:
            headers[h.ORIGIN_SYSTEM] = origin_system
        headers[h.REVISION] = self.plan.revision
        # With tracing on, the event names the step that published it (same trace, one hop deeper).
        traceparent = tracing.current_traceparent() or meta.get("traceparent")
        if traceparent:
            headers[h.TRACEPARENT] = str(traceparent)
        subject = f"{self.plan.nats.events_prefix}.{entity}.{verb}"
        # Scoped: another Integration (or namespace) may publish for the same business key and step name.
        scoped = f"{self.plan.namespace}/{self.plan.integration}/{msg_id}"
        await self.wiring.publish(subject, json.dumps(data, default=str).encode(), headers, scoped)

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


async def provision_consumer(
    js: JetStreamContext, plan: Plan, lane: Lane = "main", start_sequence: int | None = None, *, ensure: bool = True
) -> None:
    """Create the streams (unless `ensure` is False: the caller did) and a lane's durable consumer, or correct them."""
    if ensure:
        await ensure_streams(js)
    await js.add_consumer(plan.nats.stream, consumer_config(plan, lane, start_sequence))


async def read_split(js: JetStreamContext, stream: str, subject: str) -> SplitTable | None:
    """The newest split marker's table, or None when the Integration never had a rollout."""
    try:
        msg = await js.get_last_msg(stream, subject)
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


T = TypeVar("T")

log = logging.getLogger("onceflow.nats")

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
