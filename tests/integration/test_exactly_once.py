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

import nats
import pytest

from onceflow_operator.clients.topology import ensure_plan
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.engine.ports import Response
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


class ExplodingCaller:
    """A Caller with a bug: what any exception the settle path did not expect looks like."""

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, connector: str, method: str, path: str, **_: Any) -> Response:
        self.calls += 1
        raise RuntimeError(f"bug in {connector} client\nTraceback (most recent call last): ...")


async def test_an_unexpected_exception_parks_the_record_as_internal_error_with_its_bytes(
    nats_server: NatsServer,
) -> None:
    h = await start(nats_server, in_process=True)
    try:
        caller = ExplodingCaller()
        await h.start_runner(caller)
        body = customer("buggy")
        await h.send("buggy", body)
        ledger = await h.settled(1, within=30)
        (parked,) = ledger.exceptions
        assert parked.data == body
        assert parked.headers["Onceflow-Reason"] == "InternalError"
        assert "RuntimeError: bug in erp client" in parked.headers["Onceflow-Error"]
        assert "Traceback" not in parked.headers["Onceflow-Error"]
        assert caller.calls == 1, "an unexpected exception is not retried blindly"
    finally:
        await stop(h)


async def test_deep_json_that_crashes_the_decoder_is_parked_with_its_bytes_not_stranded(harness: Harness) -> None:
    deep = b"[" * 5_000 + b"]" * 5_000
    await harness.send("deep", deep)
    ledger = await harness.settled(1, within=40)
    (parked,) = ledger.exceptions
    assert parked.data == deep
    assert parked.headers["Onceflow-Reason"] in {"InternalError", "MalformedInput"}


async def test_a_record_out_of_deliveries_that_no_runner_settled_becomes_a_dead_letter(
    nats_server: NatsServer,
) -> None:
    def two_short_deliveries(raw: dict[str, Any]) -> None:
        raw["error_policy"].update({"ack_wait": 1.0, "max_deliver": 2, "backoff": [0.1]})

    h = await start(nats_server, in_process=True, plan_edit=two_short_deliveries)
    try:
        assert h.plan is not None
        nc = await nats.connect(h.nats.url)
        js = nc.jetstream()
        await ensure_plan(js, h.plan)
        body = customer("crashed")
        await h.send("crashed", body)
        # A runner that takes the record and dies before settling it, twice: JetStream gives up.
        sub = await js.pull_subscribe_bind(h.plan.nats.consumer, stream=h.plan.nats.stream)
        for _ in range(2):
            (msg,) = await sub.fetch(1, timeout=10)
            assert msg.data == body
        await nc.close()
        await h.start_runner()
        ledger = await h.settled(1, within=30)
        (dead,) = ledger.dead_letters
        assert dead.data == body
        assert dead.headers["Onceflow-Reason"] == "MaxDeliveriesExceeded"
        assert dead.headers["Onceflow-Deliveries"] == "2"
    finally:
        await stop(h)


async def test_mixed_faults_ledger_has_every_record_once(nats_server: NatsServer) -> None:
    """Duplicates in flight, filtered drafts, a slow target, poison and crashing records, long keys."""
    h = await start(
        nats_server,
        erp=ErpSandbox(**FORGETFUL),
        plan_edit=ack_wait_below_one_call(1.5),
        steps=[{"name": "no_drafts", "filter": {"condition": "!has(input.status) || input.status != 'draft'"}}],
    )
    try:
        h.erp.faults.append(Fault(status=200, times=4, delay_seconds=2.5))
        plain = [f"n{i}" for i in range(20)]
        twins = [f"t{i}" for i in range(5)]
        drafts = [f"s{i}" for i in range(3)]
        long_keys = ["K" * 4000 + "1", "K" * 4000 + "2"]
        await asyncio.gather(
            h.send_many(plain),
            *(h.send(k, customer(k), delivery_id=f"{k}-{n}") for k in twins for n in range(3)),
            *(h.send(k, customer(k, status="draft"), delivery_id=f"{k}-draft") for k in drafts),
            *(h.send(k, delivery_id=f"long-{i}") for i, k in enumerate(long_keys)),
            h.send("poison", b"{not json at all"),
            h.send("deep", b"[" * 5_000 + b"]" * 5_000),
            h.send("nameless", json.dumps({"key": "nameless", "name": ""}).encode()),
        )
        await eventually(h.quiet, within=60, interval=0.2)
        await asyncio.gather(*(h.send(k, customer(k, status="submitted"), delivery_id=f"{k}-final") for k in drafts))
        ledger = await h.settled(len(h.accepted), within=90)
        effects, parked = sum(ledger.effects.values()), len(ledger.exceptions) + len(ledger.dead_letters)
        print(f"ledger: accepted {len(h.accepted)} = effects {effects} + parked {parked}")
        assert effects == len(plain) + len(twins) + len(drafts) + len(long_keys)
        assert len(h.erp.docs["Customer"]) == effects
        reasons = sorted(m.headers["Onceflow-Reason"] for m in ledger.exceptions)
        assert len(reasons) == 3, reasons
        assert {"RejectedByTarget", "MalformedInput"} <= set(reasons), reasons
    finally:
        await stop(h)
