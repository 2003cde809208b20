"""The outbound EDI sender attacked as a careless ERP, a sloppy partner and a crash would: real SFTP and nats-server."""

from __future__ import annotations

import json

import pytest

from onceflow_operator.review.records import list_exceptions
from onceflow_runner.adapters.control_numbers import ControlNumberStore
from onceflow_runner.contract.keys import kv_token
from onceflow_runner.payloads.edi.outbound import document_findings
from tests.integration.edi_harness import sftp
from tests.integration.test_edi_outbound import Partner, control_numbers, partner
from tests.unit.edi_files import invoice, order_acknowledgment, partner_997_for, ship_notice

__all__ = ["partner", "sftp"]  # the fixtures, imported for pytest


async def test_the_same_business_key_with_other_content_is_an_exception_not_silently_dropped(partner: Partner) -> None:
    # A corrected invoice re-posted under its old key once vanished: the pod saw "sent" and acked it.
    pod = partner.pod()
    await pod.start()
    await partner.hand_over("810", invoice("PO-9", "INV-9"), "invoice/INV-9")
    await pod.poll_once()
    first = partner.documents("810")
    corrected = {**invoice("PO-9", "INV-9"), "total": 70.0}
    await partner.hand_over("810", corrected, "invoice/INV-9", delivery="corrected")
    await partner.hand_over("810", invoice("PO-9", "INV-9"), "invoice/INV-9", delivery="redelivered")
    await pod.poll_once()
    assert partner.documents("810") == first  # nothing sent twice, nothing new under the old number
    waiting = await list_exceptions(partner.nc.jetstream(), partner.plan.namespace, integration="acme-fulfilment")
    assert [(e.reason, e.business_key) for e in waiting] == [("InvalidRecord", "invoice/INV-9")]
    assert "already sent" in waiting[0].error
    assert "000000001" in waiting[0].error  # names the interchange the partner has


async def test_a_997_that_came_while_the_pod_was_down_is_not_later_reported_overdue(partner: Partner) -> None:
    # Crash after the rename, before the sent note: the partner took the file and answered 997 A while the
    # hand-over waited for its redelivery. The redelivery once uploaded the file a second time (the partner
    # got interchange 1 twice) and waited for a 997 that had come: AcknowledgmentOverdue a day later.
    pod = partner.pod()
    await pod.start()
    original = ControlNumberStore.record_sent

    class Crash(Exception):
        pass

    async def crash(self: ControlNumberStore, *args: object, **kwargs: object) -> None:
        raise Crash

    ControlNumberStore.record_sent = crash  # type: ignore[method-assign]
    try:
        await partner.hand_over("855", order_acknowledgment("PO-10"), "order/edi/PO-10")
        with pytest.raises(Crash):
            await pod.poll_once()
    finally:
        ControlNumberStore.record_sent = original  # type: ignore[method-assign]
    [(name, document)] = partner.documents("855").items()
    (partner.inbox / name).unlink()  # the partner picked it up
    (partner.pickup / "997-950.x12").write_bytes(partner_997_for(document, 950))
    survivor = partner.pod("r2")
    # The killed pod's hand-over comes back only after its ack wait: the 997 is read first.
    send_pending = survivor._send_pending

    async def not_yet(session: object) -> int:
        return 0

    survivor._send_pending = not_yet  # type: ignore[method-assign,assignment]
    await survivor.poll_once()  # first sight of the 997
    await survivor.poll_once()  # taken: read
    survivor._send_pending = send_pending  # type: ignore[method-assign]
    await survivor.poll_once()  # the redelivered hand-over
    assert partner.documents("855") == {}  # not uploaded a second time
    partner.offset = 3601.0
    await survivor.poll_once()
    js = partner.nc.jetstream()
    assert await list_exceptions(js, partner.plan.namespace, reason="AcknowledgmentOverdue") == []
    assert survivor.numbers is not None
    note = await survivor.numbers.sent(partner.plan.connector, 1)
    assert (note or {}).get("acknowledged") == "A"


async def test_a_997_accepting_then_one_rejecting_the_same_group_makes_the_rejection_visible(partner: Partner) -> None:
    pod = partner.pod()
    await pod.start()
    await partner.hand_over("810", invoice("PO-11", "INV-11"), "invoice/INV-11")
    await pod.poll_once()
    [document] = partner.documents("810").values()
    partner.answer_997(document, "A", control=960)
    await pod.poll_once()
    await pod.poll_once()
    partner.answer_997(document, "A", control=961)  # a duplicate: nothing to say
    await pod.poll_once()
    await pod.poll_once()
    js = partner.nc.jetstream()
    assert await list_exceptions(js, partner.plan.namespace, integration=partner.plan.connector) == []
    partner.answer_997(document, "R", control=962)  # the partner changed its mind
    await pod.poll_once()
    await pod.poll_once()
    waiting = await list_exceptions(js, partner.plan.namespace, integration=partner.plan.connector)
    assert [(e.reason, e.business_key) for e in waiting] == [("RejectedByPartner", "invoice/INV-11")]
    assert pod.numbers is not None
    assert ((await pod.numbers.sent(partner.plan.connector, 1)) or {}).get("acknowledged") == "R"


