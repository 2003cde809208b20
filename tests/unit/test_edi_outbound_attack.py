"""Outbound documents attacked with what a careless ERP sends: each case once slipped through the builder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from onceflow_runner.errors import InvalidRecord
from onceflow_runner.payloads.edi.ack import ControlNumbers
from onceflow_runner.payloads.edi.outbound import build_document, document_findings
from tests.unit.edi_files import invoice, order_acknowledgment, partner_plan, ship_notice

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
NUMBERS = ControlNumbers(41, 42, (43,))


def elements(data: bytes, tag: str) -> list[list[str]]:
    text = data.decode("latin-1").replace("\n", "")
    return [s.split("*") for s in text.split("~") if s.startswith(tag + "*")]


def build(kind: str, record: dict[str, object]) -> bytes:
    return build_document(kind, record, partner_plan().envelope, NUMBERS, NOW, step=f"send{kind}")


def line(record: dict[str, object], **changes: object) -> dict[str, object]:
    lines = [dict(x) for x in record["lines"]]  # type: ignore[attr-defined]
    lines[0].update(changes)
    return {**record, "lines": lines}


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", 0.00001), ("price", 4.123456), ("quantity", 2.00005)],
)
def test_a_value_with_more_decimals_than_x12_carries_is_refused_not_rounded(field: str, value: float) -> None:
    # 0.00001 once went out as IT102 "0" and 4.123456 as IT104 "4.1235": the partner billed what we did not mean.
    with pytest.raises(InvalidRecord, match=rf"record\.lines\.0\.{field}: .*4 decimal places"):
        build("810", line(invoice(), **{field: value}))


def test_four_decimals_still_go_out_exactly() -> None:
    [it1, _] = elements(build("810", line(invoice(), quantity=1.5, price=0.1234)), "IT1")
    assert it1[2:5] == ["1.5", "EA", "0.1234"]


@pytest.mark.parametrize(("total", "cents"), [(0.29, "29"), (67.5, "6750"), (19.99, "1999"), (1234567.89, "123456789")])
def test_the_810_total_goes_out_in_exact_cents(total: float, cents: str) -> None:
    [tds] = elements(build("810", {**invoice(), "total": total}), "TDS")
    assert tds[1] == cents


@pytest.mark.parametrize("total", [1.005, 0.285, 67.505])
def test_an_810_total_with_fractions_of_a_cent_is_refused_not_rounded(total: float) -> None:
    # It once went out rounded by float arithmetic: 1.005 as TDS*100, 0.285 as TDS*28.
    with pytest.raises(InvalidRecord, match=r"record\.total: .*2 decimal places"):
        build("810", {**invoice(), "total": total})


def test_an_sscc_that_is_not_18_digits_is_refused_naming_the_pack() -> None:
    # A GTIN-14 with a good check digit once went out as MAN*GM*<14 digits>; a dock cannot receive it.
    record = ship_notice()
    record["packs"] = [{"sscc": "00614141000012", "items": [{"sku": "WID-1", "quantity": 1}]}]
    with pytest.raises(InvalidRecord, match=r"record\.packs\.0\.sscc: .*18 digits"):
        build("856", record)


def test_a_serial_too_long_for_the_company_prefix_is_an_invalid_record_naming_the_pack() -> None:
    # It once escaped as a bare ValueError, parked as "not a JSON record".
    record = ship_notice()
    record["packs"] = [{"serial": 10**12, "items": [{"sku": "WID-1", "quantity": 1}]}]
    with pytest.raises(InvalidRecord, match=r"record\.packs\.0\.serial: serial 1000000000000 does not fit"):
        build("856", record)


def test_duplicate_line_numbers_are_refused() -> None:
    # Two IT1*1 lines: the partner matches invoice lines to order lines by IT101 and pays one of them.
    lines = [{**x, "line": "1"} for x in invoice()["lines"]]  # type: ignore[attr-defined]
    with pytest.raises(InvalidRecord, match=r"record\.lines\.1\.line: line number '1' is used twice"):
        build("810", {**invoice(), "lines": lines})


def test_duplicate_item_line_numbers_within_a_pack_are_refused() -> None:
    record = ship_notice()
    record["packs"] = [
        {"serial": 1, "items": [{"sku": "A", "quantity": 1, "line": "7"}, {"sku": "B", "quantity": 1, "line": "7"}]}
    ]
    with pytest.raises(InvalidRecord, match=r"record\.packs\.0\.items\.1\.line: line number '7' is used twice"):
        build("856", record)


@pytest.mark.parametrize("value", ["WID\n1", "WID\r1", "W\x07D", "WÏD"])
def test_newlines_control_and_non_ascii_characters_are_caught_by_the_map_check(value: str) -> None:
    # What held: the builder lets these through, and the pyx12 pre-check (run before numbers are drawn) finds them.
    findings = document_findings(build("810", line(invoice(), sku=value)))
    assert any("IT107" in f for f in findings)


@pytest.mark.parametrize("status", ["accepted", "backordered", "changed"])
def test_an_855_line_acknowledged_with_quantity_zero_must_say_rejected(status: str) -> None:
    # It once went out as ACK*IA*0: "item accepted, none of it", which a buyer's system reads either way.
    record = order_acknowledgment()
    record = line(record, status=status, quantity_acknowledged=0)
    with pytest.raises(InvalidRecord, match=r"record\.lines\.0\.quantity_acknowledged: .*status rejected"):
        build("855", record)


def test_a_rejected_855_line_acknowledged_with_quantity_zero_goes_out() -> None:
    [ack, _] = elements(build("855", line(order_acknowledgment(), status="rejected", quantity_acknowledged=0)), "ACK")
    assert ack[1:4] == ["IR", "0", "EA"]
