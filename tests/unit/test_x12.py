from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow_runner.errors import MalformedInput
from onceflow_runner.payloads.x12 import decode_x12


def interchange(
    lines: list[str], *, se_count: int | None = None, ctt: int | None = None, iea_ctrl: str = "000000905"
) -> bytes:
    body = [
        "ST*850*0001",
        "BEG*00*SA*PO-4711**20261127",
        "CUR*BY*EUR",
        "N1*BY*Acme Retail*92*ACME01",
        "N1*ST*Acme DC Berlin*92*DC01",
        *lines,
        f"CTT*{ctt if ctt is not None else len(lines)}",
    ]
    body.append(f"SE*{se_count if se_count is not None else len(body) + 1}*0001")
    isa = "ISA*00*          *00*          *ZZ*ACME           *ZZ*DISTRIBUTOR    *261127*1200*U*00401*000000905*0*P*>"
    assert len(isa) == 105
    segs = [isa, "GS*PO*ACME*DIST*20261127*1200*905*X*004010", *body, "GE*1*905", f"IEA*1*{iea_ctrl}"]
    return ("~\n".join(segs) + "~\n").encode()


LINES = ["PO1*1*10*EA*12.50**BP*SKU-1*UP*036000291452", "PO1*2*3*EA*99**VP*SKU-2"]


def test_850_becomes_a_canonical_order() -> None:
    order = decode_x12(interchange(LINES))
    assert order["po_no"] == "PO-4711"
    assert order["currency"] == "EUR"
    assert order["buyer"] == "ACME01"
    assert order["ship_to"] == {"name": "Acme DC Berlin", "id": "DC01"}
    assert order["lines"] == [
        {"line": "1", "quantity": 10.0, "uom": "EA", "price": 12.5, "sku": "SKU-1", "gtin": "036000291452"},
        {"line": "2", "quantity": 3.0, "uom": "EA", "price": 99.0, "sku": "SKU-2"},
    ]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (interchange(LINES, se_count=3), "segment SE at position"),
        (interchange(LINES, ctt=5), "segment CTT at position 10: CTT01 says 5"),
        (interchange(LINES, iea_ctrl="000000001"), "segment IEA"),
        (interchange(["PO1*1*ten*EA*12.50**BP*SKU-1"]), "segment PO1 at position 8: quantity"),
        (interchange(["PO1*1*1*EA*1**ZZ*nothing"]), "PO1 needs a buyer or vendor part number"),
        (b"GS*PO*not an interchange", "segment ISA at position 1"),
    ],
)
def test_malformed_input_names_segment_and_position(data: bytes, says: str) -> None:
    with pytest.raises(MalformedInput, match=says.replace("(", r"\(")):
        decode_x12(data)


# --- Malformed input never escapes as another exception (issue 19, items 6 and 18) ------------------


def _without(data: bytes, tag: str) -> bytes:
    return b"~\n".join(s for s in data.split(b"~\n") if not s.startswith(tag.encode()))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (interchange(LINES, ctt=None).replace(b"CTT*2", b"CTT*inf"), "segment CTT at position 10: CTT01 line count"),
        (interchange(LINES).replace(b"CTT*2", b"CTT*nan"), "CTT01 line count"),
        (interchange(LINES).replace(b"CTT*2", b"CTT*2.5"), "CTT01 line count"),
        (_without(interchange(LINES), "SE*"), "the interchange has no SE segment"),
        (_without(interchange(LINES), "GE*"), "the interchange has no GE segment"),
        (interchange(LINES).replace(b"IEA*1*000000905", b"IEA*x*000000905"), "IEA01 group count"),
    ],
)
def test_malformed_envelope_or_counts_are_malformed_input_naming_the_segment(data: bytes, says: str) -> None:
    with pytest.raises(MalformedInput, match=says):
        decode_x12(data)


