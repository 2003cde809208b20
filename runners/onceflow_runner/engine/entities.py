"""Canonical business entities: the one shape of a customer, an order, a shipment, ...

Every system speaks its own dialect; steps map each dialect onto these models once, so the
checks that matter (a tax id is present, a country is ISO 3166, a GTIN's check digit is right,
an order has lines) are written once. Unknown extra fields are allowed: systems add their own.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from onceflow_runner.contract.gs1 import Gs1Code, gs1_check_digit, gs1_check_digit_ok, sscc18
from onceflow_runner.errors import InvalidRecord

__all__ = [
    "ENTITY_MODELS",
    "Address",
    "Customer",
    "Invoice",
    "Item",
    "Order",
    "OrderLine",
    "Price",
    "Shipment",
    "Supplier",
    "gs1_check_digit",
    "gs1_check_digit_ok",
    "sscc18",
    "validate_entity",
]

# ISO 3166-1 alpha-2, officially assigned codes.
_ISO_3166_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
_ISO_3166 = frozenset(_ISO_3166_CODES.split())


def _country(value: str) -> str:
    if value.upper() not in _ISO_3166:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, GB)")
    return value.upper()


Country = Annotated[str, AfterValidator(_country)]
Money = Annotated[float, Field(ge=0)]


class _Entity(BaseModel):
    model_config = ConfigDict(extra="allow")


class Address(_Entity):
    """A postal address."""

    line1: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: Country


class Customer(_Entity):
    """A customer account: a company or a person that buys."""

    name: str = Field(min_length=1)
    tax_id: str = Field(min_length=4, description="VAT or tax number; required to invoice.")
    country: Country
    postal_code: str | None = None
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    credit_limit: Money | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class Supplier(_Entity):
    """A supplier account."""

    name: str = Field(min_length=1)
    tax_id: str = Field(min_length=4)
    country: Country
    gln: Gs1Code | None = None


class Item(_Entity):
    """A sellable item."""

    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    gtin: Gs1Code | None = None


class Price(_Entity):
    """One item's price in one price list."""

    sku: str = Field(min_length=1)
    price_list: str = Field(min_length=1)
    amount: Money
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class OrderLine(_Entity):
    """One line of an order."""

    sku: str = Field(min_length=1)
    quantity: float = Field(gt=0)
    price: Money
    gtin: Gs1Code | None = None


class Order(_Entity):
    """A customer order, whatever channel it came from (shop, EDI, sales)."""

    po_no: str = Field(min_length=1, description="The buyer's order number; the business key.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[OrderLine] = Field(min_length=1)
    delivery_date: date | None = None
    shipping_address: Address | None = None


class Shipment(_Entity):
    """A delivery's milestone from the warehouse or 3PL."""

    delivery_note: str = Field(min_length=1)
    status: str = Field(pattern=r"^(picked|shipped|delivered)$")
    carrier: str | None = None
    tracking_number: str | None = None
    sscc: Gs1Code | None = None


class Invoice(_Entity):
    """A posted sales invoice."""

    invoice_number: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    total: Money
    due_date: date | None = None


ENTITY_MODELS: dict[str, type[_Entity]] = {
    "customer": Customer,
    "supplier": Supplier,
    "item": Item,
    "price": Price,
    "order": Order,
    "shipment": Shipment,
    "invoice": Invoice,
}


def validate_entity(entity: str, record: Any, *, step: str) -> None:
    """Raise InvalidRecord naming every field of `record` that breaks the canonical `entity`."""
    try:
        ENTITY_MODELS[entity].model_validate(record)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = "record." + ".".join(str(p) for p in err["loc"]) if err["loc"] else "record"
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        raise InvalidRecord(f"not a valid {entity}: " + "; ".join(problems), step=step) from None
