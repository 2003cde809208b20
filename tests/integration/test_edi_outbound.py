"""EDI outbound against a real SFTP server and a real nats-server: 855/856/810 sent once, 997s matched.

Documents are handed over as a `sendEdi` step does (JSON on `in._edi_outbound.<connector>.<set>`
with the business key); the partner's pod sends them at its next pass. The test plays the partner:
it reads what lands in its folder and drops 997s back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from onceflow_operator.clients import topology
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.records import list_exceptions
from onceflow_runner.adapters.control_numbers import HISTORY_TTL, ControlNumberStore
from onceflow_runner.contract import headers as h
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.subjects import edi_bucket, edi_outbound_subject, kv_stream
from onceflow_runner.edi.poller import EdiInbound
from onceflow_runner.payloads.edi.envelope import split_file
from onceflow_runner.payloads.edi.outbound import document_findings
from tests.integration.edi_harness import SftpServer, secrets_for, sftp
from tests.integration.scenario import eventually
from tests.unit.edi_files import (
    invoice,
    order_acknowledgment,
    partner_997_for,
    partner_plan,
    ship_notice,
    two_interchanges_one_bad_set,
)

__all__ = ["sftp"]  # the fixture, imported for pytest


class Partner:
    """The trading partner's side of the SFTP server, and the hand-over a sendEdi step does."""

    def __init__(self, plan: EdiPartnerPlan, server: SftpServer, nc: nats.NATS, secrets: Path) -> None:
        self.plan, self.server, self.nc, self.secrets = plan, server, nc, secrets
        self.offset = 0.0

    def pod(self, owner: str = "r1") -> EdiInbound:
        return EdiInbound(
            self.plan, nc=self.nc, secrets_dir=self.secrets, owner=owner, clock=lambda: time.time() + self.offset
        )

    @property
    def inbox(self) -> Path:
        return self.server.root / "from-onceflow"

    @property
    def pickup(self) -> Path:
        return self.server.root / "to-onceflow"

    def documents(self, kind: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.inbox.glob(f"{kind}_*.x12"))} if self.inbox.exists() else {}

    async def hand_over(self, kind: str, record: object, key: str, *, delivery: str = "") -> None:
        subject = edi_outbound_subject(self.plan.namespace, self.plan.connector, kind)
        headers = {
            h.NATS_MSG_ID: f"{key}/send{kind}/{delivery}",
            h.BUSINESS_KEY: key,
            h.INTEGRATION: "acme-fulfilment",
            h.STEP: f"send{kind}",
        }
        await self.nc.jetstream().publish(subject, json.dumps(record).encode(), headers=headers)

    def answer_997(self, document: bytes, code: str = "A", control: int = 900) -> None:
        """Drop the partner's 997 for one of our documents."""
        (self.pickup / f"997-{control}.x12").write_bytes(partner_997_for(document, control, code=code))


@pytest.fixture
async def partner(sftp: SftpServer, tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Partner]:
    namespace = f"edo{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(nats_server.url)
    plan = partner_plan(namespace, port=sftp.port).model_copy(
        update={"send": ("855", "856", "810"), "acknowledgment_deadline_seconds": 3600.0}
    )
    # What the operator creates for a sending partner (pods only bind): streams, buckets, its consumer.
    await topology.ensure_streams(nc.jetstream())
    await topology.ensure_buckets(nc.jetstream(), namespace)
    await topology.ensure_edi_outbound(nc.jetstream(), plan)
    found = Partner(plan, sftp, nc, secrets_for(tmp_path, sftp))
    found.pickup.mkdir()
    yield found
    await nc.drain()


def control_numbers(documents: dict[str, bytes]) -> list[tuple[str, str, str]]:
    found = []
    for data in documents.values():
        isa = split_file(data).interchanges[0]
        found.append((isa.control, isa.groups[0].control, isa.groups[0].sets[0].control))
    return found


