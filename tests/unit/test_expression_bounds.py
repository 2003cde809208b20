"""Which CEL iterates, how deep, and what the operator refuses before a record meets it.

The runner sends expressions with a comprehension to a killable worker (see
tests/integration/test_expression_workers.py); here: the reading that decides it, and the
validation around it (nesting limit, `spec.expressionTimeout` range, revisions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow_operator.api import Integration
from onceflow_operator.compiler.planner import plan_from_integration
from onceflow_operator.compiler.validation import semantic_problems
from onceflow_runner.contract.plan import Plan, StepPlan, ValidatePlan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.expressions import COMPREHENSION_MACROS, HEAVY_BYTES, Shape, evaluate, iterates, shape
from onceflow_runner.engine.ports import Response
from tests.unit.test_entities_and_engine import RecordingCaller, RecordingEvents, plan
from tests.unit.test_entities_and_engine import plan as engine_plan
from tests.unit.test_planner import load_examples


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("size(input.lines) > 0", Shape(0, 0)),
        ("input.lines.all(l, l.qty > 0)", Shape(1, 1)),
        ("input.lines.all(l, input.lines.exists_one(m, m.sku == l.sku))", Shape(2, 2)),
        ("input.a.map(x, x).exists(y, y > 1)", Shape(2, 1)),
        ("input.a.map(x, x.b.filter(y, y.c.exists(z, z)))", Shape(3, 3)),
        ("input.a . existsOne ( x , x )", Shape(1, 1)),
        ('"a.all(" + input.x', Shape(0, 0)),
        ("'x.map(' + r\"\\\" + input.b.all(i, i)", Shape(1, 1)),
        ("'''.filter(''' + input.x", Shape(0, 0)),
        ('b"\\".exists(" + input.y', Shape(0, 0)),
        ("has(input.map) && input.filter == 1", Shape(0, 0)),
        ("input.all(x, true) && (input.b.exists(y, (y)))", Shape(2, 1)),
    ],
)
def test_shape_counts_and_nests_comprehensions_outside_string_literals(source: str, expected: Shape) -> None:
    cel.compile(source)  # every case is valid CEL
    assert shape(source) == expected


_MACROS = sorted(COMPREHENSION_MACROS)
#: Text CEL strings can hold (no lone surrogates), with macro-like pieces mixed in often.
_TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from([".all(", ".map(", ". exists_one (", "'", '"', "\\", "(", "r'", 'b"']),
    ),
    max_size=20,
).map("".join)


def _literals(text: str) -> list[str]:
    """`text` as a double-quoted and as a single-quoted CEL string literal."""
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    return [f'"{inner}"', "'" + inner.replace('\\"', '"').replace("'", "\\'") + "'"]


@st.composite
def nested(draw: st.DrawFn, depth: int) -> str:
    """A valid CEL expression with comprehensions nested exactly `depth` deep, in random spelling."""
    space = st.sampled_from(["", " ", "  ", "\n"])
    body = "input.v == " + json.dumps(draw(_TEXT), ensure_ascii=False)
    for level in range(depth, 0, -1):
        macro = draw(st.sampled_from(_MACROS))
        var = f"v{level}"
        inner = body if macro != "map" else f"[{body}]"
        body = f"input.l{level}{draw(space)}.{draw(space)}{macro}{draw(space)}({var},{draw(space)}{inner})"
    return body


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4).flatmap(lambda d: st.tuples(st.just(d), nested(d))))
def test_shape_finds_the_nesting_of_any_spelling(case: tuple[int, str]) -> None:
    depth, source = case
    cel.compile(source)
    assert shape(source).depth == depth
    assert iterates(source) == (depth > 0)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_text_inside_a_string_literal_never_counts_as_iteration(text: str) -> None:
    for literal in _literals(text):
        source = f"{literal} + input.x"
        cel.compile(source)
        assert not iterates(source), source


#: What a `//` comment can hold: anything but a newline, with quotes, parentheses and macro-like pieces often.
_COMMENT = st.lists(
    st.one_of(
        st.characters(exclude_categories=("Cs",), exclude_characters="\n"),
        st.sampled_from([".all(", ".map(", "'", '"', '"""', "(", ")", "r'", "//"]),
    ),
    max_size=20,
).map("".join)


