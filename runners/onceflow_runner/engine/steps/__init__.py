"""The step kinds, one module each, and the registry the engine looks them up in.

Why: a step kind is one module that declares a `StepRunner` (the CEL it reads and how it runs);
the engine walks a plan's steps through `STEP_RUNNERS` and names no kind itself. Adding a kind
means its module, its entry below, and its block in the plan contract (`contract.plan`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from onceflow_runner.contract.plan import STEP_KINDS
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner
from onceflow_runner.engine.steps.approve import APPROVE
from onceflow_runner.engine.steps.call import CALL
from onceflow_runner.engine.steps.dedupe import DEDUPE
from onceflow_runner.engine.steps.filter import FILTER
from onceflow_runner.engine.steps.lookup import LOOKUP
from onceflow_runner.engine.steps.map import MAP
from onceflow_runner.engine.steps.publish import PUBLISH
from onceflow_runner.engine.steps.send_edi import SEND_EDI
from onceflow_runner.engine.steps.validate import VALIDATE

__all__ = ["STEP_RUNNERS", "RecordRun", "StepRunner"]

#: Every step kind the engine runs, by the name a plan's `kind` gives. The order is the order in
#: which the engine compiles a step's expressions at start (the order of the plan's blocks).
STEP_RUNNERS: Mapping[str, StepRunner] = MappingProxyType(
    {runner.name: runner for runner in (VALIDATE, MAP, FILTER, LOOKUP, DEDUPE, CALL, PUBLISH, APPROVE, SEND_EDI)}
)
if tuple(STEP_RUNNERS) != STEP_KINDS:
    raise RuntimeError(f"step runners {tuple(STEP_RUNNERS)} do not match the plan's step kinds {STEP_KINDS}")
