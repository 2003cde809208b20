"""Each step kind's compilation: from an Integration's step to its block of the runner's plan.

Why: the planner compiles an Integration (trigger, Connectors, SyncPolicy, NATS names) and
names no step kind; what a kind puts in the plan, what is wrong with it, and where its CEL is
(for `onceflow validate`) is one `StepCompiler` here, next to the other kinds'. The blocks'
wire shape is the plan contract's (`onceflow_runner.contract.plan`), which the runner owns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from onceflow_operator.api import STEP_KINDS, Paging, Step
from onceflow_operator.api.steps import CallStep, DedupeStep, LookupStep
from onceflow_operator.compiler.paths import request_path_cel, request_path_problems
from onceflow_runner.contract.plan import (
    PROTECTED_FIELDS,
    AnswerRulePlan,
    ApprovePlan,
    MapPlan,
    PagingPlan,
    PublishPlan,
    RequestPlan,
    SendEdiPlan,
    StepPlan,
    ValidatePlan,
)

__all__ = [
    "REQUEST_KINDS",
    "STEP_COMPILERS",
    "CompiledStep",
    "StepCompiler",
    "compile_step",
    "paging_plan",
    "step_expressions",
    "step_path_problems",
]

#: The step kinds that call a Connector (a `connector` and a `path`).
REQUEST_KINDS = ("lookup", "dedupe", "call")

#: (field path, message), as `semantic_problems` yields them; the planner turns them into Problems.
PathMessage = tuple[str, str]


@dataclass(frozen=True)
class CompiledStep:
    """A step as the plan carries it, and what is wrong with it (field paths under spec.steps[i])."""

    plan: StepPlan
    problems: tuple[PathMessage, ...] = ()


@dataclass(frozen=True)
class StepCompiler:
    """One step kind on the control plane: its plan block, its problems, and where its CEL is."""

    kind: str
    #: (step, its path e.g. spec.steps[2], whether the Integration names a SyncPolicy) ->
    #: the StepPlan fields of the kind's block, and the problems found.
    block: Callable[[Step, str, bool], tuple[dict[str, object], list[PathMessage]]]
    #: (step, its path) -> (field path, CEL source) for every expression of the kind's block.
    expressions: Callable[[Step, str], Iterator[PathMessage]]
    #: Later steps can read this kind's result as steps.<name>.
    has_result: bool = False


def _validate_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.validate_
    assert spec is not None
    problems: list[PathMessage] = []
    fixes = [(n, r.suggest.field, r.suggest.value) for n, r in enumerate(spec.rules) if r.suggest]
    for n, path, _ in fixes:
        if PROTECTED_FIELDS.search(path):
            problems.append(
                (
                    f"{at}.validate.rules[{n}].suggest.field",
                    f"{path} is a price or credit field; suggestions never change those, a person decides",
                )
            )
    block = ValidatePlan(
        entity=spec.entity,
        rules=tuple((r.expression, r.message) for r in spec.rules),
        suggestions=tuple(f for f in fixes if not PROTECTED_FIELDS.search(f[1])),
    )
    return {"validate": block}, problems


def _validate_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    for j, rule in enumerate(step.validate_.rules if step.validate_ else []):
        yield f"{at}.validate.rules[{j}].expression", rule.expression
        if rule.suggest is not None:
            yield f"{at}.validate.rules[{j}].suggest.value", rule.suggest.value


def _map_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    assert step.map is not None
    return {"map": MapPlan(fields=dict(step.map.fields), mode=step.map.mode)}, []


def _map_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    for name, expr in (step.map.fields if step.map else {}).items():
        yield f"{at}.map.fields.{name}", expr


def _filter_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    assert step.filter is not None
    return {"condition": step.filter.condition}, []


def _filter_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    if step.filter:
        yield f"{at}.filter.condition", step.filter.condition


def _answer_fields(block: LookupStep | DedupeStep | CallStep) -> dict[str, object]:
    """The request's headers, answer rules and result, as lookup, dedupe and call all declare them."""
    handling = block.response
    return {
        "headers": dict(block.headers),
        "answers": tuple(
            AnswerRulePlan(when=r.when, outcome=r.outcome, message=r.message)
            for r in (handling.rules if handling else [])
        ),
        "result": handling.result if handling else None,
    }


