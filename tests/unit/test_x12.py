from __future__ import annotations

import pytest

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
