"""X12 850 and 875 (grocery) purchase orders, and 860 changes, decoded into canonical orders, counts checked.

A trading partner's 850 arrives as one interchange (ISA ... IEA) holding one functional group
(GS ... GE) holding one transaction set (ST ... SE). Separators are read from the ISA segment
itself, as the standard says. Any mismatch (control numbers, segment or line counts) is a
`MalformedInput` naming the segment and its position, so the exception queue says exactly
what the partner must fix.
"""

from __future__ import annotations

import math
import re
from typing import Any

from onceflow_runner.errors import MalformedInput

__all__ = ["decode_x12", "split_segments"]

_ID_QUALIFIERS_SKU = {"BP", "VP", "IN", "SK", "VN"}
_ID_QUALIFIERS_GTIN = {"UP", "EN", "UK", "UA"}
#: X12 numeric (N0) and decimal (R) elements: an optional minus, digits, an optional decimal point.
#: float() alone would also take `inf`, `nan`, `1e400` and `1_000`, none of which a partner can mean.
_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
_COUNT = re.compile(r"[0-9]{1,9}")


def split_segments(data: bytes) -> list[list[str]]:
    """Split an interchange into segments of elements using the separators the ISA declares."""
    text = data.decode("utf-8", errors="replace").lstrip()
    if not text.startswith("ISA") or len(text) < 106:
        raise MalformedInput("segment ISA at position 1: an X12 interchange must start with a 106-character ISA")
    element, terminator = text[3], text[105]
    segments = []
    for raw in text.split(terminator):
        raw = raw.strip("\r\n ")
        if raw:
            segments.append(raw.split(element))
    return segments


def _fail(seg: list[str], position: int, message: str) -> MalformedInput:
    return MalformedInput(f"segment {seg[0]} at position {position}: {message}")


def _number(seg: list[str], index: int, position: int, what: str) -> float:
    text = seg[index].strip() if index < len(seg) else ""
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise _fail(seg, position, f"{what} (element {index:02d}) is not a number: {text[:40]!r}")
    return value


def _quantity(seg: list[str], index: int, position: int, what: str) -> float:
    """An ordered quantity: more than 0 (a partner's -10 or 0 is no goods to ship; changes come as 860/876)."""
    value = _number(seg, index, position, what)
    if value <= 0:
        raise _fail(seg, position, f"{what} (element {index:02d}) must be more than 0: {seg[index].strip()[:40]!r}")
    return value


def _price(seg: list[str], index: int, position: int, what: str) -> float:
    """A unit price: 0 or more (a negative price is an allowance, which orders carry in SAC, not here)."""
    value = _number(seg, index, position, what)
    if value < 0:
        raise _fail(seg, position, f"{what} (element {index:02d}) must not be negative: {seg[index].strip()[:40]!r}")
    return value


def _count(seg: list[str], index: int, position: int, what: str) -> int:
    text = seg[index].strip() if index < len(seg) else ""
    if not _COUNT.fullmatch(text):
        raise _fail(seg, position, f"{what} (element {index:02d}) is not a count: {text[:40]!r}")
    return int(text)


def _locate(segments: list[list[str]], ids: list[str], tag: str) -> int:
    """Index of the one `tag` segment; a missing envelope segment is the partner's error, named."""
    if tag not in ids:
        raise _fail(segments[-1], len(segments), f"the interchange has no {tag} segment")
    return ids.index(tag)


def _party(order: dict[str, Any], seg: list[str]) -> None:
    """An N1 of an order: the buyer (its id, else its name) and the ship-to party."""
    party = {"name": seg[2], "id": seg[4] if len(seg) > 4 else ""}
    if seg[1] == "BY":
        order["buyer"] = party["id"] or party["name"]
        order["buyer_name"] = party["name"]
    elif seg[1] == "ST":
        order["ship_to"] = party