def _lookup_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.lookup
    assert spec is not None
    request = RequestPlan(
        connector=spec.connector,
        method=spec.method,
        path=request_path_cel(spec.path),
        query=dict(spec.query),
        not_found=spec.not_found,
        candidates=spec.rows,
        paging=paging_plan(spec.paging),
        **_answer_fields(spec),
    )
    return {"request": request}, []


def _dedupe_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.dedupe
    assert spec is not None
    request = RequestPlan(
        connector=spec.connector,
        method="GET",
        path=request_path_cel(spec.path),
        query=dict(spec.query),
        candidates=spec.candidates,
        candidate_fields=dict(spec.fields),
        on_match=spec.on_match,
        paging=paging_plan(spec.paging),
        **_answer_fields(spec),
    )
    problems = [] if has_sync_policy else [(f"{at}.dedupe", "dedupe needs spec.syncPolicyRef for its match rules")]
    problems += [(f"{at}.dedupe.fields", message) for message in _mapping_problems(spec.fields)]
    return {"request": request}, problems


def _mapping_problems(fields: dict[str, str]) -> Iterator[str]:
    """Canonical fields the candidate mapping writes twice: onto one name, or one inside another.

    Why refused: the mapping is applied in the map's order, which is the order the API server
    stores it (not the order written), so which value a rule compared would be an accident.
    """
    by_canonical: dict[str, list[str]] = {}
    for target, canonical in fields.items():
        by_canonical.setdefault(canonical, []).append(target)
    for canonical, targets in sorted(by_canonical.items()):
        if len(targets) > 1:
            named = ", ".join(sorted(targets)[:-1]) + f" and {sorted(targets)[-1]}"
            yield f"{named} both map onto {canonical}; map one target field onto each canonical field"
    names = sorted(by_canonical)
    for outer in names:
        for inner in names:
            if inner.startswith(f"{outer}."):
                yield (
                    f"the mapping writes both {outer} and {inner}, one inside the other; "
                    f"map onto {inner} or onto {outer}, not both"
                )


def _call_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.call
    assert spec is not None
    request = RequestPlan(
        connector=spec.connector,
        method=spec.method,
        path=request_path_cel(spec.path),
        body=spec.body,
        idempotency_key=spec.idempotency_key,
        **_answer_fields(spec),
    )
    return {"request": request}, []


def _request_expressions(kind: str) -> Callable[[Step, str], Iterator[PathMessage]]:
    """The path and query of lookup, dedupe and call, under the kind's own field name."""

    def expressions(step: Step, at: str) -> Iterator[PathMessage]:
        block = getattr(step, kind)
        if block is None:
            return
        field = f"{at}.{kind}.path"
        if not block.path.startswith("/"):
            yield field, block.path
        elif not any(True for _ in request_path_problems(field, block.path)):
            # A template's CEL, so step references in its placeholders are checked like any CEL.
            yield field, request_path_cel(block.path)
        for name, expr in getattr(block, "query", {}).items():
            yield f"{at}.{kind}.query.{name}", expr
        paging = getattr(block, "paging", None)
        if paging is not None and paging.next is not None:
            yield f"{at}.{kind}.paging.next", paging.next
        if paging is not None and kind == "lookup":
            yield f"{at}.lookup.rows", block.rows
        for name, expr in block.headers.items():
            yield f"{at}.{kind}.headers.{name}", expr
        if block.response is not None:
            for j, rule in enumerate(block.response.rules):
                yield f"{at}.{kind}.response.rules[{j}].when", rule.when
                if rule.message:
                    yield f"{at}.{kind}.response.rules[{j}].message", rule.message
            if block.response.result:
                yield f"{at}.{kind}.response.result", block.response.result

    return expressions


def _dedupe_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    yield from _request_expressions("dedupe")(step, at)
    if step.dedupe:
        yield f"{at}.dedupe.candidates", step.dedupe.candidates


