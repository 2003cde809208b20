"""The runner process: pull records of one revision from JetStream and settle each exactly once.

`settle` is the one place where delivery is decided, and it reads like the guarantee:

- done before (business key in the KV store)  -> ack, counted as a duplicate, no effect (the key is
                                                 bounded first: `contract.keys.bounded_key`);
- completed                                    -> key marked done, then ack (only effects do);
- filtered                                     -> ack; the key stays free for the next record;
- parked for approval                          -> exception stream (original bytes), then ack;
- permanent failure                            -> exception stream (original bytes), then ack;
- transient failure, deliveries left           -> nak with the target's Retry-After or backoff;
- transient failure, last delivery             -> dead-letter stream (original bytes), then ack.

Every ack comes after the record's side effects and after its exception or dead letter has a
PubAck; a crash anywhere before the ack means a redelivery, and redeliveries are harmless
because outbound calls carry an Idempotency-Key and publishes a Nats-Msg-Id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.headers import header_safe
from onceflow_runner.contract.keys import bounded_key
from onceflow_runner.contract.messages import AuditEntry, AuditStep, Heartbeat, ParkedRecord, RecordHeaders
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.split import Lane, SplitMarker, SplitTable, owns
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.errors import PermanentFailure, TransientFailure
from onceflow_runner.metrics import RollingStats, RunnerMetrics
from onceflow_runner.payloads.decode import decode_payload

__all__ = ["Runner"]

log = logging.getLogger("onceflow.runner")


class Runner:
    """One runner process (or, in tests, one of several in an interpreter)."""

    def __init__(
        self,
        plan: Plan,
        *,
        nats_url: str,
        secrets_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_seconds: float = 2.0,
        caller: HttpCaller | None = None,
        lane: Lane = "main",
    ) -> None:
        self.plan = plan
        self.lane = lane
        self.nats_url = nats_url
        self.secrets_dir = secrets_dir
        self.host, self.port = host, port
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = RunnerMetrics()
        self.stats = RollingStats()
        self.caller = caller or HttpCaller(plan.connectors, secrets_dir)
        self.labels = {"integration": plan.integration, "revision": plan.revision}
        self.split: SplitTable | None = None
        self.pod = os.environ.get("HOSTNAME") or f"{socket.gethostname()}-{os.getpid()}"
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._site: web.TCPSite | None = None
        self._http: web.AppRunner | None = None
        self.ready = False
        self.last_success: datetime | None = None
        self.lag = 0

    async def start(self) -> None:
        """Connect, provision, bind the consumer, serve /metrics and health, start pulling."""
        self.nc = await natsio.connect(self.nats_url, name=f"onceflow-runner/{self.plan.integration}")
        self.wiring = await natsio.JetStreamWiring.open(self.nc, self.plan, self.lane)
        self.engine = Engine(self.plan, self.caller, natsio.JetStreamEvents(self.wiring))
        self.sub = await self.wiring.subscribe()
        await self._serve_http()
        self._tasks = [asyncio.create_task(self._pull_loop()), asyncio.create_task(self._heartbeat_loop())]
        self.ready = True
        log.info("runner ready", extra={"integration": self.plan.integration, "revision": self.plan.revision})

    async def stop(self, grace: float | None = None) -> None:
        """Stop pulling, let in-flight records settle (or be redelivered later), then disconnect."""
        self.ready = False
        self._stopping.set()
        if self._tasks:
            # Let a fetch in progress return (it times out within a second) and its records start:
            # cancelling it would strand what it fetched until ack_wait sends it elsewhere.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._tasks[0]), 2.5)
        if self._inflight:
            await asyncio.wait(
                set(self._inflight), timeout=grace if grace is not None else self.plan.error_policy.ack_wait
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.caller.aclose()
        if self._http is not None:
            await self._http.cleanup()

    async def _serve_http(self) -> None:
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            alive = all(not t.done() for t in self._tasks) or self._stopping.is_set()
            return web.Response(status=200 if alive else 500, text="ok" if alive else "pull loop died")

        async def readyz(_: web.Request) -> web.Response:
            ok = self.ready and self.nc.is_connected
            return web.Response(status=200 if ok else 503, text="ready" if ok else "not ready")

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        self._site = web.TCPSite(self._http, self.host, self.port)
        await self._site.start()
        self.port = _bound_port(self._site, self.port)

    async def _pull_loop(self) -> None:
        limit = self.plan.concurrency
        while not self._stopping.is_set():
            free = limit - len(self._inflight)
            if free <= 0:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await self.sub.fetch(free, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.NoRespondersError,
                nats.errors.Error,
            ) as exc:
                log.warning("fetch failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            try:
                # Read after the fetch: every marker that can apply to these records is stored by now.
                self.split = await self.wiring.split_table()
            except Exception as exc:  # cannot judge ownership: leave the batch for redelivery
                log.warning("split marker unreadable; batch left for redelivery", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                if not self._mine(msg):
                    continue
                task = asyncio.create_task(self._settle_guarded(msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    def _mine(self, msg: Msg) -> bool:
        """Ack split markers and the other lane's records at once (no effect); True for our records."""
        if SplitMarker.is_marker(msg.headers) or not owns(self.lane, msg.metadata.sequence.stream, self.split):
            self.metrics.skipped.labels(**self.labels).inc()
            task = asyncio.create_task(msg.ack())
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return False
        return True

    async def _settle_guarded(self, msg: Msg) -> None:
        self.metrics.in_flight.labels(**self.labels).inc()
        try:
            await self.settle(msg)
        except Exception as exc:
            # Could not even publish the exception or dead letter (e.g. NATS down): leave the
            # message unacked; JetStream redelivers it after ack_wait. Nothing is lost.
            log.error("settle failed; message will be redelivered", extra={"error": header_safe(repr(exc), 300)})
        finally:
            self.metrics.in_flight.labels(**self.labels).dec()

    def _meta(self, msg: Msg, record: RecordHeaders) -> dict[str, Any]:
        md = msg.metadata
        return {
            "deliveryId": record.delivery_id or record.msg_id or f"seq-{md.sequence.stream}",
            "source": record.origin if record.origin is not None else self.plan.source,
            "origin": record.origin or "",
            "event": record.event or "",
            "subject": msg.subject,
            "traceparent": record.traceparent or "",
            "decision": record.decision or "",
            "revision": self.plan.revision,
            "integration": self.plan.integration,
            "streamSequence": md.sequence.stream,
            "delivered": md.num_delivered,
        }

    async def settle(self, msg: Msg) -> None:
        """Process one delivery and decide its fate (see the module docstring)."""
        started = time.perf_counter()
        self.metrics.received.labels(**self.labels).inc()
        record = RecordHeaders.from_headers(msg.headers)
        meta = self._meta(msg, record)
        try:
            payload = decode_payload(msg.data, record.content_type or "application/json")
            meta["businessKey"] = bounded_key(self.engine.business_key(payload, meta))
            if await self.wiring.is_done(meta["businessKey"]):
                self.metrics.duplicates.labels(**self.labels).inc()
                await self._audit(meta, "duplicate", [], "business key already done")
                await msg.ack()
                return
            outcome = await self.engine.run(payload, meta)
        except PermanentFailure as exc:
            self._failed(exc.step, exc.reason)
            target = "deadLetter" if self.plan.error_policy.permanent_failures == "DeadLetter" else "exception"
            await self._park(msg, meta, target, exc.reason, str(exc), exc.step, suggestion=exc.suggestion)
            self.stats.record(target, time.perf_counter() - started)
            return
        except TransientFailure as exc:
            self._failed(exc.step, "Transient")
            await self._retry_or_dead_letter(msg, meta, exc, started)
            return
        await self._finish(msg, meta, outcome, started)

    async def _finish(self, msg: Msg, meta: dict[str, Any], outcome: RecordOutcome, started: float) -> None:
        if outcome.kind == "parked":
            await self._park(
                msg, meta, "exception", "ApprovalRequired", outcome.reason, outcome.step, outcome.candidates
            )
            self.stats.record("parked", time.perf_counter() - started)
            return
        if outcome.kind == "completed":
            await self.wiring.mark_done(
                meta["businessKey"], {"outcome": outcome.kind, "revision": self.plan.revision, "at": time.time()}
            )
        await msg.ack()
        seconds = time.perf_counter() - started
        if outcome.kind == "completed":
            self.metrics.processed.labels(**self.labels).inc()
            self.last_success = datetime.now(UTC)
        else:
            self.metrics.filtered.labels(**self.labels).inc()
        self.metrics.record_seconds.labels(**self.labels).observe(seconds)
        for step in outcome.steps:
            if step.status is not None:
                connector = next(
                    (s.request.connector for s in self.plan.steps if s.name == step.step and s.request), ""
                )
                self.metrics.call_seconds.labels(**self.labels, connector=connector, code=str(step.status)).observe(
                    step.latency_ms / 1e3
                )
        self.stats.record(outcome.kind, seconds)
        await self._audit(meta, outcome.kind, outcome.steps, outcome.reason)

    def _failed(self, step: str, reason: str) -> None:
        self.metrics.failed.labels(**self.labels, step=step or "-", reason=reason).inc()

    async def _retry_or_dead_letter(
        self, msg: Msg, meta: dict[str, Any], exc: TransientFailure, started: float
    ) -> None:
        policy = self.plan.error_policy
        delivered = int(meta["delivered"])
        if delivered >= policy.max_deliver:
            await self._park(msg, meta, "deadLetter", "MaxDeliveriesExceeded", str(exc), exc.step)
            self.stats.record("deadLetter", time.perf_counter() - started)
            return
        backoff = policy.backoff[min(delivered - 1, len(policy.backoff) - 1)] if policy.backoff else 1.0
        delay = exc.delay if exc.delay is not None else backoff * random.uniform(0.8, 1.2)
        await msg.nak(delay=delay)
        self.stats.record("transient", time.perf_counter() - started)
        await self._audit(meta, "retrying", [], f"{exc} (delivery {delivered}, next in {delay:.1f}s)")

    async def _park(
        self,
        msg: Msg,
        meta: dict[str, Any],
        target: str,
        reason: str,
        error: str,
        step: str,
        candidates: list[dict[str, Any]] | None = None,
        *,
        suggestion: dict[str, Any] | None = None,
    ) -> None:
        """Send the original bytes and headers, with why, to the exception or dead-letter stream."""
        names = self.plan.nats
        subject = names.dlq_subject if target == "deadLetter" else names.exceptions_subject
        parked = ParkedRecord(
            reason=reason,
            error=error,
            step=step,
            integration=self.plan.integration,
            revision=self.plan.revision,
            business_key=str(meta.get("businessKey", "")),
            original_subject=msg.subject,
            stream_sequence=meta["streamSequence"],
            deliveries=meta["delivered"],
            candidates=candidates or [],
            suggestion=suggestion,
        )
        headers = parked.to_headers(msg.headers)
        msg_id = f"{target}/{self.plan.integration}/{meta['streamSequence']}"
        await self.wiring.publish(subject, msg.data, headers, msg_id)
        await msg.ack()
        if target == "deadLetter":
            self.metrics.dead_letters.labels(**self.labels).inc()
        else:
            self.metrics.exceptions.labels(**self.labels, reason=reason).inc()
        await self._audit(meta, target, [], f"{reason}: {error}")

    async def _audit(self, meta: Mapping[str, Any], outcome: str, steps: list[StepResult], detail: str) -> None:
        entry = AuditEntry(
            time=datetime.now(UTC).isoformat(),
            integration=self.plan.integration,
            revision=self.plan.revision,
            business_key=meta.get("businessKey"),
            delivery_id=meta.get("deliveryId"),
            source=meta.get("source"),
            delivered=meta.get("delivered"),
            outcome=outcome,
            detail=detail,
            steps=[AuditStep.model_validate(s.__dict__) for s in steps],
        )
        with contextlib.suppress(Exception):
            await self.wiring.publish_untracked(self.plan.nats.audit_subject, entry.to_wire())

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                info = await self.sub.consumer_info()
                self.lag = int(info.num_pending or 0)
                self.metrics.consumer_lag.labels(**self.labels).set(self.lag)
            beat = Heartbeat.from_dict(
                {
                    "integration": self.plan.integration,
                    "revision": self.plan.revision,
                    "lane": self.lane,
                    "pod": self.pod,
                    "time": datetime.now(UTC).isoformat(),
                    "consumerLag": self.lag,
                    "lastSuccessTime": self.last_success.isoformat() if self.last_success else None,
                    **self.stats.snapshot(),
                }
            )
            with contextlib.suppress(Exception):
                await self.wiring.publish_untracked(self.plan.nats.stats_subject, beat.to_wire())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat_seconds)


def _bound_port(site: web.TCPSite, default: int) -> int:
    """The port the OS picked when asked for port 0."""
    sockets = getattr(site._server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else default


async def run_until_signalled(runner: Runner) -> None:
    """Start, then stop gracefully on SIGTERM or SIGINT (in-flight records settle first)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.start()
    await stop.wait()
    await runner.stop()
