"""The EDI inbound core without I/O: envelopes split, sets judged by pyx12, 997/TA1 built and valid."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onceflow_runner.payloads.edi.ack import ControlNumbers, acknowledgment, needed_numbers, needs_acknowledgment
from onceflow_runner.payloads.edi.envelope import split_file
from onceflow_runner.payloads.edi.inbound import assess_file
from onceflow_runner.payloads.edi.validation import validate_interchange
from onceflow_runner.payloads.x12 import decode_x12
from tests.unit.edi_files import (
    change_order,
    grocery_order,
    interchange,
    partner_997,
    partner_plan,
    purchase_order,
    two_interchanges_one_bad_set,
)

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def ack_for(data: bytes) -> list[str]:
    plan = partner_plan()
    documents = []
    for n, outcome in enumerate(assess_file(data, plan).interchanges, start=1):
        _, sets = needed_numbers(outcome)
        numbers = ControlNumbers(100 + n, 200 + n, tuple(range(300, 300 + sets)))
        documents.append(acknowledgment(outcome, plan.envelope, numbers, NOW).decode())
    return documents


def test_two_interchanges_of_three_sets_give_five_orders_one_rejected_set_and_valid_997s() -> None:
    data = two_interchanges_one_bad_set()
    assessment = assess_file(data, partner_plan())
    accepted = [s for s in assessment.sets if s.accepted]
    rejected = [s for s in assessment.sets if not s.accepted]
    assert len(accepted) == 5
    assert [(s.control, s.error_code) for s in rejected] == [("0002", "5")]
    assert "PO102" in rejected[0].reason
    keys = {s.business_key for s in assessment.sets}
    assert len(keys) == 6
    assert "sales/acme-edi/ZZ:ACMEBUY/000000001/1/0002" in keys
    # Each accepted set's original bytes are a one-set interchange the webhook decoder reads as it is.
    orders = [decode_x12(s.original) for s in accepted]
    assert sorted(o["po_no"] for o in orders) == ["PO-1-1", "PO-1-3", "PO-2-1", "PO-2-2", "PO-2-3"]
    first, second = ack_for(data)
    assert "AK2*850*0002~\nAK3*PO1*8**8~\nAK4*2**1~\nAK5*R*5~" in first
    assert "AK9*P*3*3*2~" in first
    assert "AK9*A*3*3*3~" in second
    assert first.count("AK5*A~") == 2
    assert "ISA*00*          *00*          *ZZ*ONCEDIST       *ZZ*ACMEBUY        *" in first
    # The 997 we send passes pyx12's own 997 map.
    for document in (first, second):
        verdict = validate_interchange(document)
        assert not verdict.interchange_errors
        assert [v.code for v in verdict.sets.values()] == ["A"]


def test_an_envelope_error_rejects_the_whole_interchange_with_a_ta1() -> None:
    good = interchange(7, [purchase_order(1, "PO-7-1")])
    broken = interchange(8, [purchase_order(1, "PO-8-1")], iea=99)
    assessment = assess_file((good + broken).encode(), partner_plan())
    assert [i.rejected for i in assessment.interchanges] == [False, True]
    assert [s.accepted for s in assessment.sets] == [True]
    documents = ack_for((good + broken).encode())
    assert "TA1*000000008*261130*0349*R*001~" in documents[1]
    assert "ST*997" not in documents[1]
    assert "IEA*0*000000102~" in documents[1]


def test_an_interchange_from_someone_else_is_refused() -> None:
    data = interchange(9, [purchase_order(1, "PO-9-1")], sender="STRANGER").encode()
    (outcome,) = assess_file(data, partner_plan()).interchanges
    assert outcome.interchange.error_code == "006"
    assert "ISA06" in (outcome.interchange.error or "")


def test_a_wrong_segment_count_rejects_only_that_set() -> None:
    bad = purchase_order(2, "PO-2")
    bad[-1] = "SE*99*0002"
    data = interchange(3, [purchase_order(1, "PO-1"), bad]).encode()
    sets = assess_file(data, partner_plan()).sets
    assert [(s.accepted, s.error_code) for s in sets] == [(True, None), (False, "4")]


def test_an_unsupported_set_is_rejected_as_not_supported() -> None:
    order = purchase_order(1, "PO-1")
    order[0] = "ST*860*0001"
    sets = assess_file(interchange(4, [order]).encode(), partner_plan()).sets
    assert [(s.set_id, s.code, s.error_code) for s in sets] == [("860", "R", "1")]


def test_a_partners_997_is_taken_as_a_record_and_never_acknowledged() -> None:
    (outcome,) = assess_file(partner_997(500), partner_plan()).interchanges
    assert [(s.set_id, s.code) for s in outcome.groups[0].sets] == [("997", "A")]
    assert not needs_acknowledgment(outcome)
    assert needed_numbers(outcome) == (0, 0)
    broken = partner_997(501).replace(b"AK9*A*1*1*1", b"AK9*Z*1*1*1")
    (outcome,) = assess_file(broken, partner_plan()).interchanges
    assert [(s.set_id, s.code) for s in outcome.groups[0].sets] == [("997", "R")]
    assert not needs_acknowledgment(outcome)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_the_splitter_never_raises_on_any_bytes(data: bytes) -> None:
    result = split_file(data)
    text = data.decode("latin-1")
    for found in result.interchanges:
        assert found.text in text
        for group in found.groups:
            for item in group.sets:
                assert item.text in text
    assert result.interchanges or result.problems


SAMPLE = two_interchanges_one_bad_set()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(SAMPLE) - 1), st.sampled_from(list(b"*~>^\n:ISAGSTEQ0123456789 \x00\xff"))),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, len(SAMPLE)),
)
def test_hostile_edits_of_a_real_file_end_as_records_or_rejections(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SAMPLE[:cut] if cut % 3 == 0 else SAMPLE)
    for position, byte in edits:
        if position < len(data):
            data[position] = byte
    plan = partner_plan()
    assessment = assess_file(bytes(data), plan)
    for item in assessment.sets:
        assert item.code in ("A", "E", "R")
        assert item.accepted or item.reason
    for n, outcome in enumerate(assessment.interchanges, start=1):
        _, sets = needed_numbers(outcome)
        document = acknowledgment(outcome, plan.envelope, ControlNumbers(n, n, tuple(range(1, sets + 1))), NOW)
        assert document.startswith(b"ISA*")


def test_an_860_is_taken_when_accepted_and_decodes_into_the_changes_of_an_order() -> None:
    plan = partner_plan().model_copy(update={"accept": ("850", "860")})
    changes = [change_order(1, "PO-1-1"), change_order(2, "PO-1-3", line_change="XX")]
    data = interchange(31, changes).replace("GS*PO*", "GS*PC*").encode()  # 860s travel in PC groups
    [outcome] = assess_file(data, plan).interchanges
    good, bad = outcome.groups[0].sets
    assert (good.set_id, good.code) == ("860", "A")
    assert (bad.code, bad.error_code) == ("R", "5")
    assert "POC" in bad.reason
    change = decode_x12(good.original)
    assert (change["po_no"], change["change"], change["change_sequence"], change["buyer"]) == (
        "PO-1-1",
        "change",
        "1",
        "ACME01",
    )
    assert [(line["line"], line["change"], line.get("quantity"), line.get("sku")) for line in change["lines"]] == [
        ("1", "quantity_increase", 12.0, "SKU-00001"),
        ("2", "delete", 0.0, "SKU-00002"),
        ("3", "add", 5.0, "SKU-00003"),
    ]
    assert change["lines"][2]["gtin"] == "036000291452"
    ack = acknowledgment(outcome, plan.envelope, ControlNumbers(90, 91, (92,)), NOW).decode()
    assert "AK1*PC*31~" in ack
    assert validate_interchange(ack).sets[("91", "0092")].code == "A"


def test_an_860_from_a_partner_that_sends_only_850s_is_rejected_as_not_supported() -> None:
    data = interchange(32, [change_order(1, "PO-1-1")]).replace("GS*PO*", "GS*PC*").encode()
    [outcome] = assess_file(data, partner_plan()).interchanges
    [item] = outcome.groups[0].sets
    assert (item.code, item.error_code) == ("R", "1")


def test_an_875_grocery_order_is_taken_when_accepted_and_decodes_into_an_order() -> None:
    plan = partner_plan().model_copy(update={"accept": ("850", "875")})
    orders = [grocery_order(1, "GPO-1"), grocery_order(2, "GPO-2", total=31)]
    data = interchange(41, orders).replace("GS*PO*", "GS*OG*").encode()  # 875s travel in OG groups
    [outcome] = assess_file(data, plan).interchanges
    good, miscounted = outcome.groups[0].sets
    assert (good.set_id, good.code) == ("875", "A")
    # G76 says 31 cases, the lines order 30: a line went missing on the way; the set is refused.
    assert (miscounted.code, miscounted.error_code) == ("R", "5")
    assert "G7601 says 31 CA but the lines order 30" in miscounted.reason
    order = decode_x12(good.original)
    assert (order["po_no"], order["order_date"], order["order_status"], order["buyer"]) == (
        "GPO-1",
        "20261130",
        "original",
        "FV01",
    )
    assert order["delivery_date"] == "20261205"
    assert order["ship_to"] == {"name": "Fresh Valley DC 2", "id": "DC2"}
    assert [(x["sku"], x["quantity"], x["uom"], x["price"], x["upc_case_code"]) for x in order["lines"]] == [
        ("007114103012", 10.0, "CA", 18.4, "007114103012"),
        ("SKU-00002", 20.0, "CA", 9.95, "007114103029"),
    ]
    ack = acknowledgment(outcome, plan.envelope, ControlNumbers(93, 94, (95,)), NOW).decode()
    assert "AK1*OG*41~" in ack
    assert "AK2*875*0001~" in ack
    assert validate_interchange(ack).sets[("94", "0095")].code == "A"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda s: [x for x in s if not x.startswith("G68")], "G68"),  # no line: the map requires one
        (lambda s: [x.replace("G50*N*", "G50*F*") for x in s], "G5001 'F' is not a new order"),
        (lambda s: [x.replace("G68*10*CA*18.40*007114103012", "G68*10*CA*18.40") for x in s], "G6804"),
        # Attack: without G76 pyx12 took the set (its map says required) and no total was checked.
        (lambda s: [x for x in s if not x.startswith("G76")], "the transaction set has no G76 segment"),
        # Attack: pyx12 said "Segment G66*M not found" of a segment that is there, just not in our map.
        (lambda s: [*s[:4], "G66*M*CC", *s[4:]], "G66 at 5: the 875 does not take a G66 segment here; it takes "),
        (lambda s: [*s[:10], "G72*504*06***1.5", *s[10:]], "G72 at 11: the 875 does not take a G72 segment here"),
        # Attack: -10 cases with G76 adjusted to match went out as an order line of -10.
        (
            lambda s: [x.replace("G68*10*CA", "G68*-10*CA").replace("G76*30*", "G76*10*") for x in s],
            "quantity ordered (element 01) must be more than 0: '-10'",
        ),
        (lambda s: [x.replace("G68*10*CA*18.40", "G68*10*CA*-18.40") for x in s], "must not be negative: '-18.40'"),
    ],
)
def test_a_broken_875_is_rejected_with_the_reason(change: Callable[[list[str]], list[str]], says: str) -> None:
    plan = partner_plan().model_copy(update={"accept": ("875",)})
    order = change(grocery_order(1, "GPO-9"))
    order[-1] = f"SE*{len(order)}*0001"
    data = interchange(42, [order]).replace("GS*PO*", "GS*OG*").encode()
    [outcome] = assess_file(data, plan).interchanges
    [item] = outcome.groups[0].sets
    assert (item.code, item.error_code) == ("R", "5")
    assert says in item.reason


_G875_ELEMENTS = ["", "0", "-1", "10", "1.5", "1e3", "CA", "EA", "UA", "VN", "UK", "BP", "007114103012", "x" * 49, "N"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["G50", "G68", "G76", "G62", "N1"]), st.integers(1, 9), st.sampled_from(_G875_ELEMENTS)
        ),
        min_size=1,
        max_size=5,
    ),
    st.sets(st.sampled_from(["G76", "G69", "N9", "G62", "G68"]), max_size=2),
)
def test_a_fuzzed_875_is_a_record_or_a_rejection_never_a_crash_nor_past_pyx12(
    edits: list[tuple[str, int, str]], dropped: set[str]
) -> None:
    """Any 875 the assessment takes decodes; what it rejects says why; what pyx12 rejects is never taken."""
    order = [x for x in grocery_order(1, "GPO-F") if x.split("*")[0] not in dropped]
    for tag, index, value in edits:
        for n, segment in enumerate(order):
            if segment.startswith(tag + "*"):
                elements = segment.split("*")
                elements += [""] * max(0, index + 1 - len(elements))
                elements[index] = value
                order[n] = "*".join(elements).rstrip("*")
                break
    order[-1] = f"SE*{len(order)}*0001"
    data = interchange(43, [order]).replace("GS*PO*", "GS*OG*")
    [outcome] = assess_file(data.encode(), partner_plan().model_copy(update={"accept": ("875",)})).interchanges
    [item] = outcome.groups[0].sets
    if item.accepted:
        assert validate_interchange(data).sets[("43", "0001")].code in ("A", "E")
        decoded = decode_x12(item.original)
        assert decoded["lines"]
        assert all(line["sku"] for line in decoded["lines"])
    else:
        assert item.reason


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (interchange(44, [grocery_order(1, "GPO-G")]), "an 875 travels in a group with GS01 OG, not PO"),
        (
            interchange(44, [purchase_order(1, "PO-G")]).replace("GS*PO*", "GS*OG*"),
            "an 850 travels in a group with GS01 PO, not OG",
        ),
    ],
)
def test_a_set_in_the_wrong_functional_group_is_rejected_saying_which_group_it_needs(data: str, says: str) -> None:
    # Attack: a partner putting its 875 in a PO group (as its 850s) read "the validator did not report on this set".
    plan = partner_plan().model_copy(update={"accept": ("850", "875")})
    [outcome] = assess_file(data.encode(), plan).interchanges
    [item] = outcome.groups[0].sets
    assert (item.code, item.error_code) == ("R", "5")
    assert says in item.reason


def test_an_875_delivery_date_is_the_requested_delivery_never_a_ship_date() -> None:
    # Attack: G62 10 is the requested ship (pick-up) date; sent before G62 02, it became the
    # order's delivery_date and the ERP planned the delivery for the day the goods should leave.
    order = grocery_order(1, "GPO-D")
    at = order.index("G62*02*20261205")
    order[at : at + 1] = ["G62*10*20261201", "G62*38*20261202", "G62*02*20261205"]
    order[-1] = f"SE*{len(order)}*0001"
    data = interchange(45, [order]).replace("GS*PO*", "GS*OG*").encode()
    [outcome] = assess_file(data, partner_plan().model_copy(update={"accept": ("875",)})).interchanges
    [item] = outcome.groups[0].sets
    assert item.code == "A", item.reason
    decoded = decode_x12(item.original)
    assert (decoded["delivery_date"], decoded["ship_date"]) == ("20261205", "20261201")
    only_ship = [x for x in order if not x.startswith("G62*02")]
    only_ship[-1] = f"SE*{len(only_ship)}*0001"
    decoded = decode_x12(interchange(46, [only_ship]).replace("GS*PO*", "GS*OG*").encode())
    assert "delivery_date" not in decoded
    assert decoded["ship_date"] == "20261201"
