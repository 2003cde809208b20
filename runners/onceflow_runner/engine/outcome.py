"""How a record left the engine, and what each step did on the way.

Why a module of its own: step modules return outcomes (a filter stops a record, an approval
parks it) and the engine builds the final one, so both import these types from here; the runner
turns an outcome into ack, exception or audit entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DEDUPE_VERDICTS", "DedupeVerdict", "RecordOutcome", "StepResult"]

#: What a dedupe step made of a record: new (nothing matched), prevented (matched, skipped
#: automatically), parked (matched, a person decides). Counted as duplicate incidence.
DedupeVerdict = Literal["new", "prevented", "parked"]
DEDUPE_VERDICTS: tuple[DedupeVerdict, ...] = ("new", "prevented", "parked")


@dataclass(frozen=True)
class StepResult:
    """One step's outcome, for the audit trail and `onceflow trace`."""

    step: str
    kind: str
    outcome: str
    detail: str = ""
    status: int | None = None
    latency_ms: float = 0.0


@dataclass
class RecordOutcome:
    """How a record left the engine."""

    kind: Literal["completed", "filtered", "parked"]
    record: Any
    steps: list[StepResult] = field(default_factory=list)
    reason: str = ""
    step: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    #: The last dedupe step's verdict on this record, or None when it met no dedupe step.
    dedupe: DedupeVerdict | None = None