def decode_x12(data: bytes) -> dict[str, Any]:
    """Decode one 850 or 875 into {po_no, order_date, buyer, currency, lines[], ship_to} (an 860 as its change)."""
    segments = split_segments(data)
    ids = [s[0] for s in segments]
    isa, iea = segments[0], segments[-1]
    if iea[0] != "IEA":
        raise _fail(iea, len(segments), "the interchange must end with IEA")
    if len(isa) < 17:
        raise _fail(isa, 1, "ISA must have 16 elements")
    if iea[2:3] != [isa[13]]:
        raise _fail(iea, len(segments), f"control number {iea[2:3]} does not match ISA13 {isa[13]!r}")
    groups = ids.count("GS")
    if _count(iea, 1, len(segments), "IEA01 group count") != groups:
        raise _fail(iea, len(segments), f"IEA01 says {iea[1]} group(s) but the interchange has {groups}")
    if groups != 1 or ids.count("ST") != 1:
        raise _fail(segments[1], 2, "exactly one GS group with one ST transaction set is accepted per interchange")
    gs_at, ge_at, st_at, se_at = (_locate(segments, ids, tag) for tag in ("GS", "GE", "ST", "SE"))
    gs, ge, st, se = segments[gs_at], segments[ge_at], segments[st_at], segments[se_at]
    if ge[1:3] != ["1", gs[6] if len(gs) > 6 else ""]:
        raise _fail(ge, ge_at + 1, "GE must say 1 transaction set and repeat GS06 as its control number")
    if len(st) < 3 or st[1] not in ("850", "860", "875"):
        raise _fail(st, st_at + 1, "only 850 and 875 purchase orders and 860 changes to them are accepted")
    count = se_at - st_at + 1
    if se[1:3] != [str(count), st[2]]:
        raise _fail(se, se_at + 1, f"SE must count {count} segments and repeat ST02 {st[2]!r}")
    if st[1] == "860":
        return _decode_860(segments, st_at, se_at)
    if st[1] == "875":
        return _decode_875(segments, st_at, se_at)

    order: dict[str, Any] = {"lines": [], "currency": "USD"}
    for position, seg in enumerate(segments[st_at:se_at], start=st_at + 1):
        tag = seg[0]
        if tag == "BEG":
            if len(seg) < 6 or not seg[3]:
                raise _fail(seg, position, "BEG03 (purchase order number) is required")
            order["po_no"], order["order_date"] = seg[3], seg[5]
        elif tag == "CUR" and len(seg) > 2:
            order["currency"] = seg[2]
        elif tag == "N1" and len(seg) > 2:
            _party(order, seg)
        elif tag == "PO1":
            line: dict[str, Any] = {
                "line": seg[1] if len(seg) > 1 else str(len(order["lines"]) + 1),
                "quantity": _quantity(seg, 2, position, "quantity"),
                "uom": seg[3] if len(seg) > 3 else "",
                "price": _price(seg, 4, position, "unit price"),
            }
            for i in range(6, len(seg) - 1, 2):
                if seg[i] in _ID_QUALIFIERS_SKU and "sku" not in line:
                    line["sku"] = seg[i + 1]
                elif seg[i] in _ID_QUALIFIERS_GTIN:
                    line["gtin"] = seg[i + 1]
            if "sku" not in line:
                raise _fail(seg, position, "PO1 needs a buyer or vendor part number (BP/VP qualifier)")
            order["lines"].append(line)
        elif tag == "CTT":
            declared = _count(seg, 1, position, "CTT01 line count")
            if declared != len(order["lines"]):
                raise _fail(seg, position, f"CTT01 says {declared} line(s) but the order has {len(order['lines'])}")
    if "po_no" not in order:
        raise MalformedInput(f"segment ST at position {st_at + 1}: the transaction set has no BEG segment")
    if not order["lines"]:  # webhooks decode without the map check, which requires a line
        raise MalformedInput(f"segment ST at position {st_at + 1}: the transaction set has no PO1 line")
    return order


#: BCH01 and POC02 codes as words in the canonical order change.
_CHANGE_PURPOSE = {"01": "cancel", "04": "change", "05": "replace"}
_LINE_CHANGE = {
    "AI": "add",
    "DI": "delete",
    "QI": "quantity_increase",
    "QD": "quantity_decrease",
    "PC": "price_change",
    "CA": "change",
    "RZ": "replace",
    "CT": "terms_change",
}


def _decode_860(segments: list[list[str]], st_at: int, se_at: int) -> dict[str, Any]:
    """One 860 as {po_no, order_date, change, change_sequence, buyer, currency, lines[] with `change`}."""
    order: dict[str, Any] = {"lines": [], "currency": "USD"}
    for position, seg in enumerate(segments[st_at:se_at], start=st_at + 1):
        tag = seg[0]
        if tag == "BCH":
            if len(seg) < 7 or not seg[3]:
                raise _fail(seg, position, "BCH03 (purchase order number) and BCH06 (its date) are required")
            order["po_no"], order["order_date"] = seg[3], seg[6]
            order["change"] = _CHANGE_PURPOSE.get(seg[1], seg[1])
            order["change_sequence"] = seg[5] if len(seg) > 5 else ""
        elif tag == "CUR" and len(seg) > 2:
            order["currency"] = seg[2]
        elif tag == "N1" and len(seg) > 2 and seg[1] == "BY":
            order["buyer"] = (seg[4] if len(seg) > 4 else "") or seg[2]
        elif tag == "POC":
            line: dict[str, Any] = {
                "line": seg[1] if len(seg) > 1 else "",
                "change": _LINE_CHANGE.get(seg[2], seg[2]) if len(seg) > 2 else "",
                "uom": seg[5] if len(seg) > 5 else "",
            }
            for index, name in ((3, "quantity"), (4, "quantity_left"), (6, "price")):
                if len(seg) > index and seg[index]:
                    line[name] = _number(seg, index, position, name.replace("_", " "))
            for i in range(8, len(seg) - 1, 2):
                if seg[i] in _ID_QUALIFIERS_SKU and "sku" not in line:
                    line["sku"] = seg[i + 1]
                elif seg[i] in _ID_QUALIFIERS_GTIN:
                    line["gtin"] = seg[i + 1]
            order["lines"].append(line)
        elif tag == "CTT":
            declared = _count(seg, 1, position, "CTT01 line count")
            if declared != len(order["lines"]):
                raise _fail(seg, position, f"CTT01 says {declared} line(s) but the change has {len(order['lines'])}")
    if "po_no" not in order:
        raise MalformedInput(f"segment ST at position {st_at + 1}: the transaction set has no BCH segment")
    return order