def _call_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    yield from _request_expressions("call")(step, at)
    if step.call and step.call.body:
        yield f"{at}.call.body", step.call.body
    if step.call and step.call.idempotency_key:
        yield f"{at}.call.idempotencyKey", step.call.idempotency_key


def _publish_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.publish
    assert spec is not None
    return {"publish": PublishPlan(entity=spec.entity, verb=spec.verb, data=spec.data)}, []


def _publish_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    if step.publish and step.publish.data:
        yield f"{at}.publish.data", step.publish.data


def _approve_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.approve
    assert spec is not None
    return {"approve": ApprovePlan(reason=spec.reason, when=spec.when)}, []


def _approve_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    if step.approve and step.approve.when:
        yield f"{at}.approve.when", step.approve.when


def _send_edi_block(step: Step, at: str, has_sync_policy: bool) -> tuple[dict[str, object], list[PathMessage]]:
    spec = step.send_edi
    assert spec is not None
    return {"sendEdi": SendEdiPlan(connector=spec.connector, document=spec.document, from_=spec.from_)}, []


def _send_edi_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    if step.send_edi and step.send_edi.from_:
        yield f"{at}.sendEdi.from", step.send_edi.from_


#: Every step kind the planner compiles, in the order of the API's STEP_KINDS; adding a kind is one
#: entry here (plus its API model and its plan block).
STEP_COMPILERS: Mapping[str, StepCompiler] = MappingProxyType(
    {
        compiler.kind: compiler
        for compiler in (
            StepCompiler("validate", _validate_block, _validate_expressions),
            StepCompiler("map", _map_block, _map_expressions, has_result=True),
            StepCompiler("filter", _filter_block, _filter_expressions),
            StepCompiler("lookup", _lookup_block, _request_expressions("lookup"), has_result=True),
            StepCompiler("dedupe", _dedupe_block, _dedupe_expressions, has_result=True),
            StepCompiler("call", _call_block, _call_expressions, has_result=True),
            StepCompiler("publish", _publish_block, _publish_expressions),
            StepCompiler("approve", _approve_block, _approve_expressions),
            StepCompiler("sendEdi", _send_edi_block, _send_edi_expressions),
        )
    }
)
if tuple(STEP_COMPILERS) != STEP_KINDS:
    raise RuntimeError(f"step compilers {tuple(STEP_COMPILERS)} do not match the API's step kinds {STEP_KINDS}")


def compile_step(step: Step, at: str, *, has_sync_policy: bool) -> CompiledStep:
    """Compile one step (at `at`, e.g. spec.steps[2]) into its plan, with the problems found."""
    compiler = STEP_COMPILERS.get(step.kind)
    block, problems = compiler.block(step, at, has_sync_policy) if compiler else ({}, [])
    return CompiledStep(StepPlan.model_validate({"name": step.name, "kind": step.kind, **block}), tuple(problems))


def step_path_problems(step: Step, at: str) -> Iterator[PathMessage]:
    """Yield (field path, message) for a lookup, dedupe or call path that cannot work (see compiler.paths)."""
    for kind in REQUEST_KINDS:
        block = getattr(step, kind)
        if block is not None:
            yield from request_path_problems(f"{at}.{kind}.path", block.path)


def step_expressions(step: Step, at: str) -> Iterator[PathMessage]:
    """Yield (field path, CEL source) for every expression of every block the step sets."""
    for compiler in STEP_COMPILERS.values():
        yield from compiler.expressions(step, at)


def paging_plan(paging: Paging | None) -> PagingPlan | None:
    """The runner's paging contract for an API `paging` block (None: one request, as before)."""
    if paging is None:
        return None
    return PagingPlan(
        style=paging.style,
        page_size=paging.page_size,
        size_param=paging.size_param or None,
        offset_param=paging.offset_param,
        page_param=paging.page_param,
        first_page=paging.first_page,
        cursor_param=paging.cursor_param,
        next=paging.next,
        max_pages=paging.max_pages,
    )