@st.composite
def commented(draw: st.DrawFn) -> tuple[int, str]:
    """A valid CEL sum of macro calls and string literals, each maybe followed by a comment; and its macro count."""
    terms, count = [], 0
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        if draw(st.booleans()):
            term, count = "size([1].map(x, x))", count + 1
        else:
            term = draw(st.sampled_from(_literals(draw(_TEXT))))
        if draw(st.booleans()):
            term += f" //{draw(_COMMENT)}\n"
        terms.append(term)
    return count, " + ".join(terms)


def test_a_comment_cannot_hide_a_comprehension_or_its_nesting() -> None:
    hidden = "input.x == 1 // don't\n && input.lines.all(l, l.qty > 0) // won't"
    assert cel.compile(hidden).execute({"input": {"x": 1, "lines": [{"qty": 0}]}}) is False  # it does iterate
    assert shape(hidden) == Shape(1, 1)
    deep = "input.a.all(x, // )\n x.b.all(y, // )\n y.c.all(z, z > 0)))"
    cel.compile(deep)
    assert shape(deep).depth == 3
    assert not iterates("1 // .all(\n + 2")


@settings(max_examples=300, deadline=None)
@given(commented())
def test_comments_and_strings_never_hide_nor_invent_a_comprehension(case: tuple[int, str]) -> None:
    count, source = case
    cel.compile(source)
    assert shape(source).comprehensions == count, source


def _integration(**spec: object) -> Integration:
    return Integration.model_validate(
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": "bounded"},
            "spec": {
                "trigger": {"subject": "in.orders"},
                "steps": [{"name": "check", "validate": {"rules": [{"expression": "true", "message": "m"}]}}],
                **spec,
            },
        }
    )


def test_three_nested_comprehensions_are_refused_naming_the_field_and_what_to_do() -> None:
    rule = "input.orders.all(o, o.lines.all(l, l.taxes.exists(t, t.rate > 0)))"
    integration = _integration(
        steps=[{"name": "check", "validate": {"rules": [{"expression": rule, "message": "every line is taxed"}]}}]
    )
    problems = dict(semantic_problems(integration))
    assert "spec.steps[0].validate.rules[0].expression" in problems
    message = problems["spec.steps[0].validate.rules[0].expression"]
    assert "nests 3 comprehensions" in message
    assert "earlier map step" in message


def test_two_nested_comprehensions_are_accepted() -> None:
    rule = "input.lines.all(l, l.taxes.exists(t, t.rate > 0))"
    integration = _integration(steps=[{"name": "check", "validate": {"rules": [{"expression": rule, "message": "m"}]}}])
    assert list(semantic_problems(integration)) == []


def test_an_analysis_condition_that_iterates_is_refused_the_operator_would_run_it_inline() -> None:
    numbers = "[" + ",".join(["0"] * 900) + "]"
    slow = f"{numbers}.map(x, {numbers}.map(y, y)).size() > 0"  # depth 2: 70 s inline, measured
    assert shape(slow).depth == 2
    analysis = {
        "metrics": [{"name": "errors", "successCondition": slow, "failureCondition": "result.errorRatio > 0.5"}]
    }
    integration = _integration(strategy={"canary": {"steps": [{"analysis": analysis}]}})
    problems = dict(semantic_problems(integration))
    base = "spec.strategy.canary.steps[0].analysis.metrics[0]"
    assert "may not" in problems[f"{base}.successCondition"]
    assert "result.errorRatio < 0.01" in problems[f"{base}.successCondition"]
    assert f"{base}.failureCondition" not in problems


def test_a_suggested_fix_counts_as_plan_cel_for_workers_and_for_validation() -> None:
    """A fix that iterates in a plan where nothing else does used to wait forever for a worker never started."""
    fix = "input.lines.map(l, l.sku)"
    check = StepPlan(
        name="check", kind="validate", validate=ValidatePlan(rules=(("true", "m"),), suggestions=((0, "sku", fix),))
    )
    assert Engine(plan(check), RecordingCaller(), RecordingEvents()).iterates
    deep = "input.a.map(x, x.b.map(y, y.c.map(z, z)))"
    rule = {"expression": "size(input.a) == 0", "message": "m", "suggest": {"field": "a", "value": deep}}
    problems = dict(semantic_problems(_integration(steps=[{"name": "check", "validate": {"rules": [rule]}}])))
    assert "nests 3 comprehensions" in problems["spec.steps[0].validate.rules[0].suggest.value"]


