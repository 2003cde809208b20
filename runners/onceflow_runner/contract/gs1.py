"""GS1 identifiers (GTIN, GLN, SSCC): the mod-10 check digit and the SSCC-18 of a carton.

Why in the contract: the canonical entities (`engine.entities`) check GS1 codes a record carries,
and the EDI 856 builder (`payloads.edi.outbound`) computes the SSCC-18 it writes on every carton;
both layers sit above the contract and neither may import the other, so the one implementation
lives here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

__all__ = ["Gs1Code", "gs1_check_digit", "gs1_check_digit_ok", "sscc18"]


def gs1_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of `body` (a code without its last digit): weights 3,1,3,... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gs1_check_digit_ok(code: str) -> bool:
    """GTIN-8/12/13/14, GLN and SSCC: mod-10 check digit, weights 3,1,3,... from the right."""
    if not code.isdigit() or len(code) not in {8, 12, 13, 14, 18}:
        return False
    return gs1_check_digit(code[:-1]) == int(code[-1])


def sscc18(prefix: str, serial: int) -> str:
    """The SSCC-18 of a carton: `prefix` (extension digit + GS1 company prefix), `serial` zero-padded, check digit.

    ValueError when the prefix is not 7-11 digits after the extension digit or the serial does not fit.
    """
    if not prefix.isdigit() or not 8 <= len(prefix) <= 12:
        raise ValueError(f"{prefix!r} is not an extension digit and a GS1 company prefix (8 to 12 digits)")
    width = 17 - len(prefix)
    if serial < 0 or len(str(serial)) > width:
        raise ValueError(f"serial {serial} does not fit the {width} digits left after prefix {prefix}")
    body = f"{prefix}{serial:0{width}d}"
    return f"{body}{gs1_check_digit(body)}"


def _gs1(value: str) -> str:
    if not gs1_check_digit_ok(value):
        raise ValueError(f"{value!r} is not a GS1 code with a valid check digit")
    return value


#: A field holding a GS1 code (GTIN, GLN, SSCC) whose check digit must be right.
Gs1Code = Annotated[str, AfterValidator(_gs1)]
