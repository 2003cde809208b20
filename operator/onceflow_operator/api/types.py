"""Value types every kind of the API shares: business entities, CEL expressions, durations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import DURATION

__all__ = [
    "ENTITIES",
    "Cel",
    "Duration",
    "Entity",
]

Entity = Literal["customer", "item", "price", "order", "shipment", "invoice", "supplier"]
ENTITIES: tuple[str, ...] = Entity.__args__  # type: ignore[attr-defined]
#: A CEL expression; bounded so that the API server's CEL cost budget holds.
Cel = Annotated[str, Field(min_length=1, max_length=4096)]
Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]
