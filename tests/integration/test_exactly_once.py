"""Exactly once under real-world input (issue 19): records in flight twice, filtered drafts, calls
slower than ackWait, records that crash the settle path or run out of deliveries, long keys.

Each test runs the real gateway and runner against a real nats-server and the sandbox ERP, and
ends with the ledger from the systems' own books (see test_delivery_faults): accepted = ERP
effects + exceptions + dead letters, no business key with two effects, asserted once the
Integration's consumer has settled everything.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.testing.sandbox import ErpSandbox, Fault
from tests.integration.scenario import eventually
from tests.integration.test_delivery_faults import Harness, start, stop

#: Most ERPs ignore Idempotency-Key, and ERPNext can name customers by series: a second create is
#: a second customer. Only the runner can then keep one record per business key.
FORGETFUL = {"honour_idempotency_key": False, "customer_naming": "Naming Series"}


def customer(key: str, **extra: Any) -> bytes:
    return json.dumps({"key": key, "name": f"Customer {key}", **extra}).encode()


def ack_wait_below_one_call(seconds: float) -> Callable[[dict[str, Any]], None]:
    """A plan whose ackWait is shorter than one call: made by hand, or refused by `onceflow validate`."""

    def edit(raw: dict[str, Any]) -> None:
        raw["error_policy"]["ack_wait"] = seconds
        raw["connectors"]["erp"]["read_timeout"] = 30.0

    return edit


@pytest.fixture
async def harness(nats_server: NatsServer) -> AsyncIterator[Harness]:
    h = await start(nats_server)
    yield h
    await stop(h)


@pytest.fixture
async def forgetful(nats_server: NatsServer) -> AsyncIterator[Harness]:
    h = await start(nats_server, erp=ErpSandbox(**FORGETFUL))
    yield h
    await stop(h)


async def test_the_same_customer_fired_twice_within_a_second_makes_one_erp_record_and_no_exception(
    forgetful: Harness,
) -> None:
    # Both deliveries are in flight together: the ERP answers the first create after 0.5s.
    forgetful.erp.faults.append(Fault(status=200, times=2, delay_seconds=0.5))
    body = customer("twice")
    await asyncio.gather(
        forgetful.send("twice", body, delivery_id="crm-delivery-1"),
        forgetful.send("twice", body, delivery_id="crm-delivery-2"),
    )
    ledger = await forgetful.settled(1)
    assert ledger.effects == {"twice": 1}
    assert len(forgetful.erp.docs["Customer"]) == 1
    assert ledger.exceptions == []
    assert ledger.dead_letters == []


async def test_a_filtered_draft_does_not_consume_the_key_of_the_submitted_document(nats_server: NatsServer) -> None:
    submitted_only = [{"name": "submitted", "filter": {"condition": "input.status == 'submitted'"}}]
    h = await start(nats_server, steps=submitted_only)
    try:
        await h.send("so-1", customer("so-1", status="draft"), delivery_id="so-1-draft")
        await eventually(h.quiet, within=30, interval=0.2)
        assert h.erp.effects == {}
        await h.send("so-1", customer("so-1", status="submitted"), delivery_id="so-1-submitted")
        ledger = await h.settled(1, within=30)
        assert ledger.effects == {"so-1": 1}
    finally:
        await stop(h)


async def test_a_call_slower_than_ack_wait_reaches_the_erp_once(nats_server: NatsServer) -> None:
    h = await start(nats_server, erp=ErpSandbox(**FORGETFUL), plan_edit=ack_wait_below_one_call(1.0))
    try:
        h.erp.faults.append(Fault(status=200, times=1, delay_seconds=3.5))
        await h.send("slow")
        ledger = await h.settled(1, within=30)
        assert ledger.effects == {"slow": 1}
        assert h.erp.requests == 1, "JetStream redelivered the record while its call was in flight"
        assert len(h.erp.docs["Customer"]) == 1
    finally:
        await stop(h)


async def test_a_4kb_business_key_reaches_the_erp_once_and_a_similar_one_is_not_confused_with_it(
    nats_server: NatsServer,
) -> None:
    h = await start(nats_server, erp=ErpSandbox(**FORGETFUL))
    try:
        first, second = "L" * 4000 + "-a", "L" * 4000 + "-b"
        await h.send(first, delivery_id="long-a")
        await h.send(second, delivery_id="long-b")
        ledger = await h.settled(2, within=40)
        assert sorted(ledger.effects.values()) == [1, 1], ledger.effects
        assert h.erp.requests == 2, "a record was called again after its effect"
        assert all(len(key) <= 256 for key in h.erp.effects), "the Idempotency-Key carries the whole key"
        assert ledger.exceptions == []
        assert ledger.dead_letters == []
    finally:
        await stop(h)
