"""Outbound 855/856/810 built from canonical records: enveloped per partner, valid for pyx12, refused when wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from onceflow_runner.contract.edi import EdiEnvelope
from onceflow_runner.contract.gs1 import gs1_check_digit_ok, sscc18
from onceflow_runner.errors import InvalidRecord
from onceflow_runner.payloads.edi.ack import ControlNumbers, read_997
from onceflow_runner.payloads.edi.envelope import split_file
from onceflow_runner.payloads.edi.outbound import build_document
from onceflow_runner.payloads.edi.validation import validate_interchange
from tests.unit.edi_files import invoice, order_acknowledgment, partner_997_for, partner_plan, ship_notice

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
NUMBERS = ControlNumbers(41, 42, (43,))


def segments(data: bytes, env: EdiEnvelope | None = None) -> list[list[str]]:
    env = env or partner_plan().envelope
    text = data.decode("latin-1").replace("\n", "")
    return [s.split(env.element_separator) for s in text.split(env.segment_terminator) if s]


@pytest.mark.parametrize(
    ("kind", "record", "functional_id"),
    [("855", order_acknowledgment(), "PR"), ("856", ship_notice(), "SH"), ("810", invoice(), "IN")],
)
def test_generated_documents_pass_pyx12_for_their_set(kind: str, record: dict[str, object], functional_id: str) -> None:
    data = build_document(kind, record, partner_plan().envelope, NUMBERS, NOW)
    verdict = validate_interchange(data.decode("latin-1"))
    assert verdict.interchange_errors == []
    assert verdict.group_errors == {}
    assert {key: (r.set_id, r.code, r.errors) for key, r in verdict.sets.items()} == {("42", "0043"): (kind, "A", ())}
    segs = segments(data)
    assert segs[0][13] == "000000041"
    assert segs[0][15] == "P"
    assert segs[1][:2] == ["GS", functional_id]
    assert segs[1][6] == "42"
    assert segs[2] == ["ST", kind, "0043"]
    assert segs[-3] == ["SE", str(len(segs) - 4), "0043"]


def test_the_validator_refuses_a_broken_856_and_810_so_the_maps_are_not_vacuous() -> None:
    env = partner_plan().envelope
    asn = build_document("856", ship_notice(), env, NUMBERS, NOW).decode()
    assert validate_interchange(asn.replace("MAN*GM*", "MAN*ZZ*")).sets[("42", "0043")].code == "R"
    bill = build_document("810", invoice(), env, NUMBERS, NOW).decode()
    no_total = bill.replace("TDS*6750~\n", "").replace("SE*8*", "SE*7*")
    assert validate_interchange(no_total).sets[("42", "0043")].code == "R"


def test_the_856_nests_shipment_order_pack_item_with_sscc18_check_digits() -> None:
    segs = segments(build_document("856", ship_notice(), partner_plan().envelope, NUMBERS, NOW))
    levels = [(s[1], s[2], s[3]) for s in segs if s[0] == "HL"]
    assert levels == [("1", "", "S"), ("2", "1", "O"), ("3", "2", "P"), ("4", "3", "I"), ("5", "2", "P"),
                      ("6", "5", "I"), ("7", "5", "I")]  # fmt: skip
    ssccs = [s[2] for s in segs if s[0] == "MAN"]
    assert ssccs == [sscc18("00614141", 1), sscc18("00614141", 2)] == ["006141410000000012", "006141410000000029"]
    assert all(len(code) == 18 and gs1_check_digit_ok(code) for code in ssccs)
    assert ["CTT", "7"] in segs
    assert ["PRF", "PO-1001"] in segs
    assert ["SN1", "", "5", "CA"] in segs


def test_the_855_says_per_line_what_happens_and_the_810_totals_in_cents() -> None:
    env = partner_plan().envelope
    ack = segments(build_document("855", order_acknowledgment(), env, NUMBERS, NOW))
    assert ack[3] == ["BAK", "00", "AC", "PO-1001", "20261129"]
    assert [s for s in ack if s[0] == "ACK"] == [["ACK", "IA", "10", "EA"], ["ACK", "IB", "5", "CA", "068", "20261204"]]
    accepted = order_acknowledgment()
    accepted["lines"] = [accepted["lines"][0]]  # type: ignore[index]
    assert segments(build_document("855", accepted, env, NUMBERS, NOW))[3][2] == "AD"
    bill = segments(build_document("810", invoice(), env, NUMBERS, NOW))
    assert bill[3] == ["BIG", "20261201", "INV-7", "", "PO-1001"]
    assert ["TDS", "6750"] in bill
    assert ["CTT", "2"] in bill


def test_the_partners_separators_and_usage_are_used_and_the_envelope_walk_reads_the_result() -> None:
    env = EdiEnvelope.model_validate(
        {
            "ours": {"qualifier": "01", "id": "123456789", "applicationCode": "ONCEDIST"},
            "partner": {"qualifier": "ZZ", "id": "ACMEBUY", "applicationCode": "ACMEBUY"},
            "elementSeparator": "|",
            "componentSeparator": "^",
            "segmentTerminator": "'",
            "usage": "T",
        }
    )
    data = build_document("810", invoice(), env, NUMBERS, NOW)
    assert data.startswith(b"ISA|00|")
    isa = segments(data, env)[0]
    assert (isa[5], isa[6].strip(), isa[15], isa[16]) == ("01", "123456789", "T", "^")
    walked = split_file(data)
    assert [(i.control, [s.set_id for g in i.groups for s in g.sets]) for i in walked.interchanges] == [
        ("000000041", ["810"])
    ]


@pytest.mark.parametrize(
    ("kind", "record", "field"),
    [
        ("856", {**ship_notice(), "gs1_company_prefix": None}, "record.packs.0.sscc: a pack needs"),
        ("856", {**ship_notice(), "packs": [{"sscc": "006141410000000013", "items": [{"sku": "A", "quantity": 1}]}]},
         "record.packs.0.sscc"),
        ("810", {**invoice(), "lines": []}, "record.lines"),
        ("855", {**order_acknowledgment(), "po_no": ""}, "record.po_no"),
    ],
)  # fmt: skip
def test_a_record_that_cannot_make_the_document_is_refused_naming_the_field(
    kind: str, record: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        build_document(kind, record, partner_plan().envelope, NUMBERS, NOW, step="send855")
    assert field in str(caught.value)
    assert caught.value.step == "send855"


def test_a_value_holding_a_separator_is_refused_not_sent_cut_in_two() -> None:
    with pytest.raises(InvalidRecord, match=r"BIG02 'INV\*7' holds '\*'"):
        build_document("810", {**invoice(), "invoice_number": "INV*7"}, partner_plan().envelope, NUMBERS, NOW)


def test_a_partners_997_is_read_per_group_with_rejected_sets_and_their_notes() -> None:
    data = build_document("856", ship_notice(), partner_plan().envelope, NUMBERS, NOW)
    [accepted] = read_997(partner_997_for(data, 501))
    assert (accepted.functional_id, accepted.group, accepted.code, accepted.rejected) == ("SH", "42", "A", ())
    [rejected] = read_997(partner_997_for(data, 502, code="R"))
    assert rejected.code == "R"
    assert [(s.set_id, s.control, s.code, s.error_code, s.notes) for s in rejected.rejected] == [
        ("856", "0043", "R", "5", ("AK3*TDS*5**8",))
    ]
    assert read_997(b"not x12 at all") == []