async def test_855_856_810_land_in_the_partners_folder_once_each_valid_for_pyx12(partner: Partner) -> None:
    pod = partner.pod()
    await pod.start()  # streams and the partner's consumer, as the pod does at its start
    await partner.hand_over("855", order_acknowledgment("PO-1"), "order/edi/PO-1")
    await partner.hand_over("856", ship_notice("PO-1"), "shipment/DN-0042")
    await partner.hand_over("810", invoice("PO-1"), "invoice/INV-7")
    await pod.poll_once()
    sent = {kind: partner.documents(kind) for kind in ("855", "856", "810")}
    assert [len(docs) for docs in sent.values()] == [1, 1, 1]
    for docs in sent.values():
        for data in docs.values():
            assert document_findings(data) == []
    numbers = [n for docs in sent.values() for n in control_numbers(docs)]
    assert len({isa for isa, _, _ in numbers}) == 3  # never the same ISA13 twice
    assert len({gs for _, gs, _ in numbers}) == 3
    assert not list(partner.inbox.glob(".*"))  # no temporary name left behind
    # A redelivery of the same business key (a runner retried after a crash) sends nothing new.
    await partner.hand_over("855", order_acknowledgment("PO-1"), "order/edi/PO-1", delivery="again")
    await pod.poll_once()
    assert partner.documents("855") == sent["855"]


async def test_a_crash_after_numbering_re_uploads_the_same_bytes_under_the_same_number(partner: Partner) -> None:
    doomed = partner.pod("r1")
    await doomed.start()
    assert doomed.outbound is not None
    write = None

    class Crash(Exception):
        pass

    from onceflow_runner.adapters.sftp import SftpSession

    original_write = SftpSession.write

    async def crash(self: SftpSession, path: str, data: bytes) -> None:
        nonlocal write
        write = data
        raise Crash

    SftpSession.write = crash  # type: ignore[method-assign]
    try:
        await partner.hand_over("810", invoice("PO-2", "INV-8"), "invoice/INV-8")
        with pytest.raises(Crash):
            await doomed.poll_once()
    finally:
        SftpSession.write = original_write  # type: ignore[method-assign]
    assert partner.documents("810") == {}
    survivor = partner.pod("r2")
    await survivor.poll_once()  # the hand-over was nak'ed: redelivered to the next pass
    docs = partner.documents("810")
    assert list(docs.values()) == [write]  # the bytes numbered before the crash, not a new number
    assert control_numbers(docs)[0][0] == "000000001"


async def test_997s_are_matched_and_rejections_and_silence_become_exceptions(partner: Partner) -> None:
    pod = partner.pod()
    await pod.start()  # streams and the partner's consumer, as the pod does at its start
    await partner.hand_over("855", order_acknowledgment("PO-3"), "order/edi/PO-3")
    await partner.hand_over("856", ship_notice("PO-3", "DN-3"), "shipment/DN-3")
    await partner.hand_over("810", invoice("PO-3", "INV-3"), "invoice/INV-3")
    await pod.poll_once()
    [ack855] = partner.documents("855").values()
    [asn] = partner.documents("856").values()
    partner.answer_997(ack855, "A", control=901)
    partner.answer_997(asn, "R", control=902)
    await pod.poll_once()  # first sight of the 997 files
    await pod.poll_once()  # taken: matched
    js = partner.nc.jetstream()
    waiting = await list_exceptions(js, partner.plan.namespace, integration=partner.plan.connector)
    assert [(e.reason, e.business_key) for e in waiting] == [("RejectedByPartner", "shipment/DN-3")]
    assert "AK5 R 5 for 856" in waiting[0].error
    assert waiting[0].payload == asn
    # No 997 for the 810: after the deadline it waits for a person, once.
    partner.offset = 3601.0
    await pod.poll_once()
    await pod.poll_once()
    overdue = await list_exceptions(js, partner.plan.namespace, reason="AcknowledgmentOverdue")
    assert [(e.integration, e.business_key) for e in overdue] == [(partner.plan.connector, "invoice/INV-3")]
    assert "no 997 from acme-edi for 810" in overdue[0].error
    assert pod.numbers is not None
    notes = [await pod.numbers.sent(partner.plan.connector, n) for n in (1, 2, 3)]
    assert [(n or {}).get("acknowledged") for n in notes] == ["A", "R", None]


