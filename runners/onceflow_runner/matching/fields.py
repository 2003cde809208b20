"""Reading a field of a record by a dotted path (`address.city`).

Why a module of its own: matching, candidate mapping and explanations all name fields the same
way, and a top-level-only read made dotted paths pass validation and then never match. Pure and
tiny on purpose: it is called once per field per candidate on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_view", "field_value"]


def field_value(row: Any, path: str) -> Any:
    """The value at `path` (dots separate keys of nested mappings), or None when any step is absent.

    A step into a list takes a number (`contacts.0.email`); a step into anything else finds nothing.

    A key that itself contains a dot is found too (`row["address.city"]` before `row["address"]["city"]`),
    because flat exports name nested fields that way.
    """
    if type(row) is not dict and not isinstance(row, Mapping):  # the exact type first: ABC checks are slow
        return None
    if "." not in path or path in row:
        return row.get(path)
    value: Any = row
    for key in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
        if value is None:
            return None
    return value


def _with_field(row: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `row` with `value` at `path`, nested mappings made (or copied) on the way; `row` is unchanged."""
    out = dict(row)
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
        return out
    inner = out.get(head)
    out[head] = _with_field(inner if isinstance(inner, Mapping) else {}, rest, value)
    return out


def canonical_view(candidate: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The candidate with each mapped value also under its canonical name: `fields` is target -> canonical.

    Why: the dedupe step maps a target's rows (ERPNext's `customer_name`) onto canonical fields in
    Python, so no CEL reshaping of a long candidate list is needed. The candidate's own fields stay
    (the reviewer sees the row as the target system has it); a canonical name the candidate already
    uses is overwritten by the mapped value; a target field the candidate lacks maps to nothing.
    """
    view = dict(candidate)
    for target, canonical in fields.items():
        value = field_value(candidate, target)
        if value is not None:
            view = _with_field(view, canonical, value)
    return view
