"""Outbound X12 documents from canonical entities: 855 acknowledgment, 856 ship notice, 810 invoice.

Pure: a record (what a step's `from` CEL gives, shaped like the canonical order, shipment and
invoice of `engine.entities` plus the few fields a document needs), the partner's envelope and
the control numbers in; the interchange's bytes out. The sender (`edi.outbound`) checks every
document with pyx12 against the set's map (`maps.py`) before it draws control numbers, so a
document the partner's validator would refuse never uses a number.

Why the builder refuses rather than repairs: a value holding one of the partner's separators
would cut the document in the wrong place, and a carton without an SSCC cannot be received at a
retailer's dock; both are errors naming the field, for a person to fix at the source.

Shapes (snake_case like the canonical entities; unknown fields are ignored):

- 855 `order`: `po_no`, `order_date`?, `currency`?, `lines[]` of `sku`, `quantity`, `uom` (EA),
  `price`?, `gtin`?, `line`?, `status` (accepted, rejected, backordered, changed),
  `quantity_acknowledged`?, `ship_date`?. BAK02 is AD when every line is accepted, RJ when every
  line is rejected, AC otherwise.
- 856 `shipment`: `delivery_note` (BSN02), `po_no`, `ship_date`?, `carrier`? (SCAC),
  `tracking_number`?, `gs1_company_prefix`? (extension digit + company prefix), `packs[]` of
  `sscc`? or `serial`? (the SSCC-18 is computed from the prefix and serial with the GS1 check
  digit), and `items[]` of `sku`, `quantity`, `uom`, `gtin`?. Hierarchy S > O > P > I.
- 810 `invoice`: `invoice_number`, `invoice_date`?, `po_no`?, `order_date`?, `currency`,
  `total` (at most 2 decimals; TDS01 carries it in cents), `lines[]` of `sku`, `quantity`, `uom`, `price`, `gtin`?,
  `taxes[]`? of `code` (TXI01, e.g. ST sales tax, VA value added tax) and `amount`, `charges[]`? of
  `code` (SAC02, e.g. D240 freight, C310 discount), `amount` and `allowance` (true: deducted).
  The total must be what a partner's invoice audit computes: each line's quantity x price
  rounded to the cent, plus taxes and charges, less allowances (within a cent per line, for
  rounding); else the record is refused naming `total`, because a retailer charges back an
  invoice whose TDS does not add up.

Quantities and prices have at most 4 decimal places, line numbers are unique (per pack for an
856's items), an SSCC has 18 digits: each otherwise an InvalidRecord naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from onceflow_runner.contract.edi import EdiEnvelope
from onceflow_runner.contract.gs1 import Gs1Code, sscc18
from onceflow_runner.errors import InvalidRecord
from onceflow_runner.payloads.edi.ack import ControlNumbers, isa_segment
from onceflow_runner.payloads.edi.maps import TRANSACTION_SETS
from onceflow_runner.payloads.edi.validation import validate_interchange

__all__ = ["DOCUMENTS", "DocumentKind", "build_document", "document_findings", "read_document"]

DocumentKind = Literal["855", "856", "810"]
#: The documents a `sendEdi` step can send, with the canonical entity each is built from.
DOCUMENTS: dict[str, str] = {"855": "order", "856": "shipment", "810": "invoice"}


def _x12_date(value: Any) -> Any:
    """X12's CCYYMMDD (as an 850 decodes to) read as a date too, beside ISO 8601."""
    if isinstance(value, str) and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _unit(value: Any) -> Any:
    """An empty unit (an 850 line without PO103) is each."""
    return "EA" if value in ("", None) else value


def _decimals(places: int) -> AfterValidator:
    """At most `places` decimal places, as the ERP wrote the number (refused, never rounded).

    Why refuse: an R element carries what we print, so 0.00001 would go out as 0 and 4.123456 as
    4.1235, a quantity or price the partner acts on that nobody meant.
    """

    def check(value: float) -> float:
        exponent = Decimal(repr(value)).normalize().as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -places:
            raise ValueError(f"{value!r} has more than {places} decimal places: round it at its source")
        return value

    return AfterValidator(check)


def _sscc(value: str) -> str:
    if len(value) != 18:
        raise ValueError(f"{value!r} is not an SSCC: an SSCC has 18 digits")
    return value


Day = Annotated[date, BeforeValidator(_x12_date)]
Unit = Annotated[str, BeforeValidator(_unit)]
#: Quantities and prices: X12 R values printed with at most four decimals.
Decimal4 = Annotated[float, Field(allow_inf_nan=False), _decimals(4)]
Sscc = Annotated[Gs1Code, AfterValidator(_sscc)]


