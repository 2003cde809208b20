"""What a reconcile returns, and the status conditions every kind shares.

A reconcile returns a `ReconcileResult`: the status to write and the Events to record. The status
is checked against the kind's typed status model in `api/` before it leaves the controller, so a
misspelt field fails here instead of being pruned silently by the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from onceflow_operator.api import ConnectorStatus, IntegrationStatus, SyncPolicyStatus
from onceflow_operator.api._base import ApiModel
from onceflow_operator.build.conditions import set_condition, without_condition

__all__ = ["STATUS_MODELS", "ReconcileResult", "checked_status", "merged", "now", "status_changes", "with_ready"]

#: kind -> the status model the CRD declares for it.
STATUS_MODELS: dict[str, type[ApiModel]] = {
    "Connector": ConnectorStatus,
    "Integration": IntegrationStatus,
    "SyncPolicy": SyncPolicyStatus,
}


@dataclass
class ReconcileResult:
    """The status to write and the Events to record as (reason, message, warning).

    `needs_fix` says nothing will change until a person fixes the spec or what it references
    (an invalid spec, an unusable Secret): the resync timer backs off instead of repeating it.
    """

    status: dict[str, Any]
    events: list[tuple[str, str, bool]] = field(default_factory=list)
    needs_fix: bool = False


def now() -> datetime:
    """The time a condition or probe is stamped with (UTC)."""
    return datetime.now(UTC)


def checked_status(kind: str, status: dict[str, Any]) -> dict[str, Any]:
    """Return `status` unchanged once the kind's status model accepts it (extra fields are refused).

    The dict itself is what gets patched, so a None still clears a field in the merge patch.
    """
    STATUS_MODELS[kind].model_validate(_without_nulls(status))
    return status


def _without_nulls(value: Any) -> Any:
    """A merge patch's nulls delete fields; the model judges what remains."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def merged(current: Any, patch: Any) -> Any:
    """`current` after a JSON merge patch (RFC 7386): maps merge, None deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(current) if isinstance(current, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


def status_changes(current: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> bool:
    """Whether merge-patching `patch` into `current` would change anything.

    Why ask: a status patch that changes nothing is still a write request (and, for a custom
    resource, an etcd write of the same object); a steady state must make none.
    """
    before = dict(current or {})
    return bool(merged(before, patch) != before)


def with_ready(
    status: Mapping[str, Any],
    generation: int,
    ok: bool,
    reason: str,
    message: str,
    *,
    stalled: bool = False,
    reconciling: bool = False,
) -> dict[str, Any]:
    """The status with Ready set, and Stalled / Reconciling present only while true."""
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, "Ready", ok, reason, message, generation=generation, now=now())
    for kind, on in (("Stalled", stalled), ("Reconciling", reconciling)):
        conditions = (
            set_condition(conditions, kind, True, reason, message, generation=generation, now=now())
            if on
            else without_condition(conditions, kind)
        )
    return {**status, "conditions": conditions, "observedGeneration": generation}