async def test_a_997_for_another_functional_group_or_a_number_never_sent_matches_nothing(partner: Partner) -> None:
    pod = partner.pod()
    await pod.start()
    await partner.hand_over("810", invoice("PO-12", "INV-12"), "invoice/INV-12")
    await pod.poll_once()
    [document] = partner.documents("810").values()
    wrong_group = partner_997_for(document, 970).replace(b"AK1*IN*1", b"AK1*PR*1")  # acks an 855 numbered 1
    (partner.pickup / "997-970.x12").write_bytes(wrong_group)
    never_sent = partner_997_for(document, 971).replace(b"AK1*IN*1", b"AK1*IN*77")
    (partner.pickup / "997-971.x12").write_bytes(never_sent)
    await pod.poll_once()
    await pod.poll_once()
    assert pod.numbers is not None
    assert ((await pod.numbers.sent(partner.plan.connector, 1)) or {}).get("acknowledged") is None
    keys = [k for k in await pod.numbers.kv.keys() if k.startswith("awaiting.")]
    assert keys == [f"awaiting.{kv_token(partner.plan.connector)}.000000001"]  # no entry made up for group 77
    assert control_numbers(partner.documents("810"))[0][1] == "1"


async def test_an_855_and_an_856_under_the_same_business_key_are_both_sent(partner: Partner) -> None:
    # Keyed by the business key alone, an Integration keying both by the PO once had its 856 dropped as "sent".
    pod = partner.pod()
    await pod.start()
    await partner.hand_over("855", order_acknowledgment("PO-13"), "PO-13")
    await partner.hand_over("856", ship_notice("PO-13", "DN-13"), "PO-13")
    await pod.poll_once()
    assert [len(partner.documents(kind)) for kind in ("855", "856")] == [1, 1]


async def test_the_acknowledgment_deadline_survives_a_restart_and_is_raised_once_across_pods(partner: Partner) -> None:
    first = partner.pod("r1")
    await first.start()
    await partner.hand_over("856", ship_notice("PO-14", "DN-14"), "shipment/DN-14")
    await partner.hand_over("810", invoice("PO-14", "INV-14"), "invoice/INV-14")
    await first.poll_once()
    partner.offset = 3540.0  # a minute before the deadline: nothing yet
    restarted = partner.pod("r2")
    await restarted.poll_once()
    js = partner.nc.jetstream()
    assert await list_exceptions(js, partner.plan.namespace, reason="AcknowledgmentOverdue") == []
    partner.offset = 3601.0  # past it: two pods pass, each document is raised once
    await restarted.poll_once()
    await partner.pod("r3").poll_once()
    await restarted.poll_once()
    overdue = await list_exceptions(js, partner.plan.namespace, reason="AcknowledgmentOverdue")
    assert sorted(e.business_key for e in overdue) == ["invoice/INV-14", "shipment/DN-14"]


async def test_a_997_kept_from_before_the_gs06_wrapped_does_not_stand_for_a_new_document(partner: Partner) -> None:
    # GS06 wraps from 999999999 to 1: what a partner said of the old group 1 is not about the new one.
    pod = partner.pod()
    await pod.start()
    assert pod.numbers is not None
    assert pod.outbound is not None
    old = {"code": "R", "functionalId": "IN", "detail": "AK9 R", "source": "", "at": 1.0}
    await pod.numbers.kv.put(pod.outbound._acked_key(1), json.dumps(old).encode())
    await partner.hand_over("810", invoice("PO-15", "INV-15"), "invoice/INV-15")
    await pod.poll_once()
    [document] = partner.documents("810").values()  # uploaded, not taken as acknowledged long ago
    assert control_numbers(partner.documents("810"))[0][1] == "1"
    partner.answer_997(document, "A", control=980)
    await pod.poll_once()
    await pod.poll_once()
    assert ((await pod.numbers.sent(partner.plan.connector, 1)) or {}).get("acknowledged") == "A"
    js = partner.nc.jetstream()
    assert await list_exceptions(js, partner.plan.namespace, integration=partner.plan.connector) == []


async def test_a_997_rejecting_a_set_we_did_not_send_in_our_group_is_not_taken_for_ours(partner: Partner) -> None:
    # AK1 names our GS06 but AK2 another ST02 (the partner mixed up its answers): it once parked our 810.
    pod = partner.pod()
    await pod.start()
    await partner.hand_over("810", invoice("PO-16", "INV-16"), "invoice/INV-16")
    await pod.poll_once()
    [document] = partner.documents("810").values()
    other_set = partner_997_for(document, 990, code="R").replace(b"AK2*810*0001", b"AK2*810*0777")
    (partner.pickup / "997-990.x12").write_bytes(other_set)
    await pod.poll_once()
    await pod.poll_once()
    js = partner.nc.jetstream()
    assert await list_exceptions(js, partner.plan.namespace, reason="RejectedByPartner") == []
    assert pod.numbers is not None
    assert ((await pod.numbers.sent(partner.plan.connector, 1)) or {}).get("acknowledged") is None
    partner.answer_997(document, "A", control=991)  # the right answer still settles it
    await pod.poll_once()
    await pod.poll_once()
    assert ((await pod.numbers.sent(partner.plan.connector, 1)) or {}).get("acknowledged") == "A"


async def test_control_numbers_wrap_from_999999999_to_1_in_a_valid_document(partner: Partner) -> None:
    # What held: ISA13 (9 digits), GS06 and ST02 all wrap to 1, and the document stays valid for pyx12.
    pod = partner.pod()
    await pod.start()
    assert pod.numbers is not None
    last = {"interchange": 999_999_998, "group": 999_999_998, "set": 999_999_998}
    await pod.numbers.kv.put(pod.numbers.counter_key(partner.plan.connector), json.dumps(last).encode())
    await partner.hand_over("855", order_acknowledgment("PO-17"), "order/edi/PO-17")
    await partner.hand_over("810", invoice("PO-17", "INV-17"), "invoice/INV-17")
    await pod.poll_once()
    numbers = control_numbers(partner.documents("855")) + control_numbers(partner.documents("810"))
    assert numbers == [("999999999", "999999999", "999999999"), ("000000001", "1", "0001")]
    for data in [*partner.documents("855").values(), *partner.documents("810").values()]:
        assert document_findings(data) == []