def _unique_lines(lines: Sequence[_Line], where: str) -> None:
    """Line numbers (given, or the position) once each: partners match lines by them (PO101, IT101, LIN01)."""
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        label = line.line or str(number)
        if label in seen:
            raise ValueError(f"{where}.{number - 1}.line: line number {label!r} is used twice; number each line once")
        seen.add(label)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Line(_Shape):
    sku: str = Field(min_length=1, max_length=48)
    quantity: Decimal4 = Field(gt=0)
    uom: Unit = Field(default="EA", pattern=r"^[A-Z0-9]{2}$")
    gtin: Gs1Code | None = None
    line: str | None = Field(default=None, max_length=20)


class _AckLine(_Line):
    price: Decimal4 | None = Field(default=None, ge=0)
    status: Literal["accepted", "rejected", "backordered", "changed"] = "accepted"
    quantity_acknowledged: Decimal4 | None = Field(default=None, ge=0)
    ship_date: Day | None = None

    @field_validator("quantity_acknowledged")
    @classmethod
    def _none_is_rejected(cls, value: float | None, info: ValidationInfo) -> float | None:
        """ACK IA/IB/IC with quantity 0 reads as accepted and as refused at once: it must say IR."""
        if value == 0 and info.data.get("status", "accepted") != "rejected":
            raise ValueError("a line acknowledged with quantity 0 is refused: give it status rejected")
        return value


class _OrderAck(_Shape):
    po_no: str = Field(min_length=1, max_length=22)
    order_date: Day | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    lines: list[_AckLine] = Field(min_length=1)

    @model_validator(mode="after")
    def _lines_numbered_once(self) -> _OrderAck:
        _unique_lines(self.lines, "lines")
        return self


class _Pack(_Shape):
    sscc: Sscc | None = None
    serial: int | None = Field(default=None, ge=0)
    items: list[_Line] = Field(min_length=1)


class _ShipNotice(_Shape):
    delivery_note: str = Field(min_length=2, max_length=30)
    po_no: str = Field(min_length=1, max_length=22)
    ship_date: Day | None = None
    carrier: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,4}$", description="SCAC")
    tracking_number: str | None = Field(default=None, min_length=1, max_length=30)
    gs1_company_prefix: str | None = Field(default=None, pattern=r"^[0-9]{8,12}$")
    packs: list[_Pack] = Field(min_length=1)

    @model_validator(mode="after")
    def _every_pack_has_an_sscc(self) -> _ShipNotice:
        for index, pack in enumerate(self.packs):
            if pack.sscc is None and (pack.serial is None or self.gs1_company_prefix is None):
                raise ValueError(
                    f"packs.{index}.sscc: a pack needs an sscc, or a serial with the shipment's gs1_company_prefix"
                )
            if pack.sscc is None and pack.serial is not None and self.gs1_company_prefix is not None:
                try:
                    sscc18(self.gs1_company_prefix, pack.serial)
                except ValueError as exc:
                    raise ValueError(f"packs.{index}.serial: {exc}") from None
            _unique_lines(pack.items, f"packs.{index}.items")
        return self


class _InvoiceLine(_Line):
    price: Decimal4 = Field(ge=0)


#: An amount in currency units with cents: TDS01 and SAC05 carry it as at most 15 digits of cents (N2).
Cents = Annotated[float, Field(ge=0, le=9_999_999_999_999.99, allow_inf_nan=False), _decimals(2)]


class _Tax(_Shape):
    code: str = Field(pattern=r"^[A-Z0-9]{2}$")
    amount: Cents


class _Charge(_Shape):
    code: str = Field(pattern=r"^[A-Z][0-9]{3}$")
    amount: Cents = Field(gt=0)
    allowance: bool = False


def _exact(value: float) -> Decimal:
    return Decimal(repr(value))


class _Invoice(_Shape):
    invoice_number: str = Field(min_length=1, max_length=22)
    invoice_date: Day | None = None
    po_no: str | None = Field(default=None, min_length=1, max_length=22)
    order_date: Day | None = None
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    total: Cents
    lines: list[_InvoiceLine] = Field(min_length=1)
    taxes: list[_Tax] = Field(default_factory=list, max_length=10)
    charges: list[_Charge] = Field(default_factory=list, max_length=25)

    @model_validator(mode="after")
    def _lines_numbered_once(self) -> _Invoice:
        _unique_lines(self.lines, "lines")
        return self

    @model_validator(mode="after")
    def _total_adds_up(self) -> _Invoice:
        cent = Decimal("0.01")
        # Exact for any float: a line of 1e300 x 1e300 has some 620 digits, beyond the default 28.
        with localcontext(prec=1000):
            lines = sum(
                ((_exact(x.quantity) * _exact(x.price)).quantize(cent, ROUND_HALF_UP) for x in self.lines), Decimal(0)
            )
            taxes = sum((_exact(t.amount) for t in self.taxes), Decimal(0)).quantize(cent)
            charges = sum((_exact(c.amount) for c in self.charges if not c.allowance), Decimal(0)).quantize(cent)
            allowances = sum((_exact(c.amount) for c in self.charges if c.allowance), Decimal(0)).quantize(cent)
            expected = lines + taxes + charges - allowances
            total = _exact(self.total).quantize(cent)
        if abs(total - expected) > cent * len(self.lines):
            raise ValueError(
                f"total: {total} is not what the invoice adds up to: lines {lines} + taxes {taxes} "
                f"+ charges {charges} - allowances {allowances} = {expected}; map the taxes and charges the "
                "total holds (taxes[], charges[]) or correct the total"
            )
        return self


