"""Scenario 1 end to end: signed CRM webhook -> gateway -> JetStream -> runner -> ERP, WMS, shop."""

from __future__ import annotations

import uuid

import httpx
import nats

from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import get_exception
from tests.integration.scenario import (
    CRM_SECRET,
    Sandboxes,
    crm_customer_event,
    dumps,
    eventually,
    sandbox_effects,
    signed_post,
    stream_messages,
)


def tax_id() -> str:
    return f"DE{uuid.uuid4().int % 10**9:09d}"


async def test_approved_crm_customer_reaches_erp_wms_and_shop_once(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    run, namespace = onboarding
    tid = tax_id()
    async with httpx.AsyncClient() as client:
        resp = await signed_post(
            client,
            run.gateway_url("crm-webhooks"),
            "standard-webhooks",
            CRM_SECRET,
            dumps(crm_customer_event(tid)),
            "msg_001",
        )
    assert resp.status_code == 202, resp.text
    key = f"customer/{tid}/createInErp"
    await eventually(lambda: sandbox_effects(boxes.erp))
    effects = await eventually(lambda: _when(sandbox_effects(boxes.wms), lambda e: len(e) == 1))
    assert list(effects.values()) == [1]
    assert (await sandbox_effects(boxes.erp)) == {key: 1}
    assert list((await sandbox_effects(boxes.shop)).values()) == [1]
    created = boxes.erp.docs["Customer"]["Acme Industrial GmbH"]
    assert created["tax_id"] == tid
    assert created["customer_type"] == "Company"
    events = await stream_messages(nats_server.url, "ONCEFLOW_EVENTS", f"onceflow.{namespace}.events.customer.created")
    assert len(events) == 1
    assert events[0].headers["ce-type"] == "io.onceflow.customer.created"
    assert events[0].headers["ce-id"] == f"customer/{tid}"


async def test_retried_webhook_creates_one_erp_customer(onboarding: tuple[LocalRun, str], boxes: Sandboxes) -> None:
    run, _ = onboarding
    tid = tax_id()
    body = dumps(crm_customer_event(tid))
    async with httpx.AsyncClient() as client:
        first = await signed_post(
            client, run.gateway_url("crm-webhooks"), "standard-webhooks", CRM_SECRET, body, "msg_a"
        )
        again = await signed_post(
            client, run.gateway_url("crm-webhooks"), "standard-webhooks", CRM_SECRET, body, "msg_a"
        )
        await eventually(lambda: _when(sandbox_effects(boxes.shop), lambda e: len(e) == 1))
        # The CRM re-sends the same customer later with a new delivery id: the business key holds.
        late = await signed_post(
            client, run.gateway_url("crm-webhooks"), "standard-webhooks", CRM_SECRET, body, "msg_b"
        )
    assert first.json()["duplicate"] is False
    assert again.json()["duplicate"] is True
    assert late.status_code == 202
    await eventually(lambda: _metric(run, "customer-onboarding", "onceflow_runner_duplicates_total") >= 1)
    assert await sandbox_effects(boxes.erp) == {f"customer/{tid}/createInErp": 1}
    assert len(boxes.erp.docs["Customer"]) == 1


async def test_invalid_customer_goes_to_exceptions_with_original_bytes_and_nothing_reaches_erp(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    run, namespace = onboarding
    body = dumps(crm_customer_event(tax_id(), address={"city": "Nowhere", "postal_code": "1", "country": "XX"}))
    async with httpx.AsyncClient() as client:
        resp = await signed_post(client, run.gateway_url("crm-webhooks"), "standard-webhooks", CRM_SECRET, body, "m1")
    assert resp.status_code == 202
    subject = f"onceflow.{namespace}.exceptions.customer-onboarding"
    (exc,) = await eventually(lambda: stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject))
    assert exc.data == body
    assert exc.headers["Onceflow-Reason"] == "InvalidRecord"
    assert exc.headers["Onceflow-Step"] == "checkCustomer"
    assert "record.country" in exc.headers["Onceflow-Error"]
    assert "ISO 3166" in exc.headers["Onceflow-Error"]
    assert await sandbox_effects(boxes.erp) == {}


async def test_a_reflected_direct_get_on_the_intake_is_an_exception_and_nothing_reaches_erp(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    """A record carrying a direct get's headers was stored by JetStream answering someone's request.

    With per-namespace users in one NATS account, another namespace can have JetStream answer a
    direct get of its own record onto this intake (NATS checks no permission on a reply subject;
    docs/install.md). Such a record skipped this Connector's signature check: it must never reach
    a target, and a person sees it. Here the admin stores it as such an answer would arrive.
    """
    _run, namespace = onboarding
    body = dumps(crm_customer_event(tax_id()))
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(
            f"onceflow.{namespace}.in.crm-webhooks.customer.approved",
            body,
            headers={
                "Content-Type": "application/json",
                "Nats-Stream": "ONCEFLOW_IN",
                "Nats-Sequence": "7",
                "Nats-Subject": "onceflow.other.in.crm-webhooks.customer.approved",
            },
        )
    finally:
        await nc.close()
    subject = f"onceflow.{namespace}.exceptions.customer-onboarding"

    async def reflected() -> list[object]:
        stored = await stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject)
        return [m for m in stored if m.headers.get("Onceflow-Reason") == "ReflectedRecord" and m.data == body]

    assert await eventually(reflected)
    assert await sandbox_effects(boxes.erp) == {}


async def test_bad_signature_is_refused_and_nothing_is_stored(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    run, namespace = onboarding
    async with httpx.AsyncClient() as client:
        resp = await signed_post(
            client,
            run.gateway_url("crm-webhooks"),
            "standard-webhooks",
            "whsec_" + "A" * 32,
            dumps(crm_customer_event(tax_id())),
            "m2",
        )
    assert resp.status_code == 401
    assert "signature" in resp.json()["error"]
    stored = await stream_messages(nats_server.url, "ONCEFLOW_IN", f"onceflow.{namespace}.in.>")
    assert stored == []


async def test_erp_503_with_retry_after_is_retried_to_one_effect(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes
) -> None:
    run, _ = onboarding
    boxes.erp.faults.append(_fault(503, times=4, retry_after=0.2, path="/api/resource/Customer"))
    tid = tax_id()
    async with httpx.AsyncClient() as client:
        await signed_post(
            client,
            run.gateway_url("crm-webhooks"),
            "standard-webhooks",
            CRM_SECRET,
            dumps(crm_customer_event(tid)),
            "m3",
        )
    await eventually(lambda: _when(sandbox_effects(boxes.shop), lambda e: len(e) == 1))
    assert await sandbox_effects(boxes.erp) == {f"customer/{tid}/createInErp": 1}
    assert boxes.erp.faults[0].times == 0


async def test_a_customer_onceflow_created_is_found_by_the_similar_name_rule(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    """The shipped rule (same postcode, name 90 % alike) fires on records the workflow itself created."""
    run, namespace = onboarding
    first, second = tax_id(), tax_id()
    async with httpx.AsyncClient() as client:
        url = run.gateway_url("crm-webhooks")
        body = dumps(crm_customer_event(first, name="Acme Industrial GmbH"))
        await signed_post(client, url, "standard-webhooks", CRM_SECRET, body, "m4")
        await eventually(lambda: _when(sandbox_effects(boxes.erp), lambda e: len(e) == 1))
        body = dumps(crm_customer_event(second, name="ACME Industrial GmbH."))
        await signed_post(client, url, "standard-webhooks", CRM_SECRET, body, "m5")
    subject = f"onceflow.{namespace}.exceptions.customer-onboarding"
    (parked,) = await eventually(lambda: stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject))
    assert parked.headers["Onceflow-Reason"] == "ApprovalRequired"
    assert parked.headers["Onceflow-Step"] == "existing"
    assert parked.headers["Onceflow-Entity"] == "customer"
    nc = await nats.connect(nats_server.url)
    try:
        record = await get_exception(nc.jetstream(), namespace, parked.seq)
    finally:
        await nc.close()
    (match,) = record.candidates  # stored in full beside the exception, not in a header
    assert match["rule"] == "similar-name-same-postcode"
    assert match["candidate"]["tax_id"] == first
    assert match["candidate"]["customer_name"] == "Acme Industrial GmbH"  # the ERP's row, as the ERP has it
    levels = {f["field"]: f["level"] for f in match["fields"]}
    assert levels["postal_code"] == "exact"
    assert levels["name"].startswith("fuzzy 0.9")
    assert record.matched is not None
    assert record.matched["tax_id"] == second
    assert await sandbox_effects(boxes.erp) == {f"customer/{first}/createInErp": 1}
    incidence = "onceflow_runner_dedupe_records_total"
    assert _metric(run, "customer-onboarding", incidence, 'outcome="new"') >= 1
    assert _metric(run, "customer-onboarding", incidence, 'outcome="parked"') >= 1


def _fault(status: int, *, times: int, retry_after: float | None = None, path: str = "/") -> object:
    from onceflow_runner.testing.sandbox import Fault

    return Fault(status=status, times=times, retry_after=retry_after, path_prefix=path)


async def _when(value: object, predicate: object) -> object:
    got = await value  # type: ignore[misc]
    return got if predicate(got) else None  # type: ignore[operator]


def _metric(run: LocalRun, integration: str, name: str, having: str = "") -> float:
    _, port = run.runners[integration]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") and having in line
    )
