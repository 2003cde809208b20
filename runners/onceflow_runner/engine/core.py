"""The workflow engine: one record through a plan's steps, with no I/O of its own.

The engine gets a `Caller` (outbound HTTP) and an `EventSink` (canonical events) and returns an
`RecordOutcome`; it never acks, naks or touches NATS. That keeps every step testable without a
server and puts delivery decisions in exactly one place (the runner's settle step). What each
step kind does lives in its module under `steps`; this module only walks the steps, binds
their results, computes the business key and says how the record left.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from onceflow_runner import tracing
from onceflow_runner.contract.plan import Plan, StepPlan
from onceflow_runner.engine.expressions import HEAVY_BYTES, compile_expression, evaluate_bounded, iterates
from onceflow_runner.engine.outcome import RecordOutcome, StepResult
from onceflow_runner.engine.ports import Caller, EventSink, IsolatedEvaluator
from onceflow_runner.engine.steps import STEP_RUNNERS, RecordRun
from onceflow_runner.errors import InvalidRecord

__all__ = ["Engine", "RecordOutcome"]


class Engine:
    """Runs one plan's steps over records."""

    def __init__(
        self, plan: Plan, caller: Caller, events: EventSink, isolated: IsolatedEvaluator | None = None
    ) -> None:
        self.plan = plan
        self.caller = caller
        self.events = events
        #: Where CEL that iterates runs, under the plan's deadline (see `engine.expressions`).
        self.isolated = isolated
        for source in self._expressions():
            compile_expression(source)  # fail at start, not on the first record
        sync = plan.sync_policy
        #: What CEL sees as `policy`: the SyncPolicy's tolerances and entity.
        self.policy: dict[str, Any] = (
            {"name": sync.name, "entity": sync.entity, "priceDeviationPercent": sync.price_deviation_percent}
            if sync
            else {}
        )

    @property
    def iterates(self) -> bool:
        """True when some expression of the plan iterates, so the engine needs an `isolated` evaluator."""
        return any(iterates(source) for source in self._expressions())

    def _expressions(self) -> list[str]:
        # Every block a step carries is compiled, not only its own kind's: a plan written by hand
        # with a stray block fails at start, as it always has. Order: the plan's blocks, deduplicated.
        out = [self.plan.business_key] if self.plan.business_key else []
        for step in self.plan.steps:
            for runner in STEP_RUNNERS.values():
                out += runner.expressions(step)
        return list(dict.fromkeys(out))

    async def business_key(self, payload: Any, meta: Mapping[str, Any], *, payload_bytes: int = 0) -> str:
        """The record's business key: the plan's CEL, or the delivery id the sender gave.

        `payload_bytes` is the size of the bytes `payload` was decoded from (see `run`).
        """
        if not self.plan.business_key:
            return str(meta["deliveryId"])
        value = await evaluate_bounded(
            self.plan.business_key,
            {"input": payload, "meta": dict(meta)},
            step="",
            what="businessKey",
            isolated=self.isolated,
            heavy=payload_bytes > HEAVY_BYTES,
        )
        if value in (None, ""):
            raise InvalidRecord("businessKey evaluated to an empty value; the record cannot be de-duplicated")
        return str(value)

    async def run(self, payload: Any, meta: Mapping[str, Any], *, payload_bytes: int = 0) -> RecordOutcome:
        """Run every step; raise PermanentFailure or TransientFailure, or return the RecordOutcome.

        `payload_bytes`: the size of the bytes `payload` was decoded from. Over `HEAVY_BYTES`,
        every expression of the record runs isolated (its conversion alone could stall the loop).
        """
        context: dict[str, Any] = {
            "input": payload,
            "record": payload,
            "steps": {},
            "meta": dict(meta),
            "policy": self.policy,
        }
        record = RecordRun(
            plan=self.plan,
            caller=self.caller,
            events=self.events,
            context=context,
            approved=meta.get("decision") == "approved",
            isolated=self.isolated,
            heavy=payload_bytes > HEAVY_BYTES,
        )
        results = record.results
        traced = tracing.is_enabled()
        for step in self.plan.steps:
            started = time.perf_counter()
            outcome = await (self._traced_step(step, record) if traced else STEP_RUNNERS[step.kind].run(step, record))
            if outcome is not None:
                outcome.steps = results
                outcome.dedupe = outcome.dedupe or record.dedupe
                return outcome
            if results and results[-1].step == step.name:
                continue
            results.append(StepResult(step.name, step.kind, "ok", latency_ms=(time.perf_counter() - started) * 1e3))
        return RecordOutcome("completed", context["record"], results, dedupe=record.dedupe)

    async def _traced_step(self, step: StepPlan, record: RecordRun) -> RecordOutcome | None:
        """One step inside its span (a child of the delivery's settle span); a raised failure is recorded on it."""
        with tracing.span(
            f"step {step.name}", attributes={tracing.STEP: step.name, tracing.STEP_KIND: step.kind}
        ) as stepping:
            outcome = await STEP_RUNNERS[step.kind].run(step, record)
            tracing.set_outcome(stepping, outcome.kind if outcome is not None else "ok")
            return outcome
