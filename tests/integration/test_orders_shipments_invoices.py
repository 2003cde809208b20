"""Scenarios 2 and 3 end to end, with the example manifests, through `onceflow local run`."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest

from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract import subjects
from tests.integration.scenario import (
    Sandboxes,
    dumps,
    eventually,
    example_documents,
    new_namespace,
    sandbox_effects,
    signed_post,
    start_local_run,
    start_sandboxes,
    stream_messages,
)

SHOP_SECRET = "sandbox-shopify-secret"
EDI_SECRET = "sandbox-edi-secret"
TPL_SECRET = "sandbox-3pl-secret"


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    sandboxes = await start_sandboxes()
    for sku, rate in (("SKU-1", 12.5), ("SKU-2", 99.0)):
        sandboxes.erp.seed(
            "Item Price",
            {
                "name": f"IP-{sku}",
                "item_code": sku,
                "price_list": "Standard Selling",
                "price_list_rate": rate,
            },
        )
    sandboxes.erp.seed("Delivery Note", {"name": "MAT-DN-00042", "customer": "Acme", "status": "To Deliver"})
    yield sandboxes
    await sandboxes.stop()


@pytest.fixture
async def orders(nats_server: NatsServer, boxes: Sandboxes) -> AsyncIterator[tuple[LocalRun, str]]:
    namespace = new_namespace()
    run = await start_local_run(example_documents("order-capture"), namespace, nats_server.url, boxes)
    yield run, namespace
    run.stop()


@pytest.fixture
async def shipments(nats_server: NatsServer, boxes: Sandboxes) -> AsyncIterator[tuple[LocalRun, str]]:
    namespace = new_namespace()
    run = await start_local_run(example_documents("shipments-invoices"), namespace, nats_server.url, boxes)
    yield run, namespace
    run.stop()


def shopify_order(order_id: int, price: str = "12.50") -> dict[str, object]:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "email": "buyer@acme.test",
        "currency": "EUR",
        "total_price": "137.50",
        "line_items": [
            {"sku": "SKU-1", "quantity": 3, "price": price, "title": "Widget"},
            {"sku": "SKU-2", "quantity": 1, "price": "99.00", "title": "Gadget"},
        ],
        "shipping_address": {
            "address1": "Hauptstr. 1",
            "city": "Berlin",
            "zip": "10115",
            "country_code": "DE",
        },
        "customer": {"id": 7, "email": "buyer@acme.test"},
    }


async def test_shop_order_priced_right_becomes_one_erp_sales_order(
    orders: tuple[LocalRun, str], boxes: Sandboxes
) -> None:
    run, _ = orders
    order_id = uuid.uuid4().int % 10**6
    body = dumps(shopify_order(order_id))
    async with httpx.AsyncClient() as client:
        for _ in range(2):  # Shopify retries; X-Shopify-Webhook-Id makes it one record
            resp = await _shopify_post(client, run, body, f"wh-{order_id}")
            assert resp.status_code == 202, resp.text
    effects = await eventually(lambda: sandbox_effects(boxes.erp))
    assert effects == {f"order/shop/{order_id}/createSalesOrder": 1}
    (sales_order,) = boxes.erp.docs["Sales Order"].values()
    assert sales_order["po_no"] == f"#{order_id}"
    assert sales_order["items"] == [
        {"item_code": "SKU-1", "qty": 3, "rate": 12.5},
        {"item_code": "SKU-2", "qty": 1, "rate": 99.0},
    ]


async def test_shop_order_off_the_price_list_is_a_pricing_exception(
    orders: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    run, namespace = orders
    async with httpx.AsyncClient() as client:
        resp = await _shopify_post(client, run, dumps(shopify_order(5, price="11.00")), "wh-5")
    assert resp.status_code == 202
    subject = f"onceflow.{namespace}.exceptions.shop-orders"
    (parked,) = await eventually(lambda: stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject))
    assert parked.headers["Onceflow-Reason"] == "ApprovalRequired"
    assert parked.headers["Onceflow-Step"] == "pricingException"
    assert "Sales Order" not in boxes.erp.docs


X12 = (
    "ISA*00*          *00*          *ZZ*ACME           *ZZ*DISTRIBUTOR    *261127*1200*U*00401*000000905*0*P*>~"
    "GS*PO*ACME*DIST*20261127*1200*905*X*004010~ST*850*0001~BEG*00*SA*{po}**20261127~CUR*BY*EUR~"
    "N1*BY*Acme Retail*92*ACME01~PO1*1*10*EA*12.50**BP*SKU-1*UP*036000291452~CTT*{ctt}~SE*7*0001~GE*1*905~IEA*1*000000905~"
)


async def test_edi_850_becomes_one_erp_sales_order_and_a_bad_count_is_an_exception(
    orders: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    run, namespace = orders
    po = f"PO-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient() as client:
        ok = await signed_post(
            client,
            run.gateway_url("edi-partner"),
            "hmac",
            EDI_SECRET,
            X12.format(po=po, ctt=1).encode(),
            "isa-1",
            header="X-Signature",
        )
        bad = await signed_post(
            client,
            run.gateway_url("edi-partner"),
            "hmac",
            EDI_SECRET,
            X12.format(po="PO-BAD", ctt=3).encode(),
            "isa-2",
            header="X-Signature",
        )
    assert (ok.status_code, bad.status_code) == (202, 202)
    await eventually(lambda: sandbox_effects(boxes.erp))
    assert await sandbox_effects(boxes.erp) == {f"order/edi/{po}/createSalesOrder": 1}
    (sales_order,) = boxes.erp.docs["Sales Order"].values()
    assert sales_order["customer"] == "ACME01"
    subject = f"onceflow.{namespace}.exceptions.edi-orders"
    (exc,) = await eventually(lambda: stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject))
    assert exc.headers["Onceflow-Reason"] == "MalformedInput"
    assert "segment CTT at position" in exc.headers["Onceflow-Error"]


async def test_3pl_milestones_update_the_erp_delivery_and_the_portal_once_each(
    shipments: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    run, namespace = shipments
    milestones = [
        {"delivery_note": "MAT-DN-00042", "milestone": "picked"},
        {
            "delivery_note": "MAT-DN-00042",
            "milestone": "shipped",
            "carrier": "DHL",
            "tracking": "JD0146000012345",
        },
        {"delivery_note": "MAT-DN-00043", "milestone": "shipped"},  # no tracking: refused
    ]
    async with httpx.AsyncClient() as client:
        for i, event in enumerate(milestones):
            body = dumps(event)
            for _ in range(2):  # the 3PL retries every post once
                resp = await signed_post(
                    client,
                    run.gateway_url("tpl-webhooks"),
                    "hmac",
                    TPL_SECRET,
                    body,
                    f"3pl-{i}",
                    header="X-3PL-Signature",
                )
                assert resp.status_code == 202
    await eventually(lambda: len(boxes.portal.received) >= 2)
    subject = f"onceflow.{namespace}.exceptions.shipment-milestones"
    (exc,) = await eventually(lambda: stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject))
    assert "needs a tracking number" in exc.headers["Onceflow-Error"]
    note = boxes.erp.docs["Delivery Note"]["MAT-DN-00042"]
    assert note["status"] == "shipped"
    assert note["tracking_number"] == "JD0146000012345"
    assert note["customer"] == "Acme"  # the 3PL does not own it, so it was never sent
    assert sorted(await sandbox_effects(boxes.erp)) == [
        "shipment/MAT-DN-00042/picked/updateErp",
        "shipment/MAT-DN-00042/shipped/updateErp",
    ]
    assert set((await sandbox_effects(boxes.portal)).values()) == {1}


async def test_posted_erp_invoice_reaches_accounting_once(
    shipments: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer
) -> None:
    _, namespace = shipments
    number = f"ACC-SINV-{uuid.uuid4().hex[:6]}"
    invoice = {
        "name": number,
        "customer": "Acme",
        "currency": "EUR",
        "grand_total": "137.50",
        "due_date": "2026-12-27",
        "docstatus": 1,
    }
    draft = {**invoice, "name": number + "-draft", "docstatus": 0}
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for doc in (invoice, invoice, draft):
            await js.publish(
                subjects.event_subject(namespace, "invoice", "posted"),
                json.dumps(doc).encode(),
                headers={"Nats-Msg-Id": f"erp/{doc['name']}"},
            )
    finally:
        await nc.close()
    key = f"invoice/{number}/postToAccounting"
    effects = await eventually(lambda: _has_key(sandbox_effects(boxes.accounting), key))
    assert effects[key] == 1
    assert not any(number + "-draft" in k for k in effects)
    posted = [
        body
        for _, path, _, body in boxes.accounting.received
        if path == "/invoices" and body["invoice_number"] == number
    ]
    assert posted == [
        {
            "invoice_number": number,
            "customer": "Acme",
            "currency": "EUR",
            "total": 137.5,
            "due_date": "2026-12-27",
        }
    ]


async def _has_key(effects: object, key: str) -> object:
    got = await effects  # type: ignore[misc]
    return got if key in got else None


async def _shopify_post(client: httpx.AsyncClient, run: LocalRun, body: bytes, webhook_id: str) -> httpx.Response:
    from tests.integration.scenario import signature_headers

    headers = signature_headers("shopify", SHOP_SECRET, body, webhook_id)
    headers |= {"X-Shopify-Topic": "orders/create", "Content-Type": "application/json"}
    return await client.post(run.gateway_url("shop-webhooks"), content=body, headers=headers)
