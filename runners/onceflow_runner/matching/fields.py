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
    rest = path
    while True:
        # At every mapping the rest of the path is first tried as one key: a flat key with dots is
        # found at any depth (`address` -> `post.code`), not only at the top.
        if isinstance(value, Mapping) and rest in value:
            return value[rest]
        key, _, rest = rest.partition(".")
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isascii() and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
        if value is None or not rest:
            return value


def _with_field(row: Any, path: str, value: Any) -> Any:
    """A copy of `row` with `value` at `path`, containers made (or copied) on the way; `row` is unchanged.

    A number steps into a list the row already has (the rest of the list stays); an index past its
    end changes nothing, as reading it finds nothing. Anything else on the way becomes a mapping.
    """
    head, _, rest = path.partition(".")
    if isinstance(row, list):
        if not (head.isdigit() and int(head) < len(row)):
            return row
        out_list = list(row)
        index = int(head)
        out_list[index] = _with_field(out_list[index], rest, value) if rest else value
        return out_list
    out = dict(row) if isinstance(row, Mapping) else {}
    out[head] = _with_field(out.get(head), rest, value) if rest else value
    return out


def canonical_view(candidate: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The candidate with each mapped value also under its canonical name: `fields` is target -> canonical.

    Why: the dedupe step maps a target's rows (ERPNext's `customer_name`) onto canonical fields in
    Python, so no CEL reshaping of a long candidate list is needed. The candidate's own fields stay
    (the reviewer sees the row as the target system has it); a canonical name the candidate already
    uses is overwritten by the mapped value; a target field the candidate lacks maps to nothing.
    """
    view: dict[str, Any] = dict(candidate)
    for target, canonical in fields.items():
        value = field_value(candidate, target)
        if value is not None:
            view = _with_field(view, canonical, value)
    return view
