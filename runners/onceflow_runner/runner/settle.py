"""One delivery, from fetch to its one outcome: the guarantee of the package docstring, in code.

Why a module of its own: the process around it (pulling, health, heartbeats) changes for other
reasons than delivery rules do, and every rule about a record's fate should be readable here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import nats.errors
from nats.aio.msg import Msg
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from onceflow_runner import tracing
from onceflow_runner.adapters.keystore import Claim, KeyStore
from onceflow_runner.adapters.natsio import JetStreamWiring, StoredMessage
from onceflow_runner.contract.headers import REFLECTED, header_safe
from onceflow_runner.contract.keys import bounded_key
from onceflow_runner.contract.messages import AuditEntry, AuditStep, ParkedCandidates, ParkedRecord, RecordHeaders
from onceflow_runner.contract.plan import Plan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.expressions import HEAVY_BYTES
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.steps.approve import APPROVED_STEPS_META
from onceflow_runner.errors import CredentialsRefused, PermanentFailure, TransientFailure
from onceflow_runner.metrics import RollingStats, RunnerMetrics
from onceflow_runner.payloads.decode import decode_payload

__all__ = ["INTERNAL_ERROR", "OUTAGES", "Delivery", "ProgressKeeper", "Settler"]

log = logging.getLogger("onceflow.runner")

#: Exception reason of a record whose settling raised something nobody expected (a bug, a limit).
INTERNAL_ERROR: Final = "InternalError"
#: The reason of a record parked because it reached the stream as a reflected direct get (see `headers.REFLECTED`).
REFLECTED_RECORD: Final = "ReflectedRecord"
#: NATS or the network failed, not the record: another delivery may do better.
OUTAGES: Final = (nats.errors.Error, OSError, TimeoutError)
#: Characters of the error a record parked with little room left under max_payload keeps.
SLIM_ERROR_CHARS: Final = 120
#: Longest a record waits (nak delay) before it looks again at a key another record holds.
KEY_WAIT_MAX: Final = 1.0


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, one header line: never a stack trace."""
    first = next(iter(str(exc).splitlines()), "")
    return header_safe(f"{type(exc).__name__}: {first}" if first else type(exc).__name__, 300)


@dataclass(eq=False)
class Delivery:
    """One delivery being settled: the message, what the audit says of it, and its key's claim."""

    msg: Msg
    record: RecordHeaders
    meta: dict[str, Any]
    started: float
    claim: Claim | None = None
    answered: bool = False
    #: The delivery's settle span; None while tracing is off.
    span: Span | None = None

    def traced(self, outcome: str, *, error: str | None = None, reason: str | None = None) -> None:
        """Put how this delivery left on its settle span (nothing while tracing is off)."""
        if self.span is None:
            return
        tracing.set_outcome(self.span, outcome, error=error)
        if reason:
            self.span.set_attribute(tracing.REASON, reason)

    async def ack(self) -> None:
        await self.msg.ack()
        self.answered = True

    async def nak(self, delay: float) -> None:
        await self.msg.nak(delay=delay)
        self.answered = True


async def _decoded(data: bytes, content_type: str) -> Any:
    """`decode_payload`, in a thread for a large body.

    Decoding and checking 1 MiB of small values takes over half a second of Python; in a thread
    the interpreter switches to the event loop every few milliseconds meanwhile, so heartbeats
    and other records go on. Small bodies decode inline (a thread hop costs more than they do).
    """
    if len(data) <= HEAVY_BYTES:
        return decode_payload(data, content_type)
    return await asyncio.to_thread(decode_payload, data, content_type)


