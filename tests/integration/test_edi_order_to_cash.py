"""Order to cash with an EDI partner, through the operator, on real servers, with faults on the way.

docs/edi.md's partner and its three Integrations are applied as written (pointed at a real SFTP
server on loopback and the sandbox ERP); the operator runs the partner's EDI pods (two replicas)
and the runners as processes. The test plays the partner (it writes 850s and 997s into its folder
and reads what lands in ours) and the warehouse and billing side (it publishes the canonical
`shipment.shipped` and `invoice.posted` events the ERP-side Integrations publish):

850s in -> 997s out -> sales orders in the ERP -> 855s out -> shipment -> 856 out -> invoice ->
810 out -> the partner's 997s back in, matched.

Faults: a malformed set among good ones, a file still being written while polled, the same file
dropped twice, an EDI pod killed while files are in flight, the SFTP server down for a while.
Ledger: every inbound set is one ERP order or one rejected set with a 997 saying so (and an
exception a person sees); every order has one 855; control numbers are never used twice.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import nats
import pytest

from onceflow_operator.dev.executor import LocalExecutor
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.records import list_exceptions
from onceflow_runner.adapters.control_numbers import ControlNumberStore
from onceflow_runner.contract import headers as h
from onceflow_runner.contract.subjects import event_subject
from onceflow_runner.payloads.edi.envelope import split_file
from onceflow_runner.payloads.edi.outbound import document_findings
from tests.conftest import Kubectl
from tests.integration.edi_harness import SftpServer, sftp
from tests.integration.scenario import Sandboxes, eventually, example_documents, sandbox_effects
from tests.integration.test_edi_operator import documented_partner, pointed_at
from tests.unit.edi_files import interchange, partner_997_for, purchase_order, two_interchanges_one_bad_set

__all__ = ["sftp"]  # the fixture, imported for pytest

pytestmark = pytest.mark.controlplane
ACCEPTED = ("PO-1-1", "PO-1-3", "PO-2-1", "PO-2-2", "PO-2-3", "PO-7-1", "PO-7-2")


def files(folder: Path, pattern: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob(pattern))} if folder.exists() else {}


def envelope_numbers(data: bytes) -> list[tuple[str, str]]:
    """(ISA13, GS06) of every interchange and group in a file we sent."""
    return [(i.control, g.control) for i in split_file(data).interchanges for g in i.groups] or [
        (i.control, "") for i in split_file(data).interchanges
    ]


async def publish_event(nc: nats.NATS, namespace: str, entity: str, verb: str, data: dict[str, Any], key: str) -> None:
    """What the ERP-side Integrations publish (a canonical event, keyed for JetStream's duplicate window)."""
    headers = {h.NATS_MSG_ID: key, h.CONTENT_TYPE: "application/json"}
    await nc.jetstream().publish(event_subject(namespace, entity, verb), json.dumps(data).encode(), headers=headers)


async def test_order_to_cash_with_a_partner_over_sftp_survives_faults_and_keeps_the_ledger(
    kubectl: Kubectl,
    operator_running: None,
    executor: LocalExecutor,
    boxes: Sandboxes,
    sftp: SftpServer,
    nats_server: NatsServer,
) -> None:
    namespace = kubectl.namespace
    pickup, drop = sftp.root / "to-onceflow", sftp.root / "from-onceflow"
    pickup.mkdir()
    docs = documented_partner(sftp)
    for doc in docs:
        if doc["kind"] == "Connector":
            doc["spec"]["edi"]["sftp"]["lease"] = "4s"  # a killed pod's claims come back within the test
    kubectl.apply(*pointed_at(example_documents(), boxes), *docs)
    await asyncio.to_thread(
        kubectl.run,
        "wait",
        "--for=condition=Ready",
        "connector/acme-edi",
        "integration/acme-orders",
        "integration/acme-ship-notices",
        "integration/acme-invoices",
        "--timeout=180s",
    )

    # 1. Orders in: a file with a malformed set among good ones; then a file written slowly while
    # the pods poll (it grows between every two listings, so it is never taken half-written).
    (pickup / "orders.x12").write_bytes(two_interchanges_one_bad_set())
    await eventually(lambda: len(files(drop, "997_*")) == 2, within=120)
    growing = interchange(7, [purchase_order(1, "PO-7-1"), purchase_order(2, "PO-7-2")]).encode()
    chunk = len(growing) // 20 + 1
    with (pickup / "later.x12").open("wb") as handle:
        for start in range(0, len(growing), chunk):
            handle.write(growing[start : start + chunk])
            handle.flush()
            await asyncio.sleep(0.1)  # the partner's upload pace (the poll interval is 500 ms)
    # The SFTP server goes away for a while: the pods stop being ready, nothing moves, nothing is lost.
    await sftp.stop()

    def no_pod_ready() -> bool:  # readyReplicas 0 is left out of the status
        return not kubectl.get("deployment", "acme-edi-edi")["status"].get("readyReplicas")

    await eventually(lambda: asyncio.to_thread(no_pod_ready), within=60, interval=0.5)
    (pickup / "orders-resent.x12").write_bytes(two_interchanges_one_bad_set())  # the partner sends it again
    await sftp.start()
    # One EDI pod is killed while the files are in flight; the executor starts another.
    replicas = executor.replicas[(namespace, "acme-edi-edi")]
    replicas[0].proc.send_signal(signal.SIGKILL)

    async def all_orders() -> dict[str, int] | None:
        effects = await sandbox_effects(boxes.erp)
        return effects if len(effects) >= len(ACCEPTED) else None

    effects = await eventually(all_orders, within=180)
    assert effects == {f"order/edi/{po}/createSalesOrder": 1 for po in ACCEPTED}
    acks = await eventually(lambda: files(drop, "997_*") if len(files(drop, "997_*")) == 3 else None, within=120)
    texts = list(acks.values())
    assert sum(t.count(b"AK5*A~") for t in texts) == len(ACCEPTED)
    assert sum(t.count(b"AK5*R*5~") for t in texts) == 1  # the malformed set, once (the resent file is a duplicate)
    assert files(drop, "TA1_*") == {}  # no interchange was ever read half-written

    # 2. An 855 per order, valid for its set.
    acknowledgments = await eventually(
        lambda: files(drop, "855_*") if len(files(drop, "855_*")) >= len(ACCEPTED) else None, within=120
    )
    assert len(acknowledgments) == len(ACCEPTED)
    acknowledged = sorted(re.search(rb"BAK\*00\*AD\*([^*]+)\*", d).group(1).decode() for d in acknowledgments.values())  # type: ignore[union-attr]
    assert acknowledged == sorted(ACCEPTED)
    assert all(document_findings(d) == [] for d in acknowledgments.values())

    # 3. The warehouse ships PO-1-1 (twice announced: a retry) and billing posts its invoice.
    nc = await nats.connect(nats_server.url)
    try:
        shipment = {
            "customer": "ACME01",
            "delivery_note": "DN-1-1",
            "po_no": "PO-1-1",
            "ship_date": "2026-12-01",
            "carrier": "UPSN",
            "tracking_number": "1Z999AA10123456784",
            "packs": [
                {"serial": 1, "items": [{"sku": "SKU-00001", "quantity": 2}]},
                {"serial": 2, "items": [{"sku": "SKU-00002", "quantity": 4}]},
            ],
        }
        await publish_event(nc, namespace, "shipment", "shipped", shipment, "shipment/DN-1-1")
        await publish_event(nc, namespace, "shipment", "shipped", shipment, "shipment/DN-1-1/retry")
        bill = {
            "name": "ACC-SINV-0001",
            "customer": "ACME01",
            "docstatus": 1,
            "posting_date": "2026-12-01",
            "po_no": "PO-1-1",
            "currency": "USD",
            "grand_total": 72.36,  # 67.00 of items and 5.36 of sales tax, as ERPNext totals it
            "items": [
                {"item_code": "SKU-00001", "qty": 2, "rate": 10.5},
                {"item_code": "SKU-00002", "qty": 4, "rate": 11.5},
            ],
            "taxes": [{"account_head": "Sales Tax - ACME", "tax_amount": 5.36}],
        }
        await publish_event(nc, namespace, "invoice", "posted", bill, "invoice/ACC-SINV-0001")
        notices = await eventually(lambda: files(drop, "856_*") or None, within=120)
        invoices = await eventually(lambda: files(drop, "810_*") or None, within=120)
        [asn] = notices.values()
        [invoice] = invoices.values()
        assert document_findings(asn) == []
        assert document_findings(invoice) == []
        assert b"MAN*GM*006141410000000012~" in asn
        assert b"TDS*7236~" in invoice
        assert b"TXI*ST*5.36~" in invoice

        # 4. The partner's 997s come back: all accepted but the invoice, which it rejects.
        sent = {**acknowledgments, **notices, **invoices}
        for number, (name, data) in enumerate(sorted(sent.items()), start=700):
            (pickup / f"997-for-{name}").write_bytes(
                partner_997_for(data, number, code="R" if data is invoice else "A")
            )
        store = await ControlNumberStore.open(nc.jetstream(), namespace)

        async def acknowledged_notes() -> list[dict[str, object]] | None:
            notes = [await store.sent("acme-edi", int(split_file(d).interchanges[0].control)) for d in sent.values()]
            return notes if all(n and n.get("acknowledged") for n in notes) else None

        notes = await eventually(acknowledged_notes, within=120)
        assert sorted(str(n["acknowledged"]) for n in notes) == ["A"] * (len(sent) - 1) + ["R"]
        exceptions = await list_exceptions(nc.jetstream(), namespace, integration="acme-edi")
        assert sorted((e.reason, e.business_key) for e in exceptions) == [
            ("RejectedByPartner", "invoice/ACC-SINV-0001"),
            ("RejectedSet", next(e.business_key for e in exceptions if e.reason == "RejectedSet")),
        ]
    finally:
        await nc.drain()

    # 5. Ledger: no 997 went back for the partner's 997s; no control number was used twice.
    ours = {**files(drop, "997_*"), **files(drop, "855_*"), **files(drop, "856_*"), **files(drop, "810_*")}
    assert len(files(drop, "997_*")) == 3
    numbers = [pair for data in ours.values() for pair in envelope_numbers(data)]
    interchanges = [isa for isa, _ in numbers]
    groups = [gs for _, gs in numbers]
    assert len(interchanges) == len(set(interchanges)) == len(ours)
    assert len(groups) == len(set(groups))
    assert not list(pickup.glob("*.x12"))
    assert not list((pickup / ".claimed").iterdir())
