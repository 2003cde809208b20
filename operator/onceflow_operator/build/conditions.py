"""Status conditions as Kubernetes API conventions and kstatus want them (pure).

`lastTransitionTime` moves only when a condition's status changes; Reconciling and Stalled are
present only while true.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["set_condition", "without_condition"]


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return conditions with `type_` set (in its place, else last); lastTransitionTime moves on a status change."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.get("type") == type_), None)
    since = (
        old["lastTransitionTime"]
        if old and old.get("status") == value and old.get("lastTransitionTime")
        else (now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    )
    new = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:4096],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    if old is None:
        return [*conditions, new]
    # In place: a condition that keeps its place keeps the status equal, so nothing is written.
    return [new if c.get("type") == type_ else c for c in conditions]


def without_condition(conditions: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    """kstatus: Reconciling and Stalled are present only while true."""
    return [c for c in conditions if c.get("type") != type_]