async def test_a_record_that_cannot_make_its_document_is_an_exception_and_uses_no_number(partner: Partner) -> None:
    pod = partner.pod()
    await pod.start()  # streams and the partner's consumer, as the pod does at its start
    await partner.hand_over("856", {**ship_notice("PO-4"), "gs1_company_prefix": None}, "shipment/DN-4")
    await partner.hand_over("810", invoice("PO-4", "INV-4"), "invoice/INV-4")
    await pod.poll_once()
    waiting = await list_exceptions(partner.nc.jetstream(), partner.plan.namespace, integration="acme-fulfilment")
    assert [(e.reason, e.step, e.business_key) for e in waiting] == [("InvalidRecord", "send856", "shipment/DN-4")]
    assert "record.packs.0.sscc" in waiting[0].error
    assert control_numbers(partner.documents("810"))[0][0] == "000000001"


async def test_a_rejected_inbound_set_is_an_exception_a_person_sees(partner: Partner) -> None:
    (partner.pickup / "orders.x12").write_bytes(two_interchanges_one_bad_set())
    pod = partner.pod()
    await pod.poll_once()
    await pod.poll_once()
    waiting = await list_exceptions(partner.nc.jetstream(), partner.plan.namespace, reason="RejectedSet")
    assert len(waiting) == 1
    assert waiting[0].integration == partner.plan.connector
    assert "997 rejecting it" in waiting[0].error
    assert waiting[0].payload.startswith(b"ISA*")


async def history_ttls(nc: nats.NATS, namespace: str) -> dict[str, str | None]:
    """Each key of the namespace's EDI bucket and the TTL its entry was written with (None: kept for ever)."""
    bucket = edi_bucket(namespace)
    kv = await nc.jetstream().key_value(bucket)
    found = {}
    for key in await kv.keys():
        msg = await nc.jetstream().get_msg(kv_stream(bucket), subject=f"$KV.{bucket}.{key}")
        found[key] = (msg.headers or {}).get("Nats-TTL")
    return found


async def test_the_edi_bucket_keeps_its_counters_for_ever_and_everything_else_for_a_while(partner: Partner) -> None:
    pod = partner.pod()
    await pod.start()
    # A key of its own: the outbound stream is shared, and an earlier test's PO-3 hand-over has the
    # same Nats-Msg-Id, which JetStream drops as a duplicate within its window (no 855 was sent).
    await partner.hand_over("855", order_acknowledgment("PO-4"), "order/edi/PO-4")
    await pod.poll_once()
    [data] = partner.documents("855").values()
    partner.answer_997(data)
    (partner.pickup / "po.x12").write_bytes(two_interchanges_one_bad_set())  # files in get 997s out
    await pod.poll_once()  # first sight of the files
    await pod.poll_once()  # taken
    ttls = await history_ttls(partner.nc, partner.plan.namespace)
    kinds = {key.split(".")[0] for key in ttls}
    assert {"counter", "sent", "out", "acked", "file"} <= kinds, ttls
    assert "awaiting" not in kinds  # the 997 came: purged
    counter = ControlNumberStore.counter_key(partner.plan.connector)
    assert {key: ttl for key, ttl in ttls.items() if key.startswith("counter.")} == {counter: None}
    assert {ttl for key, ttl in ttls.items() if not key.startswith("counter.")} == {str(HISTORY_TTL)}


async def test_history_entries_expire_and_the_counter_stays(partner: Partner) -> None:
    js = partner.nc.jetstream()
    store = await ControlNumberStore.open(js, partner.plan.namespace, history_ttl=1)
    drawn = await store.allocate("acme")
    await store.record_sent("acme", drawn.interchanges[0], {"kind": "855"})
    await store.keep_new("awaiting.acme.000000001", b"{}")
    await store.forget("awaiting.acme.000000001")
    kv = await js.key_value(edi_bucket(partner.plan.namespace))

    async def only_the_counter_left() -> bool:
        return await kv.keys() == [store.counter_key("acme")]

    await eventually(only_the_counter_left, within=30, interval=0.5)
    assert (await store.current("acme"))[0]["interchange"] == drawn.interchanges[0]
