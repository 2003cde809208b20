"""What a step kind is to the engine, and the state of one record that every kind works on.

Why: the engine walks the steps and knows no kind by name; each kind's module declares one
`StepRunner` (the CEL it reads, so the engine compiles it at start, and the coroutine that runs
it), and `steps.STEP_RUNNERS` maps kind names to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onceflow_runner.contract.plan import Plan, StepPlan
from onceflow_runner.engine.expressions import evaluate_bounded, isolates
from onceflow_runner.engine.outcome import DedupeVerdict, RecordOutcome, StepResult
from onceflow_runner.engine.ports import Caller, EventSink, IsolatedEvaluator

__all__ = ["RecordRun", "StepRunner"]


@dataclass
class RecordRun:
    """One record on its way through a plan's steps: what steps read, and what they leave behind."""

    plan: Plan
    caller: Caller
    events: EventSink
    #: What CEL sees: `input`, `record`, `steps`, `meta`, `policy` (see `engine.expressions`).
    context: dict[str, Any]
    #: A person approved this record already (a decision replayed it): approvals and matches pass.
    approved: bool
    #: One entry per step that says more than "ok"; the engine adds the plain "ok" ones.
    results: list[StepResult] = field(default_factory=list)
    #: Where CEL that iterates runs under a deadline; None runs it inline (unit tests only).
    isolated: IsolatedEvaluator | None = None
    #: The payload or an answer bound since is over `HEAVY_BYTES`: every expression runs isolated.
    heavy: bool = False
    #: What the last dedupe step made of the record, copied onto its outcome (duplicate incidence).
    dedupe: DedupeVerdict | None = None

    def isolates(self, source: str) -> bool:
        """True when `source` runs in the isolated evaluator for this record (see `evaluate_bounded`)."""
        return isolates(source, isolated=self.isolated, heavy=self.heavy)

    async def evaluate(self, source: str, *, step: str, what: str, context: Mapping[str, Any] | None = None) -> Any:
        """Evaluate one of the plan's expressions for this record (over `context` if given, else the record's)."""
        return await evaluate_bounded(
            source,
            self.context if context is None else context,
            step=step,
            what=what,
            isolated=self.isolated,
            heavy=self.heavy,
        )


@dataclass(frozen=True)
class StepRunner:
    """One step kind: its name in the plan, the CEL it reads from a step, and how it runs."""

    name: str
    #: Every CEL source this kind reads from a step; compiled when the engine starts.
    expressions: Callable[[StepPlan], list[str]]
    #: Run the step; return a RecordOutcome to stop the record here, None to go on.
    run: Callable[[StepPlan, RecordRun], Awaitable[RecordOutcome | None]]
