"""Drift between two systems' copies of one entity (pure), for `onceflow drift-check`.

Records are matched by their identity key (each system names it its own way); for records in
both, every field both carry (less bookkeeping fields) is compared after trimming and case
folding. The result is counts for status and dashboards plus a capped list of examples for a
person, never the whole data set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DriftReport", "compare_records", "records_of"]

_BOOKKEEPING = {"name", "doctype", "docstatus", "creation", "modified", "owner", "modified_by", "idx", "id"}


@dataclass
class DriftReport:
    """What differs between the left and the right system."""

    missing_left: int = 0
    missing_right: int = 0
    mismatched: int = 0
    compared: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.missing_left + self.missing_right + self.mismatched

    def as_status(self) -> dict[str, int]:
        return {
            "total": self.total,
            "missingLeft": self.missing_left,
            "missingRight": self.missing_right,
            "mismatched": self.mismatched,
        }


def records_of(body: Any) -> list[Mapping[str, Any]]:
    """A list answer, or ERPNext's {"data": [...]}."""
    rows = body.get("data", []) if isinstance(body, Mapping) else body
    return [r for r in rows or [] if isinstance(r, Mapping)]


def _norm(value: Any) -> str:
    return " ".join(str(value).casefold().split())


def compare_records(
    left: Iterable[Mapping[str, Any]],
    right: Iterable[Mapping[str, Any]],
    left_key: str,
    right_key: str,
    *,
    max_examples: int = 20,
    left_complete: bool = True,
    right_complete: bool = True,
) -> DriftReport:
    """Compare two systems' records of one entity.

    A side read only in part (its paging stopped at `maxPages`) cannot say a record is missing
    from it: the record may sit on a page not read. Records only on the *other* side are then not
    counted as missing; records found on both sides are compared as usual.
    """
    lefts = {_norm(r[left_key]): r for r in left if r.get(left_key) not in (None, "")}
    rights = {_norm(r[right_key]): r for r in right if r.get(right_key) not in (None, "")}
    report = DriftReport()

    def example(kind: str, key: str, **more: Any) -> None:
        if len(report.examples) < max_examples:
            report.examples.append({"kind": kind, "key": key, **more})

    for key in sorted(lefts.keys() - rights.keys()) if right_complete else ():
        report.missing_right += 1
        example("missingRight", key)
    for key in sorted(rights.keys() - lefts.keys()) if left_complete else ():
        report.missing_left += 1
        example("missingLeft", key)
    for key in sorted(lefts.keys() & rights.keys()):
        report.compared += 1
        a, b = lefts[key], rights[key]
        fields = sorted((a.keys() & b.keys()) - _BOOKKEEPING - {left_key, right_key})
        differing = [f for f in fields if _norm(a[f]) != _norm(b[f])]
        if differing:
            report.mismatched += 1
            example("mismatched", key, fields=differing)
    return report