class ProgressKeeper:
    """While records work: tell JetStream each is in progress, and renew its key's lease, every tick.

    One loop for every delivery in flight (a task per record would cost the common, fast path).
    The tick is a third of ackWait (at most 10s): a call slower than ackWait is not redelivered
    while it runs, and the lease (ackWait long) lapses soon after the runner holding it dies.
    """

    def __init__(self, keys: KeyStore, owner: str, ack_wait: float) -> None:
        self.keys, self.owner, self.lease = keys, owner, ack_wait
        self.tick = min(max(ack_wait / 3, 0.05), 10.0)
        self._working: dict[Delivery, asyncio.Task[None] | None] = {}

    def start(self, delivery: Delivery) -> None:
        """Keep `delivery` in progress from now until `finish`.

        A pair of calls rather than a context manager: `asynccontextmanager` costs an async
        generator and two extra awaits per record on the settle path.
        """
        self._working[delivery] = None

    async def finish(self, delivery: Delivery) -> None:
        """Stop keeping `delivery` in progress; a renewal in flight is awaited, so none outlives the record."""
        renewal = self._working.pop(delivery, None)
        if renewal is not None:
            with contextlib.suppress(Exception):
                await renewal

    async def run(self) -> None:
        """Every tick, signal each delivery that has worked for a tick or more; until cancelled.

        Cancelled by `Runner.stop` after the records in flight were drained, not before.
        """
        while True:
            await asyncio.sleep(self.tick)
            due = time.perf_counter() - self.tick
            for delivery, renewal in list(self._working.items()):
                if delivery.started <= due and not delivery.answered and (renewal is None or renewal.done()):
                    self._working[delivery] = asyncio.create_task(self._signal(delivery))

    async def _signal(self, delivery: Delivery) -> None:
        with contextlib.suppress(Exception):
            await delivery.msg.in_progress()
        claim = delivery.claim
        if claim is not None and claim.status == "claimed":
            with contextlib.suppress(Exception):
                if not await self.keys.renew(claim, owner=self.owner, lease=self.lease):
                    log.warning("business key taken over while this record worked on it")