#: G5001 codes as words; an order with another status (a change, a cancel) is not a new order.
_ORDER_STATUS = {"N": "original", "B": "backorder", "S": "future_dated", "A": "informational", "T": "resubmission"}
#: G62 date qualifiers (432) for when the buyer wants the goods delivered, most telling first: 02
#: delivery requested, 68 requested delivery, 53 deliver not before, 54 deliver no later than.
_DELIVERY_DATES = ("02", "68", "53", "54")
#: ... and for when they should leave: 10 requested ship (pick-up), 37 ship not before, 38 not later than.
_SHIP_DATES = ("10", "37", "38")


def _decode_875(segments: list[list[str]], st_at: int, se_at: int) -> dict[str, Any]:
    """One 875 grocery order as the 850's canonical order, with `order_status` and each line's `upc_case_code`.

    A line's `sku` is its vendor or buyer item number (G6805-G6808 pairs) when it has one, else its
    U.P.C. case code (G6804), which is how grocery buyers name cases; map it to your item codes in
    the Integration if they differ. G76's total quantity must be the lines' sum when every line is
    in its unit: a partner's G76 that disagrees means a line went missing in transit. G62 gives
    `delivery_date` (02, 68, 53, 54) and `ship_date` (10, 37, 38), by qualifier, not by order.
    """
    order: dict[str, Any] = {"lines": [], "currency": "USD"}
    totals: tuple[float, str, list[str], int] | None = None
    dates: dict[str, str] = {}
    for position, seg in enumerate(segments[st_at:se_at], start=st_at + 1):
        tag = seg[0]
        if tag == "G50":
            if len(seg) < 4 or not seg[3] or not seg[2]:
                raise _fail(seg, position, "G5002 (order date) and G5003 (purchase order number) are required")
            status = seg[1] if len(seg) > 1 else ""
            if status not in _ORDER_STATUS:
                raise _fail(
                    seg, position, f"G5001 {status!r} is not a new order (N, B, S, A or T); send changes as 876"
                )
            order["po_no"], order["order_date"] = seg[3], seg[2]
            order["order_status"] = _ORDER_STATUS[status]
        elif tag == "G62" and len(seg) > 2 and seg[2]:
            dates[seg[1]] = dates.get(seg[1]) or seg[2]
        elif tag == "N1" and len(seg) > 2:
            _party(order, seg)
        elif tag == "G68":
            line: dict[str, Any] = {
                "line": str(len(order["lines"]) + 1),
                "quantity": _quantity(seg, 1, position, "quantity ordered"),
                "uom": seg[2] if len(seg) > 2 else "",
            }
            if len(seg) > 3 and seg[3]:
                line["price"] = _price(seg, 3, position, "item list cost")
            if len(seg) > 4 and seg[4]:
                line["upc_case_code"] = seg[4]
            for i in (5, 7):
                if i + 1 < len(seg) and seg[i] in _ID_QUALIFIERS_SKU and "sku" not in line:
                    line["sku"] = seg[i + 1]
                elif i + 1 < len(seg) and seg[i] in _ID_QUALIFIERS_GTIN:
                    line["gtin"] = seg[i + 1]
            line.setdefault("sku", line.get("upc_case_code") or line.get("gtin"))
            if not line["sku"]:
                raise _fail(seg, position, "G68 needs a U.P.C. case code (G6804) or an item number (G6805/G6806)")
            order["lines"].append(line)
        elif tag == "G76":
            totals = (
                _number(seg, 1, position, "total quantity ordered"),
                seg[2] if len(seg) > 2 else "",
                seg,
                position,
            )
    if "po_no" not in order:
        raise MalformedInput(f"segment ST at position {st_at + 1}: the transaction set has no G50 segment")
    # By meaning, not by order: a ship date sent first is not when the goods are to arrive.
    for name, qualifiers in (("delivery_date", _DELIVERY_DATES), ("ship_date", _SHIP_DATES)):
        found = next((dates[q] for q in qualifiers if q in dates), None)
        if found:
            order[name] = found
    if not order["lines"]:  # webhooks decode without the map check, which requires a line
        raise MalformedInput(f"segment ST at position {st_at + 1}: the transaction set has no G68 line")
    if totals is None:  # required by the map, which pyx12 does not enforce for a set's last segment
        raise MalformedInput(
            f"segment SE at position {se_at + 1}: the transaction set has no G76 segment "
            "(the total its lines must add up to: without it a lost line goes unnoticed)"
        )
    quantity, unit, seg, position = totals
    ordered = sum(line["quantity"] for line in order["lines"])
    if all(line["uom"] == unit for line in order["lines"]) and not math.isclose(quantity, ordered):
        raise _fail(seg, position, f"G7601 says {quantity:g} {unit} but the lines order {ordered:g}")
    return order