@pytest.mark.parametrize("price", ["inf", "nan", "-inf", "Infinity", "1e400", "1_000", "9" * 400])
def test_non_finite_price_is_malformed_input_naming_segment_and_element(price: str) -> None:
    with pytest.raises(MalformedInput, match=r"segment PO1 at position 8: unit price \(element 04\) is not a number"):
        decode_x12(interchange([f"PO1*1*10*EA*{price}**BP*SKU-1"]))


def _segments_of(data: bytes) -> list[str]:
    return [s for s in data.decode().split("~\n") if s]


VALID = _segments_of(interchange(LINES))
ODD_ELEMENTS = st.sampled_from(
    ["", "inf", "nan", "-1", "1e999", "0", "1", "850", "*", "~", "ISA", "IEA", "GE", "x" * 200]
)


@st.composite
def damaged_interchanges(draw: st.DrawFn) -> bytes:
    """A valid 850 with segments dropped, duplicated, reordered or with elements replaced."""
    segments = [s.split("*") for s in VALID]
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(segments) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "swap", "element", "truncate"]))
        if action == "drop" and len(segments) > 1:
            segments.pop(at)
        elif action == "duplicate":
            segments.insert(at, list(segments[at]))
        elif action == "swap":
            other = draw(st.integers(min_value=0, max_value=len(segments) - 1))
            segments[at], segments[other] = segments[other], segments[at]
        elif action == "element":
            seg = segments[at]
            seg[draw(st.integers(min_value=0, max_value=len(seg) - 1))] = draw(ODD_ELEMENTS | st.text(max_size=12))
        else:
            segments[at] = segments[at][: draw(st.integers(min_value=1, max_value=len(segments[at])))]
    return ("~\n".join("*".join(seg) for seg in segments) + "~\n").encode("utf-8", errors="surrogatepass")


@settings(deadline=None, max_examples=400)
@given(data=damaged_interchanges())
def test_any_damaged_interchange_is_an_order_or_malformed_input(data: bytes) -> None:
    try:
        order = decode_x12(data)
    except MalformedInput:
        return
    assert order["po_no"]
    assert all(math.isfinite(line["price"]) and math.isfinite(line["quantity"]) for line in order["lines"])


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=400) | st.binary(max_size=300).map(lambda b: VALID[0].encode() + b))
def test_any_bytes_are_an_order_or_malformed_input(data: bytes) -> None:
    try:
        order = decode_x12(data)
    except MalformedInput:
        return
    assert order["po_no"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("PO1*1*-10*EA*12.50**BP*SKU-1", "quantity (element 02) must be more than 0: '-10'"),
        ("PO1*1*0*EA*12.50**BP*SKU-1", "quantity (element 02) must be more than 0: '0'"),
        ("PO1*1*10*EA*-12.50**BP*SKU-1", "unit price (element 04) must not be negative: '-12.50'"),
    ],
)
def test_an_order_line_for_no_or_minus_goods_is_malformed_input(line: str, says: str) -> None:
    # Attack: a careless partner's -10 (or 0) became an order line of -10 the ERP was asked to ship.
    with pytest.raises(MalformedInput, match=re.escape(f"segment PO1 at position 8: {says}")):
        decode_x12(interchange([line]))


def test_an_order_without_lines_is_malformed_input_also_where_no_validator_ran() -> None:
    # Attack: a webhook's 850 with CTT*0 (or an 875 with G76*0) and no line decoded into an empty
    # order; only the EDI poller's map check (which requires a line) stood in the way.
    from tests.unit.edi_files import grocery_order
    from tests.unit.edi_files import interchange as edi_interchange

    with pytest.raises(MalformedInput, match=r"segment ST at position 3: the transaction set has no PO1 line"):
        decode_x12(interchange([]))
    grocery = [x.replace("G76*30", "G76*0") for x in grocery_order(1, "GPO-0") if not x.startswith(("G68", "G69"))]
    grocery[-1] = f"SE*{len(grocery)}*0001"
    with pytest.raises(MalformedInput, match=r"segment ST at position 3: the transaction set has no G68 line"):
        decode_x12(edi_interchange(1, [grocery]).replace("GS*PO*", "GS*OG*").encode())