_SHAPES: dict[str, type[_Shape]] = {"855": _OrderAck, "856": _ShipNotice, "810": _Invoice}
_ACK_CODES = {"accepted": "IA", "rejected": "IR", "backordered": "IB", "changed": "IC"}


def read_document(kind: str, record: Any, *, step: str = "") -> _Shape:
    """`record` read as the source of a `kind` document; InvalidRecord naming every field that is wrong."""
    shape = _SHAPES.get(kind)
    if shape is None:
        raise InvalidRecord(f"document {kind!r} is not one Onceflow sends (855, 856, 810)", step=step)
    try:
        return shape.model_validate(record)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            message = err["msg"].removeprefix("Value error, ")
            # A check across fields names its own path ("packs.0.sscc: ..."): put it under `record.` too.
            where = "record." + ".".join(str(p) for p in err["loc"]) + ": " if err["loc"] else "record."
            problems.append(f"{where}{message}")
        raise InvalidRecord(f"cannot build an {kind}: " + "; ".join(problems), step=step) from None


def _number(value: float) -> str:
    """An X12 R (decimal) value: no exponent, no trailing zeros.

    Exactly as the ERP wrote it (the shapes allow at most 4 decimals, so nothing is lost): a
    fixed `.4f` printed a large amount's float expansion (9381348774612.51 as 9381348774612.5098).
    """
    exact = Decimal(repr(value))
    if not exact:
        return "0"
    text = format(exact, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _in_cents(amount: float) -> str:
    """An X12 N2 amount (TDS01, SAC05): whole cents, exact since the shape allows at most 2 decimals."""
    return str(int(_exact(amount) * 100))


def _ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def _product_ids(line: _Line) -> list[str]:
    ids = ["VN", line.sku]
    if line.gtin is not None:
        ids += [{12: "UP", 13: "EN", 14: "UK"}.get(len(line.gtin), "UK"), line.gtin.zfill(14)]
    return ids


def _855(doc: _OrderAck, now: datetime) -> list[list[str]]:
    statuses = {line.status for line in doc.lines}
    kind = "AD" if statuses == {"accepted"} else "RJ" if statuses == {"rejected"} else "AC"
    body = [["BAK", "00", kind, doc.po_no, _ymd(doc.order_date or now.date())]]
    if doc.currency:
        body.append(["CUR", "SE", doc.currency])
    for number, line in enumerate(doc.lines, start=1):
        price = _number(line.price) if line.price is not None else ""
        body.append(
            [
                "PO1",
                line.line or str(number),
                _number(line.quantity),
                line.uom,
                price,
                "PE" if price else "",
                *_product_ids(line),
            ]
        )
        quantity = line.quantity if line.quantity_acknowledged is None else line.quantity_acknowledged
        ack = ["ACK", _ACK_CODES[line.status], _number(quantity), line.uom]
        if line.ship_date is not None:
            ack += ["068", _ymd(line.ship_date)]
        body.append(ack)
    body.append(["CTT", str(len(doc.lines))])
    return body


def _856(doc: _ShipNotice, now: datetime) -> list[list[str]]:
    shipped = doc.ship_date or now.date()
    body = [["BSN", "00", doc.delivery_note, _ymd(shipped), now.strftime("%H%M"), "0001"]]
    body.append(["HL", "1", "", "S", "1"])
    body.append(["TD1", "CTN25", str(len(doc.packs))])
    if doc.carrier:
        body.append(["TD5", "", "2", doc.carrier])
    if doc.tracking_number:
        body.append(["REF", "CN", doc.tracking_number])
    body.append(["DTM", "011", _ymd(shipped)])
    body.append(["HL", "2", "1", "O", "1"])
    body.append(["PRF", doc.po_no])
    level = 2
    for pack in doc.packs:
        level += 1
        pack_level = level
        assert doc.gs1_company_prefix is not None or pack.sscc is not None  # checked by the shape
        sscc = pack.sscc or sscc18(str(doc.gs1_company_prefix), int(pack.serial or 0))
        body.append(["HL", str(pack_level), "2", "P", "1"])
        body.append(["MAN", "GM", sscc])
        for number, item in enumerate(pack.items, start=1):
            level += 1
            body.append(["HL", str(level), str(pack_level), "I", "0"])
            body.append(["LIN", item.line or str(number), *_product_ids(item)])
            body.append(["SN1", "", _number(item.quantity), item.uom])
    body.append(["CTT", str(level)])
    return body


def _810(doc: _Invoice, now: datetime) -> list[list[str]]:
    big = ["BIG", _ymd(doc.invoice_date or now.date()), doc.invoice_number]
    if doc.po_no:
        big += [_ymd(doc.order_date) if doc.order_date else "", doc.po_no]
    body = [big, ["CUR", "SE", doc.currency]]
    for number, line in enumerate(doc.lines, start=1):
        body.append(
            [
                "IT1",
                line.line or str(number),
                _number(line.quantity),
                line.uom,
                _number(line.price),
                "PE",
                *_product_ids(line),
            ]
        )
    body.append(["TDS", _in_cents(doc.total)])
    body.extend(["TXI", tax.code, _number(tax.amount)] for tax in doc.taxes)
    body.extend(["SAC", "A" if c.allowance else "C", c.code, "", "", _in_cents(c.amount)] for c in doc.charges)
    body.append(["CTT", str(len(doc.lines))])
    return body


def _checked(segments: list[list[str]], env: EdiEnvelope, *, step: str) -> str:
    """Segments joined with the partner's separators; trailing empty elements dropped, separators refused."""
    separators = {env.element_separator, env.segment_terminator, env.component_separator}
    lines = []
    for segment in segments:
        while len(segment) > 1 and segment[-1] == "":
            segment = segment[:-1]
        for position, value in enumerate(segment[1:], start=1):
            found = separators.intersection(value)
            if found and segment[0] != "ISA":
                raise InvalidRecord(
                    f"{segment[0]}{position:02d} {value!r} holds {sorted(found)[0]!r}, one of the partner's "
                    "separators: change the value at its source",
                    step=step,
                )
        lines.append(env.element_separator.join(segment) + env.segment_terminator + "\n")
    return "".join(lines)


def build_document(
    kind: str, record: Any, env: EdiEnvelope, numbers: ControlNumbers, now: datetime, *, step: str = ""
) -> bytes:
    """One interchange holding one `kind` document built from `record`, enveloped for the partner.

    InvalidRecord (naming the field) when the record cannot make the document.
    """
    doc = read_document(kind, record, step=step)
    spec = TRANSACTION_SETS[kind]
    if isinstance(doc, _OrderAck):
        body = _855(doc, now)
    elif isinstance(doc, _ShipNotice):
        body = _856(doc, now)
    else:
        assert isinstance(doc, _Invoice)
        body = _810(doc, now)
    st02 = f"{numbers.sets[0]:04d}"
    transaction = [["ST", kind, st02], *body]
    transaction.append(["SE", str(len(transaction) + 1), st02])
    gs = [
        "GS",
        spec.functional_id,
        env.ours.application_code,
        env.partner.application_code,
        now.strftime("%Y%m%d"),
        now.strftime("%H%M"),
        str(numbers.group),
        "X",
        spec.version,
    ]
    segments = [
        isa_segment(env, numbers.interchange, now),
        gs,
        *transaction,
        ["GE", "1", str(numbers.group)],
        ["IEA", "1", f"{numbers.interchange:09d}"],
    ]
    text = _checked(segments, env, step=step)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise InvalidRecord(
            f"the {kind} holds {text[exc.start]!r}, which X12 cannot carry: change the value at its source", step=step
        ) from None


def document_findings(data: bytes) -> list[str]:
    """What pyx12 finds wrong in a document we built (empty when its set's map accepts it)."""
    verdict = validate_interchange(data.decode("latin-1"))
    found = list(verdict.interchange_errors)
    for control, errors in verdict.group_errors.items():
        found.extend(f"group {control}: {e}" for e in errors)
    for result in verdict.sets.values():
        if result.code != "A":
            found.extend(
                f"{seg}{f'{ele:02d}' if ele else ''} (segment {pos}): {text}"
                for seg, pos, _, ele, _, text in result.errors
            )
            if not result.errors:
                found.append(f"set {result.set_id} {result.control}: {result.code}")
    if not verdict.sets and not found:
        found.append("the validator found no transaction set")
    return found