@pytest.mark.parametrize("timeout", ["5ms", "61s", "2m"])
def test_expression_timeout_outside_its_range_is_refused(timeout: str) -> None:
    problems = dict(semantic_problems(_integration(expressionTimeout=timeout)))
    assert "outside 10ms..60s" in problems["spec.expressionTimeout"]


def test_expression_timeout_reaches_the_plan_and_makes_a_revision_only_when_changed() -> None:
    connectors, policies, integrations = load_examples()
    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    base = plan_from_integration(onboarding, connectors, policies["customer"], namespace="s")
    assert base.expression_timeout == 1.0

    def with_timeout(value: str) -> Integration:
        spec = onboarding.spec.model_copy(update={"expression_timeout": value})
        return onboarding.model_copy(update={"spec": spec})

    same = plan_from_integration(with_timeout("1s"), connectors, policies["customer"], namespace="s")
    assert same.revision == base.revision  # the default, written out, is not a new revision
    longer = plan_from_integration(with_timeout("2500ms"), connectors, policies["customer"], namespace="s")
    assert longer.expression_timeout == 2.5
    assert longer.revision != base.revision


class _Isolated:
    """Records which expressions were sent to isolation, and answers them inline (unit layer)."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    async def evaluate(self, source: str, variables: Mapping[str, Any], *, step: str, what: str) -> Any:
        self.sources.append(source)
        return evaluate(source, variables, step=step, what=what)


_MAP = StepPlan.model_validate(
    {"name": "canonical", "kind": "map", "map": {"fields": {"name": "input.company", "n": "size(input.lines)"}}}
)
_ANY_BIG = StepPlan.model_validate({"name": "big", "kind": "filter", "condition": "input.lines.exists(l, l > 0)"})
_LOOKUP = StepPlan.model_validate(
    {"name": "price", "kind": "lookup", "request": {"connector": "erp", "method": "GET", "path": '"/price"'}}
)
_AFTER = StepPlan.model_validate({"name": "after", "kind": "filter", "condition": "steps.price.ok == true"})


def _plan(*steps: StepPlan) -> Plan:
    return engine_plan(*steps, business_key="'c/' + input.company")


class _Answers:
    def __init__(self, size: int) -> None:
        self.size = size

    async def request(self, connector: str, method: str, path: str, **_: Any) -> Response:
        return Response(200, {"ok": True}, size=self.size)


class _NoEvents:
    async def publish_event(self, *_: Any, **__: Any) -> None:
        raise AssertionError("no events here")

    async def hand_over_edi(self, *_: Any, **__: Any) -> None:
        raise AssertionError("no EDI documents here")


async def test_a_small_record_runs_only_its_iterating_expressions_isolated() -> None:
    isolated = _Isolated()
    engine = Engine(_plan(_MAP, _ANY_BIG), _Answers(10), _NoEvents(), isolated)
    payload = {"company": "Acme", "lines": [1, 2]}
    assert await engine.business_key(payload, {"deliveryId": "d"}, payload_bytes=100) == "c/Acme"
    outcome = await engine.run(payload, {"deliveryId": "d", "businessKey": "c/Acme"}, payload_bytes=100)
    assert outcome.kind == "completed"
    assert isolated.sources == ["input.lines.exists(l, l > 0)"]


async def test_a_large_record_runs_every_expression_isolated_business_key_included() -> None:
    isolated = _Isolated()
    engine = Engine(_plan(_MAP, _ANY_BIG), _Answers(10), _NoEvents(), isolated)
    payload = {"company": "Acme", "lines": [1, 2]}
    big = HEAVY_BYTES + 1
    assert await engine.business_key(payload, {"deliveryId": "d"}, payload_bytes=big) == "c/Acme"
    await engine.run(payload, {"deliveryId": "d", "businessKey": "c/Acme"}, payload_bytes=big)
    assert isolated.sources == [
        "'c/' + input.company",
        "input.company",
        "size(input.lines)",
        "input.lines.exists(l, l > 0)",
    ]


async def test_a_large_answer_makes_the_rest_of_the_record_isolated() -> None:
    isolated = _Isolated()
    engine = Engine(_plan(_LOOKUP, _AFTER), _Answers(HEAVY_BYTES + 1), _NoEvents(), isolated)
    outcome = await engine.run({"company": "Acme"}, {"deliveryId": "d", "businessKey": "c/Acme"}, payload_bytes=50)
    assert outcome.kind == "completed"
    assert isolated.sources == ["steps.price.ok == true"]  # the path ran inline, before the answer came