class Settler:
    """Settles the deliveries of one revision's lane (see the package docstring for the rules)."""

    def __init__(
        self,
        plan: Plan,
        wiring: JetStreamWiring,
        engine: Engine,
        metrics: RunnerMetrics,
        stats: RollingStats,
        owner: str,
    ) -> None:
        self.plan, self.wiring, self.engine = plan, wiring, engine
        self.metrics, self.stats, self.owner = metrics, stats, owner
        self.counters = metrics.of(plan.integration, plan.revision)
        #: Step name -> the Connector it calls, for the call latency metric.
        self._connectors = {s.name: s.request.connector for s in plan.steps if s.request}
        self.last_success: datetime | None = None
        self.keeper = ProgressKeeper(wiring.keys, owner, plan.error_policy.ack_wait)
        #: The SyncPolicy's entity: the duplicate-incidence figures and parked duplicates are per entity.
        self._entity = plan.sync_policy.entity if plan.sync_policy else ""

    def _meta(self, msg: Msg, record: RecordHeaders) -> dict[str, Any]:
        md = msg.metadata
        return {
            "deliveryId": record.delivery_id or record.msg_id or f"seq-{md.sequence.stream}",
            "source": record.origin if record.origin is not None else self.plan.source,
            "origin": record.origin or "",
            "originSystem": record.origin_system or "",
            "event": record.event or "",
            "subject": msg.subject,
            "traceparent": record.traceparent or "",
            "decision": record.decision or "",
            APPROVED_STEPS_META: list(record.approved_step_names),
            "revision": self.plan.revision,
            "integration": self.plan.integration,
            "streamSequence": md.sequence.stream,
            "delivered": md.num_delivered,
        }

    async def settle(self, msg: Msg) -> None:
        """Process one delivery and decide its fate; raise only when NATS itself cannot be reached."""
        self.counters.received.inc()
        record = RecordHeaders.from_headers(msg.headers)
        delivery = Delivery(msg, record, self._meta(msg, record), time.perf_counter())
        if not tracing.is_enabled():
            await self._settle_delivery(delivery)
            return
        attributes: dict[str, AttributeValue] = {
            tracing.INTEGRATION: self.plan.integration,
            tracing.REVISION: self.plan.revision,
            tracing.NAMESPACE: self.plan.namespace,
            tracing.DELIVERY: int(delivery.meta["delivered"]),
            "messaging.system": "nats",
            "messaging.destination.name": msg.subject,
        }
        if record.decision:
            attributes[tracing.DECISION] = record.decision
        with tracing.span(
            "runner settle", traceparent=record.traceparent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as settling:
            delivery.span = settling
            await self._settle_delivery(delivery)

    async def _settle_delivery(self, delivery: Delivery) -> None:
        try:
            self.keeper.start(delivery)
            try:
                try:
                    await self._settle(delivery)
                finally:
                    await self._release(delivery)
            finally:
                await self.keeper.finish(delivery)
        except Exception as exc:
            if delivery.answered or isinstance(exc, OUTAGES):
                raise  # unanswered: redelivered after ackWait, or dead-lettered from its advisory
            log.error("unexpected error; record parked as InternalError", extra={"error": describe(exc)})
            self._failed(INTERNAL_ERROR, INTERNAL_ERROR)
            await self._park(delivery, "exception", INTERNAL_ERROR, describe(exc), "")
            self.stats.record("exception", time.perf_counter() - delivery.started)

    async def _settle(self, delivery: Delivery) -> None:
        msg, meta = delivery.msg, delivery.meta
        if msg.headers and any(header in msg.headers for header in REFLECTED):
            # Not sent by a gateway, a poller or a person: another namespace's NATS user had JetStream
            # answer a direct get of its own record onto this intake. Nothing reaches a target; a
            # person sees the bytes (and whose they claim to be) in the exceptions.
            self._failed("", REFLECTED_RECORD)
            why = "a direct get's answer stored on this Integration's subject, not a record any sender sent"
            await self._park(delivery, "exception", REFLECTED_RECORD, why, "")
            self.stats.record("exception", time.perf_counter() - delivery.started)
            return
        try:
            payload = await _decoded(msg.data, delivery.record.content_type or "application/json")
            size = len(msg.data)
            meta["businessKey"] = bounded_key(await self.engine.business_key(payload, meta, payload_bytes=size))
            if delivery.span is not None:
                delivery.span.set_attribute(tracing.BUSINESS_KEY, tracing.business_key_value(meta["businessKey"]))
            if not await self._claim(delivery):
                return
            outcome = await self.engine.run(payload, meta, payload_bytes=size)
        except PermanentFailure as exc:
            self._failed(exc.step, exc.reason)
            target = "deadLetter" if self.plan.error_policy.permanent_failures == "DeadLetter" else "exception"
            await self._park(delivery, target, exc.reason, str(exc), exc.step, suggestion=exc.suggestion)
            self.stats.record(target, time.perf_counter() - delivery.started)
            return
        except TransientFailure as exc:
            self._failed(exc.step, exc.reason if isinstance(exc, CredentialsRefused) else "Transient")
            await self._retry_or_dead_letter(delivery, exc)
            return
        except OUTAGES as exc:  # NATS or the network, inside a step or the key store: worth a redelivery
            self._failed("", "Transient")
            await self._retry_or_dead_letter(delivery, TransientFailure(describe(exc)))
            return
        await self._finish(delivery, outcome)

    async def _claim(self, delivery: Delivery) -> bool:
        """Hold the record's business key; False when the delivery was answered (duplicate or waiting)."""
        meta, policy = delivery.meta, self.plan.error_policy
        keys = self.wiring.keys
        claim = await keys.claim(meta["businessKey"], owner=self.owner, lease=policy.ack_wait)
        if claim.status == "busy" and int(meta["delivered"]) < policy.max_deliver:
            delay = min(max(claim.wait, 0.1), KEY_WAIT_MAX) * random.uniform(0.8, 1.2)
            self.counters.key_waits.inc()
            await delivery.nak(delay)
            delivery.traced("waiting")
            await self._audit(
                meta, "waiting", [], f"another delivery holds the business key; next look in {delay:.1f}s"
            )
            return False
        while claim.status == "busy":  # the last delivery may not be nak'ed: wait here, kept in progress
            await asyncio.sleep(min(max(claim.wait, 0.05), 0.5))
            claim = await keys.claim(meta["businessKey"], owner=self.owner, lease=policy.ack_wait)
        if claim.status == "done":
            self.counters.duplicates.inc()
            await delivery.ack()
            delivery.traced("duplicate")
            await self._audit(meta, "duplicate", [], "business key already done")
            return False
        delivery.claim = claim
        return True

    async def _release(self, delivery: Delivery) -> None:
        claim = delivery.claim
        if claim is None or claim.status != "claimed":
            return
        try:
            await self.wiring.keys.release(claim)
        except Exception as exc:  # the lease lapses by itself; the next record with the key waits until then
            log.warning("business key not released", extra={"error": describe(exc)})

    async def _finish(self, delivery: Delivery, outcome: RecordOutcome) -> None:
        if outcome.dedupe is not None:
            self.counters.dedupe_records(self._entity, outcome.dedupe).inc()
        if outcome.kind == "parked":
            await self._park(
                delivery,
                "exception",
                "ApprovalRequired",
                outcome.reason,
                outcome.step,
                outcome.candidates,
                matched=outcome.record,
            )
            self.stats.record("parked", time.perf_counter() - delivery.started)
            return
        if outcome.kind == "completed" and delivery.claim is not None:
            await self.wiring.keys.complete(delivery.claim, outcome.kind)
        await delivery.ack()
        delivery.traced("settled" if outcome.kind == "completed" else outcome.kind)
        seconds = time.perf_counter() - delivery.started
        if outcome.kind == "completed":
            self.counters.processed.inc()
            self.last_success = datetime.now(UTC)
        else:
            self.counters.filtered.inc()
        self.counters.record_seconds.observe(seconds)
        for step in outcome.steps:
            if step.status is not None:
                connector = self._connectors.get(step.step, "")
                self.counters.call_seconds(connector, str(step.status)).observe(step.latency_ms / 1e3)
        self.stats.record(outcome.kind, seconds)
        await self._audit(delivery.meta, outcome.kind, outcome.steps, outcome.reason)

    def _failed(self, step: str, reason: str) -> None:
        self.counters.failed(step or "-", reason).inc()

    async def _retry_or_dead_letter(self, delivery: Delivery, exc: TransientFailure) -> None:
        policy = self.plan.error_policy
        delivered = int(delivery.meta["delivered"])
        if delivered >= policy.max_deliver:
            await self._park(delivery, "deadLetter", "MaxDeliveriesExceeded", str(exc), exc.step)
            self.stats.record("deadLetter", time.perf_counter() - delivery.started)
            return
        backoff = policy.backoff[min(delivered - 1, len(policy.backoff) - 1)] if policy.backoff else 1.0
        asked = exc.delay
        # The adapter already bounds a target's Retry-After by the Connector's maxBackoff; a delay
        # that is not a finite, non-negative number never reaches JetStream.
        if isinstance(exc, CredentialsRefused):
            # Every record would be refused the same way until a person fixes the credentials:
            # wait the longest backoff, not the next one, so a 401 storm does not spin.
            delay = max(policy.backoff or (1.0,)) * random.uniform(0.8, 1.2)
        elif asked is not None and math.isfinite(asked) and asked >= 0:
            delay = asked
        else:
            delay = backoff * random.uniform(0.8, 1.2)
        await delivery.nak(delay)
        delivery.traced("retry", error=str(exc))
        self.stats.record("transient", time.perf_counter() - delivery.started)
        await self._audit(delivery.meta, "retrying", [], f"{exc} (delivery {delivered}, next in {delay:.1f}s)")

    async def _park(
        self,
        delivery: Delivery,
        target: str,
        reason: str,
        error: str,
        step: str,
        candidates: list[dict[str, Any]] | None = None,
        *,
        suggestion: dict[str, Any] | None = None,
        matched: Any = None,
    ) -> None:
        """Send the original bytes and headers, with why, to the exception or dead-letter stream; then ack."""
        msg, meta = delivery.msg, delivery.meta
        candidates_at, entity = 0, ""
        if candidates:
            candidates_at = await self.wiring.publish_candidates(
                ParkedCandidates(
                    integration=self.plan.integration,
                    business_key=str(meta.get("businessKey", "")),
                    stream_sequence=meta["streamSequence"],
                    record=matched,
                    candidates=candidates,
                )
            )
            entity = self._entity
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
            candidates_at=candidates_at,
            entity=entity,
            suggestion=suggestion,
        )
        await self._publish_parked(target, parked, msg.data, msg.headers)
        await delivery.ack()
        if target == "deadLetter":
            delivery.traced("dead-letter", error=f"{reason}: {error}", reason=reason)
        elif reason == "ApprovalRequired":
            delivery.traced("parked", reason=reason)
        else:
            delivery.traced("exception", error=f"{reason}: {error}", reason=reason)
        await self._audit(meta, target, [], f"{reason}: {error}")

    async def _publish_parked(
        self, target: str, parked: ParkedRecord, data: bytes, headers: Mapping[str, str] | None
    ) -> None:
        names = self.plan.nats
        subject = names.dlq_subject if target == "deadLetter" else names.exceptions_subject
        msg_id = f"{target}/{self.plan.integration}/{parked.stream_sequence}"
        try:
            await self.wiring.publish(subject, data, parked.to_headers(headers), msg_id)
        except nats.errors.MaxPayloadError:
            # A record stored with little room left (the gateway leaves PARK_HEADROOM; a polled row
            # or an EDI file may not): park it with why in a few words, the original bytes whole.
            slim = parked.model_copy(update={"error": parked.error[:SLIM_ERROR_CHARS], "suggestion": None})
            await self.wiring.publish(subject, data, slim.to_headers(headers), msg_id)
        if target == "deadLetter":
            self.counters.dead_letters.inc()
        else:
            self.counters.exceptions(parked.reason).inc()

    async def dead_letter_unsettled(self, stored: StoredMessage, deliveries: int) -> None:
        """Dead-letter a record JetStream gave up on (its advisory), unless its key is done.

        With tracing on, inside a span of the record's trace (its deliveries never finished theirs).
        """
        record = RecordHeaders.from_headers(stored.headers)
        if not tracing.is_enabled():
            await self._dead_letter_unsettled(stored, deliveries, record)
            return
        attributes: dict[str, AttributeValue] = {
            tracing.INTEGRATION: self.plan.integration,
            tracing.REVISION: self.plan.revision,
            tracing.NAMESPACE: self.plan.namespace,
            tracing.DELIVERY: deliveries,
        }
        with tracing.span(
            "runner dead-letter", traceparent=record.traceparent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as current:
            dead = await self._dead_letter_unsettled(stored, deliveries, record)
            tracing.set_outcome(
                current, "dead-letter" if dead else "duplicate", error="MaxDeliveriesExceeded" if dead else None
            )

    async def _dead_letter_unsettled(self, stored: StoredMessage, deliveries: int, record: RecordHeaders) -> bool:
        key = ""
        with contextlib.suppress(Exception):  # a record whose key cannot be read is dead-lettered without one
            payload = await _decoded(stored.data, record.content_type or "application/json")
            delivery = {"deliveryId": record.delivery_id or record.msg_id}
            key = bounded_key(await self.engine.business_key(payload, delivery, payload_bytes=len(stored.data)))
        meta = {"businessKey": key or None, "deliveryId": record.delivery_id, "delivered": deliveries}
        state, _ = await self.wiring.keys.state(key) if key else (None, 0)
        if state is not None and state.is_done:
            await self._audit(meta, "duplicate", [], "out of deliveries, but its business key is done")
            return False
        error = f"JetStream stopped after {deliveries} deliveries that no runner settled (crashed or lost NATS)"
        parked = ParkedRecord(
            reason="MaxDeliveriesExceeded",
            error=error,
            integration=self.plan.integration,
            revision=self.plan.revision,
            business_key=key,
            original_subject=stored.subject,
            stream_sequence=stored.sequence,
            deliveries=deliveries,
        )
        await self._publish_parked("deadLetter", parked, stored.data, stored.headers)
        await self._audit(meta, "deadLetter", [], f"MaxDeliveriesExceeded: {error}")
        return True

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
