"""Outbound documents attacked with what a careless ERP sends: each case once slipped through the builder."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    record = line(invoice(), quantity=1.5, price=0.1234)
    record["total"] = 22.69  # 1.5 x 0.1234 = 0.1851, a cent and a half rounded to 0.19, plus 22.50
    [it1, _] = elements(build("810", record), "IT1")
    assert it1[2:5] == ["1.5", "EA", "0.1234"]


@pytest.mark.parametrize(("total", "cents"), [(0.29, "29"), (67.5, "6750"), (19.99, "1999"), (1234567.89, "123456789")])
def test_the_810_total_goes_out_in_exact_cents(total: float, cents: str) -> None:
    record = {**invoice(), "total": total, "lines": [{"sku": "A", "quantity": 1, "price": total}]}
    [tds] = elements(build("810", record), "TDS")
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


def test_an_810_carries_the_taxes_and_charges_its_total_holds_and_pyx12_accepts_them() -> None:
    record = {
        **invoice(),
        "total": 90.33,  # 67.50 of lines + 12.83 tax + 15.00 freight - 5.00 discount
        "taxes": [{"code": "ST", "amount": 12.83}],
        "charges": [{"code": "D240", "amount": 15}, {"code": "C310", "amount": 5, "allowance": True}],
    }
    data = build("810", record)
    assert document_findings(data) == []
    assert elements(data, "TDS") == [["TDS", "9033"]]
    assert elements(data, "TXI") == [["TXI", "ST", "12.83"]]
    assert elements(data, "SAC") == [["SAC", "C", "D240", "", "", "1500"], ["SAC", "A", "C310", "", "", "500"]]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        # An ERP's grand total with its tax, mapped without the tax: the partner's audit finds 12.83 missing.
        ({"total": 80.33}, "record.total: 80.33 is not what the invoice adds up to: lines 67.50 + taxes 0.00 "),
        ({"total": 67.5, "taxes": [{"code": "ST", "amount": 12.83}]}, "= 80.33"),
        ({"total": 67.5, "charges": [{"code": "C310", "amount": 5, "allowance": True}]}, "- allowances 5.00 = 62.50"),
        ({"total": 67.53}, "record.total: 67.53"),  # three cents off on two lines: more than rounding
    ],
)
def test_an_810_whose_total_does_not_add_up_is_refused_naming_the_figures(
    changes: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidRecord, match="not what the invoice adds up to") as caught:
        build("810", {**invoice(), **changes})
    assert says in str(caught.value)
    assert caught.value.step == "send810"


def test_a_rounding_cent_per_line_is_tolerated() -> None:
    # Each of two lines of 3 x 0.3333 is 0.9999, 1.00 after rounding; an ERP may show 1.99 or 2.00.
    lines = [{"sku": "A", "quantity": 3, "price": 0.3333}, {"sku": "B", "quantity": 3, "price": 0.3333}]
    for total in (1.99, 2.0, 2.01):
        assert elements(build("810", {**invoice(), "lines": lines, "total": total}), "TDS")
    with pytest.raises(InvalidRecord, match="adds up"):
        build("810", {**invoice(), "lines": lines, "total": 2.03})


@pytest.mark.parametrize(
    ("charge", "field"),
    [({"code": "freight", "amount": 1}, "charges.0.code"), ({"code": "D240", "amount": 0}, "charges.0.amount")],
)
def test_a_charge_without_a_sac_code_or_amount_is_refused(charge: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRecord, match=rf"record\.{field}"):
        build("810", {**invoice(), "charges": [charge]})


_money = st.integers(min_value=0, max_value=10**7).map(lambda cents: cents / 100)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.integers(1, 10**4).map(lambda q: q / 4), st.integers(0, 10**7).map(lambda p: p / 10**4)),
        min_size=1,
        max_size=8,
    ),
    taxes=st.lists(_money, max_size=3),
    charges=st.lists(st.tuples(_money.filter(bool), st.booleans()), max_size=3),
)
def test_any_invoice_whose_total_adds_up_goes_out_and_passes_pyx12(
    lines: list[tuple[float, float]], taxes: list[float], charges: list[tuple[float, bool]]
) -> None:
    cent = Decimal("0.01")
    expected = sum(((Decimal(repr(q)) * Decimal(repr(p))).quantize(cent, ROUND_HALF_UP) for q, p in lines), Decimal(0))
    expected += sum((Decimal(repr(t)) for t in taxes), Decimal(0))
    expected += sum((Decimal(repr(a)) * (-1 if off else 1) for a, off in charges), Decimal(0))
    record = {
        **invoice(),
        "lines": [{"sku": f"S{i}", "quantity": q, "price": p} for i, (q, p) in enumerate(lines)],
        "taxes": [{"code": "ST", "amount": t} for t in taxes],
        "charges": [{"code": "C310" if off else "D240", "amount": a, "allowance": off} for a, off in charges],
        "total": float(expected),
    }
    if expected < 0:  # allowances above the lines: no invoice, a credit memo
        with pytest.raises(InvalidRecord, match=r"record\.total"):
            build("810", record)
        return
    data = build("810", record)
    assert elements(data, "TDS") == [["TDS", str(int(expected * 100))]]
    assert document_findings(data) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"total": 1e26}, "total"),
        ({"total": 1e300}, "total"),
        ({"total": 67.5 + 1e13, "taxes": [{"code": "ST", "amount": 1e13}]}, "taxes.0.amount"),
        ({"total": 67.5 + 1e13, "charges": [{"code": "D240", "amount": 1e13}]}, "charges.0.amount"),
    ],
)
def test_an_810_amount_beyond_the_15_digits_of_cents_x12_carries_is_refused_naming_it(
    changes: dict[str, object], field: str
) -> None:
    # Attack: 1e26 and more raised decimal.InvalidOperation from the total check, parked as an
    # InternalError without a field; 1e13 went as far as pyx12's "TDS01 too long".
    with pytest.raises(InvalidRecord, match=rf"record\.{field}: .*9999999999999\.99"):
        build("810", {**invoice(), **changes})


def test_an_810_line_whose_extension_no_decimal_holds_is_refused_as_an_invalid_record() -> None:
    # 1e300 x 1e300 overflowed the total check's 28-digit decimals: decimal.InvalidOperation, no field named.
    with pytest.raises(InvalidRecord, match=r"record\.total"):
        build("810", {**invoice(), "lines": [{"sku": "A", "quantity": 1e300, "price": 1e300}]})


def test_a_large_tax_goes_out_as_the_erp_wrote_it_not_as_its_float_expansion() -> None:
    # 9381348774612.51 went out as TXI02 "9381348774612.5098" (18 characters, which pyx12 accepts).
    tax = 9381348774612.51
    record = {**invoice(), "total": 9381348774680.01, "taxes": [{"code": "ST", "amount": tax}]}
    data = build("810", record)
    assert elements(data, "TXI") == [["TXI", "ST", "9381348774612.51"]]
    assert document_findings(data) == []
