"""Fields named by dotted paths (`address.city`, `contacts.0.email`), read and written in plain rows (pure).

Why: match rules and the dedupe step's candidate mapping name fields as the SyncPolicy does, and
a canonical record nests (an address, a list of contacts). Validation always accepted dotted
paths, but matching read only top-level keys, so a rule on `address.postcode` never fired.

A key that itself contains dots (`{"address.city": ...}`, as some flat exports write them) is
read first, so rows that used such keys keep matching as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_view", "read_field"]


def read_field(row: Any, path: str) -> Any:
    """The value at `path` in `row`, or None when any step of the path is missing.

    A step into a list takes a number (`contacts.0.email`); a step into anything else than a
    mapping or list finds nothing. At every mapping the rest of the path is first tried as one
    key, so a flat key with dots is found at any depth (`address` -> `post.code`), not only at
    the top.
    """
    value: Any = row
    rest = path
    while True:
        if isinstance(value, Mapping) and rest in value:
            return value[rest]
        step, _, rest = rest.partition(".")
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.isascii() and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
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

    The candidate's own fields stay (the reviewer sees the row as the target system has it); a
    canonical name that the candidate already uses is overwritten by the mapped value. A target
    field the candidate lacks maps to nothing (a missing value, not an empty one).
    """
    view = dict(candidate)
    for target, canonical in fields.items():
        value = read_field(candidate, target)
        if value is not None:
            view = _with_field(view, canonical, value)
    return view
