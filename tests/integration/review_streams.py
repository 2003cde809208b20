"""Helpers of the review tests that talk to the streams directly: park a record as a runner would,
fill a stream with other namespaces' noise, read what was sent to a subject."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js import JetStreamContext

from onceflow_runner.contract import subjects
from onceflow_runner.contract.messages import AuditEntry, ParkedRecord, ReviewDecision


async def park(
    js: JetStreamContext,
    namespace: str,
    *,
    integration: str = "customer-sync",
    original_subject: str | None = None,
    step: str = "checkCustomer",
    reason: str = "InvalidRecord",
    business_key: str = "customer/DE1",
    payload: bytes = b'{"name": "Acme"}',
) -> int:
    """Put one record into the exception stream as a runner's `_park` does; its sequence."""
    parked = ParkedRecord(
        reason=reason,
        error="the record broke a rule",
        step=step,
        integration=integration,
        revision=f"{integration}-abc",
        business_key=business_key,
        original_subject=original_subject or subjects.inbound_subject(namespace, "crm", "customer.approved"),
        stream_sequence=1,
        deliveries=1,
    )
    ack = await js.publish(
        subjects.exceptions_subject(namespace, integration),
        payload,
        headers=parked.to_headers({"Content-Type": "application/json"}),
    )
    return int(ack.seq)


async def fill(nc: Client, js: JetStreamContext, subject: str, bodies: list[bytes]) -> None:
    """Store many messages fast (core publishes, then one acked publish after them)."""
    for body in bodies[:-1]:
        await nc.publish(subject, body)
    await nc.flush()
    await js.publish(subject, bodies[-1])


def other_decisions(count: int, integration: str = "noise") -> list[bytes]:
    """Decisions about other exceptions (the history a busy namespace builds up)."""
    now = datetime.now(UTC).isoformat()
    return [
        ReviewDecision(
            exception_sequence=10**9 + i, action="discard", who="ops", time=now, integration=integration
        ).to_wire()
        for i in range(count)
    ]


def other_audit(count: int, integration: str = "noise") -> list[bytes]:
    """Audit entries of other business keys."""
    now = datetime.now(UTC).isoformat()
    return [
        AuditEntry(time=now, integration=integration, business_key=f"noise/{i}", outcome="completed").to_wire()
        for i in range(count)
    ]


def body(data: bytes | None) -> dict[str, object]:
    return dict(json.loads(data or b"{}"))
