"""Reading a field of a record by a dotted path (`address.city`).

Why a module of its own: matching, candidate mapping and explanations all name fields the same
way, and a top-level-only read made dotted paths pass validation and then never match. Pure and
tiny on purpose: it is called once per field per candidate on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["field_value"]


def field_value(row: Any, path: str) -> Any:
    """The value at `path` (dots separate keys of nested mappings), or None when any step is absent.

    A key that itself contains a dot is found too (`row["address.city"]` before `row["address"]["city"]`),
    because flat exports name nested fields that way.
    """
    if type(row) is not dict and not isinstance(row, Mapping):  # the exact type first: ABC checks are slow
        return None
    if "." not in path or path in row:
        return row.get(path)
    value: Any = row
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
        if value is None:
            return None
    return value
