"""The webhook gateway: signed HTTP in, JetStream out, 2xx only after the PubAck.

Order of checks, cheapest and safest first: body size (413; the body is read whole, however it
is segmented), signature (401 with no detail for the sender; the reason is logged), then the
size NATS will take (413), then publish with the trusted delivery id as `Nats-Msg-Id`, so a
sender's retry, or a replay under a new id header, within the duplicate window is stored once.
If JetStream does not acknowledge in time the answer is 503 with Retry-After, and the sender
retries: a record is never acknowledged and then lost.

Backpressure: the stream is the buffer between a burst of webhooks and the runners, but not an
endless one. The gateway reads its namespace's runner heartbeats (core NATS, every few seconds)
and keeps the consumer lag of each Integration reading its Connector; while the largest is at or
over the plan's `max_backlog` it answers 429 with Retry-After and stores nothing, so senders hold
their records until the runners catch up instead of the backlog (and its latency) growing
without bound. Publishes waiting for a PubAck are capped too (`max_pending_publishes`: 503 with
Retry-After). A runner that stopped reporting counts no more after `BACKLOG_FRESH_SECONDS`: no
heartbeat means no figure, and the gateway then accepts (a stopped runner is what the
Integration's status and alerts are for).

Two listeners: the public webhook port (bounded connections, a header read timeout) and an
operations port for /metrics, /healthz and /readyz, which no Service exposes. A gateway whose
signing secret is empty or malformed stays up but never ready: readiness says why in one line,
the log names the Connector and the field, and webhooks get 503 so senders keep their records.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from onceflow_runner import tracing
from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.outbound import read_secret
from onceflow_runner.adapters.pubacks import AckedPublisher, header_block
from onceflow_runner.contract.headers import TRACEPARENT, cloudevent_headers, w3c_traceparent
from onceflow_runner.contract.keys import bounded_id
from onceflow_runner.contract.messages import PARK_HEADROOM, Heartbeat, RecordHeaders
from onceflow_runner.contract.plan import GatewayPlan
from onceflow_runner.contract.signing import SECRET_FIELD, signing_secret_problem
from onceflow_runner.contract.subjects import IN_STREAM
from onceflow_runner.gateway.intake import BodyTooLarge, BodyTooSlow, read_body
from onceflow_runner.gateway.listener import serve_bounded
from onceflow_runner.gateway.processes import ProcessGroup
from onceflow_runner.gateway.signatures import SignatureConfig, SignatureError, claimed_delivery_id, verify
from onceflow_runner.metrics import GatewayMetrics

__all__ = [
    "BACKLOG_FRESH_SECONDS",
    "BACKLOG_RETRY_AFTER",
    "BODY_READ_SECONDS",
    "HEADER_READ_SECONDS",
    "MAX_CONNECTIONS",
    "MAX_EVENT_CHARS",
    "Gateway",
    "UnusableEvent",
    "event_token",
    "reads_from",
]

log = logging.getLogger("onceflow.gateway")
_UNSAFE = re.compile(r"[^A-Za-z0-9_./-]+")
#: A connection must send a request's complete headers within this time (also the idle keep-alive).
HEADER_READ_SECONDS = 10.0
#: ... and its body within this time.
BODY_READ_SECONDS = 30.0
#: Open webhook connections per gateway process; more are answered 503 and closed.
MAX_CONNECTIONS = 512
#: A runner's reported lag counts this long after its heartbeat (runners beat every 2 s).
BACKLOG_FRESH_SECONDS = 10.0
#: Seconds a publish waits for its PubAck before the webhook is answered 503 (not stored).
PUBLISH_TIMEOUT = 5.0
#: Retry-After of a 429 for a backlog over the limit: about what a runner needs to work some off.
BACKLOG_RETRY_AFTER = 5


#: The longest event name taken into a subject. NATS closes a connection whose control line is
#: too long, and a publish on it would take the gateway off the broker for every later sender.
MAX_EVENT_CHARS = 128


class UnusableEvent(ValueError):
    """The request names its event in a way no subject can carry (answered 400, nothing stored)."""


@functools.lru_cache(maxsize=1024)
def event_token(name: str) -> str:
    """An event name as subject tokens: dots kept (customer.approved), anything else unsafe -> _.

    Remembered (1,024 names): a Connector's senders use a handful of event names, and two regular
    expressions per webhook were a measurable share of the gateway's CPU. An unusable name raises
    each time (exceptions are not cached).
    """
    cleaned = _UNSAFE.sub("_", name.strip()).strip(".")
    token = re.sub(r"\.{2,}", ".", cleaned) or "received"
    if len(token) > MAX_EVENT_CHARS:
        raise UnusableEvent(f"event name longer than {MAX_EVENT_CHARS} characters")
    return token


def reads_from(pattern: str, prefix: str) -> bool:
    """True when a runner consuming `pattern` can receive what a gateway publishes under `prefix.<event>`."""
    want, have = pattern.split("."), prefix.split(".")
    for i, token in enumerate(have):
        if i >= len(want):
            return False
        if want[i] == ">":
            return True
        if want[i] not in ("*", token):
            return False
    return len(want) > len(have)


def sender_traceparent(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> str | None:
    """The sender's trace to continue: one valid `traceparent` header, else None (a new trace).

    Repeated headers name no single parent (W3C), so they start a new trace like an invalid one.
    """
    sent = headers.getall(TRACEPARENT, [])
    return w3c_traceparent(sent[0]) if len(sent) == 1 else None


def new_traceparent() -> str:
    ids = os.urandom(24).hex()  # one system call: a trace id (16 bytes) and a span id (8)
    return f"00-{ids[:32]}-{ids[32:]}-01"


class Gateway:
    """One inbound Connector's HTTP endpoint."""

    def __init__(
        self,
        plan: GatewayPlan,
        *,
        nats_url: str,
        secrets_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics_port: int = 0,
        header_timeout: float = HEADER_READ_SECONDS,
        body_timeout: float = BODY_READ_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        operations_host: str | None = None,
        reuse_port: bool = False,
        group: ProcessGroup | None = None,
    ) -> None:
        """One gateway process; with `reuse_port` one of several on one port (gateway/processes.py).

        The leader of several has the `group` and answers /metrics, /readyz and /healthz for all.
        """
        self.plan = plan
        self.operations_host = operations_host or host
        self.reuse_port, self.group = reuse_port, group
        self.nats_url = nats_url
        self.host, self.port, self.metrics_port = host, port, metrics_port
        self.header_timeout, self.body_timeout, self.max_connections = header_timeout, body_timeout, max_connections
        sig = plan.signature
        self.signature = SignatureConfig(
            sig.scheme, sig.header, sig.algorithm, sig.encoding, sig.prefix, sig.tolerance_seconds
        )
        self.secret = read_secret(secrets_dir, sig.secret)
        #: Why the signing secret cannot be used (None when it can): the gateway is then never ready.
        self.unusable_secret = signing_secret_problem(sig.scheme, self.secret)
        self.metrics = GatewayMetrics()
        # Children resolved once: `labels(...)` per update was four dict builds and lock takes per webhook.
        connector = plan.connector
        self._pending_gauge = self.metrics.pending_publishes.labels(connector=connector)
        self._accept_seconds = self.metrics.accepted_seconds.labels(connector=connector)
        self._backlog_gauge = self.metrics.backlog.labels(connector=connector)
        self._answered: dict[int, Any] = {}
        self._source = f"/namespaces/{plan.namespace}/connectors/{connector}"
        self._webhooks: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._operations: web.AppRunner | None = None
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.publisher: AckedPublisher | None = None
        #: (integration, lane, pod) -> (when heard, consumer lag) of runners reading this Connector.
        self._lags: dict[tuple[str, str, str], tuple[float, int]] = {}
        self._pending = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.plan.path}"

    @property
    def open_connections(self) -> int:
        """Webhook connections open now (at most `max_connections`)."""
        server = self._webhooks.server if self._webhooks is not None else None
        return len(server.connections) if server is not None else 0

    @property
    def operations_url(self) -> str:
        """Where /metrics, /healthz and /readyz are served."""
        return f"http://{self.operations_host}:{self.metrics_port}"

    async def start(self) -> None:
        if self.unusable_secret is not None:
            log.error(
                "signing secret unusable; the gateway stays not ready until the Secret is fixed",
                extra={
                    "connector": self.plan.connector,
                    "namespace": self.plan.namespace,
                    "field": SECRET_FIELD,
                    "secret": f"{self.plan.signature.secret.name}/{self.plan.signature.secret.key}",
                    "reason": self.unusable_secret,
                },
            )
        self.nc = await natsio.connect(self.nats_url, name=f"onceflow-gateway/{self.plan.connector}")
        self.js = self.nc.jetstream(timeout=5)
        self.publisher = AckedPublisher(self.nc, timeout=PUBLISH_TIMEOUT)
        await self.publisher.start()
        # Health first: while JetStream has no leader the gateway waits below, alive but not ready.
        await self._start_operations()
        await natsio.when_available(f"stream {IN_STREAM}", self._bound_tolerance_by_duplicate_window)
        await natsio.subscribe_stats(self.nc, self._heard, namespace=self.plan.namespace)
        app = web.Application(client_max_size=self.plan.max_body_bytes + 1)
        app.router.add_post(self.plan.path, self.receive)
        self._webhooks = web.AppRunner(app, access_log=None, keepalive_timeout=self.header_timeout)
        await self._webhooks.setup()
        assert self._webhooks.server is not None
        self._listener = await serve_bounded(
            self._webhooks.server,
            self.host,
            self.port,
            max_connections=self.max_connections,
            reuse_port=self.reuse_port,
            claim=self.group is not None or not self.reuse_port,  # the other processes join the leader's port
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])
        log.info("gateway listening", extra={"connector": self.plan.connector, "url": self.url})

    async def _start_operations(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_endpoint)
        self._operations = web.AppRunner(app, access_log=None)
        await self._operations.setup()
        site = web.TCPSite(self._operations, self.operations_host, self.metrics_port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.metrics_port = int(sockets[0].getsockname()[1])

    async def _bound_tolerance_by_duplicate_window(self) -> None:
        """A timestamp tolerance longer than the duplicate window would let a replay in twice: cap it."""
        assert self.js is not None
        # Binding: the operator creates the stream; until it exists the gateway waits, not ready.
        window = (await natsio.bind_stream(self.js, IN_STREAM)).config.duplicate_window or 0
        if window and self.signature.tolerance_seconds > window:
            log.warning(
                "timestamp tolerance capped at the stream's duplicate window",
                extra={
                    "connector": self.plan.connector,
                    "tolerance": self.signature.tolerance_seconds,
                    "window": window,
                },
            )
            sig = self.signature
            self.signature = SignatureConfig(
                sig.scheme, sig.header, sig.algorithm, sig.encoding, sig.prefix, int(window)
            )

    def _heard(self, _: str, beat: Heartbeat) -> None:
        """Keep the lag a runner reports, if it reads this Connector's records."""
        if reads_from(beat.subject, self.plan.subject_prefix):
            self._lags[(beat.integration, beat.lane, beat.pod)] = (time.monotonic(), beat.consumer_lag)
            self.backlog()  # the gauge follows the heartbeats, not only the requests

    def backlog(self, now: float | None = None) -> int:
        """The largest consumer lag a runner reading this Connector reported lately (0 when none did)."""
        now = time.monotonic() if now is None else now
        fresh = [lag for heard, lag in self._lags.values() if now - heard <= BACKLOG_FRESH_SECONDS]
        backlog = max(fresh, default=0)
        self._backlog_gauge.set(backlog)
        return backlog

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for runner in (self._webhooks, self._operations):
            if runner is not None:
                await runner.cleanup()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.nc is not None and self.nc.is_connected:
            await self.nc.drain()
        elif self.nc is not None:  # drain needs a connection; a publish still waiting was failed above
            await self.nc.close()

    async def healthz(self, _: web.Request) -> web.Response:
        # A connection the client gave up on never comes back: let liveness restart the pod. A
        # connection that is only reconnecting is readiness' business (503 on /readyz).
        if self.nc is not None and self.nc.is_closed:
            return web.Response(status=500, text="NATS connection closed")
        problem = await self.group.unhealthy() if self.group is not None else None
        if problem is not None:  # the pod serves at part strength (or, unready, not at all): restart it whole
            return web.Response(status=500, text=problem)
        return web.Response(text="ok")

    def not_ready_reason(self) -> str | None:
        """Why the gateway must not receive webhooks now, in one short line; None when it may."""
        if self.unusable_secret is not None:
            return f"signing secret unusable: {self.unusable_secret}"
        if self._listener is None:
            # /readyz is served first; ready before the webhook port is bound would send senders
            # to a port that may never open (taken by another process, the gateway then exits).
            return "webhook listener not started"
        if self.nc is None or not self.nc.is_connected:
            return "NATS not connected"
        return None

    async def readyz(self, _: web.Request) -> web.Response:
        reason = self.not_ready_reason()
        if reason is None and self.group is not None:
            reason = await self.group.not_ready()
        return web.Response(status=503 if reason else 200, text=reason or "ready")

    async def metrics_endpoint(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        if self.group is not None:
            body = await self.group.metrics(body)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _answer(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> web.Response:
        counter = self._answered.get(status)
        if counter is None:
            counter = self._answered[status] = self.metrics.requests.labels(
                connector=self.plan.connector, code=str(status)
            )
        counter.inc()
        return web.json_response(body, status=status, headers=headers)

    def _event(self, body: bytes, request: web.Request) -> str:
        if self.plan.event_header and request.headers.get(self.plan.event_header):
            return event_token(request.headers[self.plan.event_header])
        if self.plan.event_body_field:
            # The event decides the subject, so a body it cannot be read from must not quietly land
            # on the default subject, where no Integration may listen.
            try:
                document = json.loads(body)
            except (ValueError, RecursionError):
                raise UnusableEvent(
                    f"body is not JSON (or nests too deeply); the event is read from its field "
                    f"{self.plan.event_body_field!r}"
                ) from None
            value = document.get(self.plan.event_body_field) if isinstance(document, dict) else None
            if isinstance(value, str) and value:
                return event_token(value)
        return event_token(self.plan.event_default)

    def _body_limit(self) -> int:
        """The plan's cap, and never more than NATS could carry with room to park the record."""
        if self.nc is None:
            return self.plan.max_body_bytes
        return min(self.plan.max_body_bytes, self.nc.max_payload - PARK_HEADROOM)

    async def receive(self, request: web.Request) -> web.Response:
        """Answer one webhook; with tracing on, inside a receive span that is the child of the sender's trace."""
        if not tracing.is_enabled():
            return await self._receive(request)
        attributes = {tracing.NAMESPACE: self.plan.namespace, tracing.CONNECTOR: self.plan.connector}
        sent = sender_traceparent(request.headers)
        with tracing.span("gateway receive", traceparent=sent, kind=SpanKind.SERVER, attributes=attributes) as got:
            response = await self._receive(request)
            got.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                tracing.set_outcome(got, "refused", error=f"answered {response.status}")
            else:
                tracing.set_outcome(got, "accepted")
            return response

    async def _receive(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        if self.unusable_secret is not None:
            return self._answer(503, {"error": "not accepting webhooks yet; retry"}, {"Retry-After": "30"})
        limit = self._body_limit()
        too_large: dict[str, object] = {"error": f"body larger than {limit} bytes"}
        if request.content_length is not None and request.content_length > limit:
            return self._answer(413, too_large, {"Connection": "close"})
        try:
            body = await read_body(request.content, limit=limit, deadline_seconds=self.body_timeout)
        except BodyTooLarge:
            return self._answer(413, too_large, {"Connection": "close"})
        except BodyTooSlow:
            return self._answer(408, {"error": "body not received in time"}, {"Connection": "close"})
        try:
            delivery_id = bounded_id(verify(self.signature, self.secret, request.headers, body, time.time()))
        except SignatureError as exc:
            log.info("signature rejected", extra={"connector": self.plan.connector, "reason": str(exc)})
            return self._answer(401, {"error": "signature rejected"})
        try:
            event = self._event(body, request)
        except UnusableEvent as exc:
            return self._answer(400, {"error": str(exc)})
        claimed = claimed_delivery_id(self.signature, request.headers)
        record = RecordHeaders(
            # Scoped by namespace: the stream is shared, and a same-named Connector elsewhere with the
            # same delivery id must not look like a retry of this one.
            msg_id=bounded_id(f"{self.plan.namespace}/{self.plan.connector}/{delivery_id}"),
            delivery_id=delivery_id,
            origin=self.plan.connector,
            origin_system=self.plan.system or None,
            event=event,
            content_type=request.headers.get("Content-Type", "application/json"),
            traceparent=sender_traceparent(request.headers) or new_traceparent(),
            sender_delivery_id=bounded_id(claimed) if claimed and claimed != delivery_id else None,
        )
        headers = record.to_headers() | cloudevent_headers(
            event_type=f"io.onceflow.{self.plan.connector}.{event}",
            source=self._source,
            event_id=delivery_id,
        )
        if self.publisher is None or self.nc is None or not self.nc.is_connected:
            return self._answer(503, {"error": "message broker unavailable; retry"}, {"Retry-After": "1"})
        block = header_block(headers)
        if len(block) + len(body) + PARK_HEADROOM > self.nc.max_payload:
            # Stored, it could not be parked or dead-lettered (see PARK_HEADROOM): refused now, said once.
            return self._answer(413, {"error": "record larger than the message broker accepts"})
        if self.plan.max_backlog and self.backlog() >= self.plan.max_backlog:
            return self._answer(
                429,
                {"error": "too many records are waiting to be processed; retry later"},
                {"Retry-After": str(BACKLOG_RETRY_AFTER)},
            )
        if self._pending >= self.plan.max_pending_publishes:
            return self._answer(503, {"error": "too many records being stored; retry"}, {"Retry-After": "1"})
        self._pending += 1
        self._pending_gauge.set(self._pending)
        subject = f"{self.plan.subject_prefix}.{event}"
        try:
            if not tracing.is_enabled():
                ack = await self.publisher.publish_block(subject, body, block)
            else:
                with tracing.span(
                    "jetstream publish",
                    kind=SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "nats",
                        "messaging.destination.name": subject,
                        tracing.EVENT: event,
                    },
                ) as publishing:
                    # The record carries its publish span: every delivery's settle span is its child.
                    headers[TRACEPARENT] = tracing.traceparent_of(publishing) or headers[TRACEPARENT]
                    ack = await self.publisher.publish_block(subject, body, header_block(headers))
                    publishing.set_attribute("messaging.nats.duplicate", ack.duplicate)
        except Exception as exc:  # any failure to get a PubAck means "not stored"
            log.warning("publish failed", extra={"error": type(exc).__name__})
            return self._answer(503, {"error": "record not stored; retry"}, {"Retry-After": "1"})
        finally:
            self._pending -= 1
            self._pending_gauge.set(self._pending)
        self._accept_seconds.observe(time.perf_counter() - started)
        return self._answer(202, {"accepted": True, "id": delivery_id, "duplicate": ack.duplicate, "sequence": ack.seq})
