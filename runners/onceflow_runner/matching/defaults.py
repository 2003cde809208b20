"""Default m/u per comparison kind and the default compared fields of each canonical entity.

Why defaults at all: a SyncPolicy that names no weights must still find duplicates well. The m
values (how often true duplicates reach a level) come from the kinds of errors people make when
keying a record twice (typos, nicknames, legal-form variants, moved addresses, missing fields);
the u values (how often unrelated records reach a level) from how common chance agreement is
among business records of one market. `onceflow match train` replaces both with estimates from
the target system's own records; docs/matching.md shows how they were checked (two generator
seeds, not tuned on the test's).
"""

from __future__ import annotations

from dataclasses import dataclass

from onceflow_runner.matching.model import FieldModel, MatchModel

__all__ = ["DEFAULT_PRIOR", "ENTITY_FIELDS", "KIND_DEFAULTS", "FieldDefault", "default_model", "field_model"]

#: kind -> (m per level, u per level), levels as in `compare.COMPARISONS` (most similar first).
KIND_DEFAULTS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "exact": ((0.95, 0.05), (0.05, 0.95)),
    "identifier": ((0.9, 0.04, 0.06), (0.0001, 0.0005, 0.9994)),
    "text": ((0.8, 0.1, 0.05, 0.05), (0.01, 0.005, 0.02, 0.965)),
    "company": ((0.55, 0.25, 0.08, 0.07, 0.05), (0.0005, 0.001, 0.01, 0.01, 0.9785)),
    "address": ((0.7, 0.1, 0.05, 0.15), (0.002, 0.002, 0.02, 0.976)),
    "postcode": ((0.8, 0.05, 0.15), (0.01, 0.05, 0.94)),
    "email": ((0.75, 0.05, 0.08, 0.12), (0.0005, 0.0005, 0.002, 0.997)),
    "phone": ((0.75, 0.1, 0.15), (0.0005, 0.002, 0.9975)),
    "date": ((0.85, 0.05, 0.05, 0.05), (0.0005, 0.0001, 0.005, 0.9944)),
    "number": ((0.9, 0.05, 0.05), (0.01, 0.02, 0.97)),
    "personName": ((0.6, 0.05, 0.15, 0.1, 0.04, 0.06), (0.0002, 0.00002, 0.001, 0.004, 0.01, 0.98478)),
}

#: The prior link rate: how likely two records of the target, drawn at random, are the same.
DEFAULT_PRIOR = 0.0005


@dataclass(frozen=True)
class FieldDefault:
    """One default compared field of an entity, with m/u overrides where the kind's defaults do not fit."""

    paths: tuple[str, ...]
    kind: str
    m: tuple[float, ...] | None = None
    u: tuple[float, ...] | None = None


_COUNTRY = FieldDefault(("country",), "exact", (0.97, 0.03), (0.3, 0.7))
_CITY = FieldDefault(("address.city",), "text", (0.8, 0.05, 0.03, 0.12), (0.02, 0.002, 0.01, 0.968))

ENTITY_FIELDS: dict[str, tuple[FieldDefault, ...]] = {
    "customer": (
        FieldDefault(("name",), "company"),
        FieldDefault(("tax_id",), "identifier"),
        FieldDefault(("contact.first_name", "contact.last_name"), "personName"),
        FieldDefault(("email",), "email"),
        FieldDefault(("phone",), "phone"),
        FieldDefault(("address.line1",), "address"),
        FieldDefault(("postal_code",), "postcode"),
        _CITY,
        _COUNTRY,
        FieldDefault(("date_of_birth",), "date"),
    ),
    "supplier": (
        FieldDefault(("name",), "company"),
        FieldDefault(("tax_id",), "identifier"),
        FieldDefault(("gln",), "identifier"),
        FieldDefault(("email",), "email"),
        FieldDefault(("phone",), "phone"),
        FieldDefault(("address.line1",), "address"),
        FieldDefault(("postal_code",), "postcode"),
        _CITY,
        _COUNTRY,
    ),
    "item": (
        FieldDefault(("sku",), "identifier"),
        FieldDefault(("gtin",), "identifier", (0.95, 0.02, 0.03), (0.00001, 0.0001, 0.99989)),
        FieldDefault(("name",), "text", (0.6, 0.2, 0.1, 0.1), (0.001, 0.005, 0.03, 0.964)),
        FieldDefault(("manufacturer",), "company"),
        FieldDefault(("manufacturer_part_number",), "identifier"),
    ),
}


def field_model(
    paths: tuple[str, ...], kind: str, m: tuple[float, ...] | None = None, u: tuple[float, ...] | None = None
) -> FieldModel:
    """A field with the kind's default m/u where none are given."""
    dm, du = KIND_DEFAULTS[kind]
    return FieldModel(paths, kind, m or dm, u or du)


def default_model(entity: str) -> MatchModel:
    """The untuned model of a canonical entity (customer, supplier, item); KeyError for others."""
    try:
        fields = ENTITY_FIELDS[entity]
    except KeyError:
        raise KeyError(
            f"no default matching fields for {entity!r}; name the fields (customer, supplier, item have defaults)"
        ) from None
    return MatchModel(tuple(field_model(f.paths, f.kind, f.m, f.u) for f in fields), prior=DEFAULT_PRIOR)
