"""Path templates: literal paths without CEL quoting, `{expression}` placeholders one segment each."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.api.types import LITERAL_PATH_PATTERN, PATH_TEMPLATE_PATTERN
from onceflow_operator.compiler.paths import (
    PathTemplateError,
    Placeholder,
    literal_path,
    parse_path_template,
    path_template_cel,
)
from onceflow_operator.compiler.planner import InvalidSpec, drift_check_plan, plan_from_integration
from onceflow_operator.compiler.validation import validate_manifest
from onceflow_runner.engine.expressions import evaluate
from tests import cases

#: Text a path can carry literally: printable, no backslash (the runner refuses control
#: characters, backslashes and lone surrogates before any request).
_LITERAL = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
    max_size=60,
)
_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
    st.sampled_from(["a/b", "../x", "?q=1", "#frag", "%2F", "%", "a b", "//", "ü/ß"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # CEL ints are int64
)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _path_of(template: str, context: dict[str, Any]) -> str:
    """What the runner requests: the compiled CEL, evaluated by the runner's own evaluator."""
    return str(evaluate(path_template_cel(parse_path_template(template)), context, step="s", what="path"))


@given(_LITERAL)
def test_any_literal_text_round_trips_through_the_template_and_its_cel(text: str) -> None:
    template = "/" + _escape(text)
    assert "".join(str(p) for p in parse_path_template(template)) == "/" + text
    assert _path_of(template, {}) == "/" + text
    assert literal_path(template) == "/" + text


@given(st.lists(_VALUES, min_size=1, max_size=3), st.lists(st.from_regex(r"[A-Za-z0-9 _.-]{1,8}", fullmatch=True)))
def test_placeholder_values_never_add_segments_a_query_or_a_fragment(values: list[Any], words: list[str]) -> None:
    template = "/api/" + "/".join(f"{{record.v{i}}}" for i in range(len(values))) + "/" + "/".join(words or ["end"])
    path = _path_of(template, {"record": {f"v{i}": v for i, v in enumerate(values)}})
    segments = path.split("/")
    assert len(segments) == 2 + len(values) + len(words or ["end"])
    assert "?" not in path
    assert "#" not in path
    assert [unquote(s) for s in segments[2 : 2 + len(values)]] == [str(v) for v in values]


@given(st.text(alphabet="{}ab/", max_size=20))
def test_the_parser_and_the_crds_rule_accept_the_same_templates(tail: str) -> None:
    template = "/" + tail
    try:
        parts = parse_path_template(template)
    except PathTemplateError:
        parsed = False
    else:
        parsed = True
        has_placeholder = any(isinstance(p, Placeholder) for p in parts)
        assert bool(re.fullmatch(LITERAL_PATH_PATTERN, template)) == (not has_placeholder)
    assert bool(re.fullmatch(PATH_TEMPLATE_PATTERN, template)) == parsed


def test_a_template_compiles_to_the_cel_the_runner_already_runs() -> None:
    cel = path_template_cel(parse_path_template("/api/resource/Customer/{record.name}"))
    assert cel == '"/api/resource/Customer/" + pathSegment(record.name)'
    assert path_template_cel(parse_path_template("/api/{{x}}")) == '"/api/{x}"'
    assert _path_of("/api/resource/Delivery Note/{ record.dn }.json", {"record": {"dn": "DN/1?x"}}) == (
        "/api/resource/Delivery Note/DN%2F1%3Fx.json"
    )


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("/api/{record.name", "has no closing '}'; write '{{' for a literal brace"),
        ("/api/x}", "closes no placeholder; write '}}'"),
        ("/api/{ }", "is empty; put a CEL expression in it"),
        ("/api/{record.a{b}}", "holds a '{'"),
    ],
)
def test_a_malformed_template_is_refused_with_what_to_write(template: str, says: str) -> None:
    with pytest.raises(PathTemplateError, match=re.escape(says)):
        parse_path_template(template)


def _connector(name: str) -> Connector:
    return Connector.model_validate(cases.connector_webhook(name) if name == "crm" else cases.connector_rest(name))


def _integration_with_path(path: str) -> dict[str, Any]:
    obj = cases.integration()
    obj["spec"]["steps"][2]["call"]["path"] = path
    return obj


def test_validate_names_the_field_of_a_placeholder_that_does_not_compile() -> None:
    (problem,) = validate_manifest(_integration_with_path("/api/resource/Customer/{record.}"), "flow.yaml")
    assert problem.path == "spec.steps[2].call.path"
    assert problem.message.startswith("placeholder {record.} does not compile as CEL")


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/api/resource/Customer?limit=1", "holds '?'; put query parameters in the step's query block"),
        ("/api//Customer", "holds an empty segment"),
        ("/api/../admin", "holds a dot segment"),
        ("/api/x#top", "holds '#'"),
    ],
)
def test_validate_refuses_literal_text_the_runner_would_refuse(path: str, says: str) -> None:
    (problem,) = validate_manifest(_integration_with_path(path), "flow.yaml")
    assert problem.path == "spec.steps[2].call.path"
    assert says in problem.message


def test_a_placeholder_naming_a_bare_field_is_pointed_at_record() -> None:
    (problem,) = validate_manifest(_integration_with_path("/api/resource/Customer/{name}"), "flow.yaml")
    assert problem.path == "spec.steps[2].call.path"
    assert problem.message.endswith("did you mean {record.name}?")


def test_a_placeholder_reading_a_later_step_is_reported_like_any_cel() -> None:
    obj = _integration_with_path("/api/resource/Customer/{steps.create.data.name}")
    (problem,) = validate_manifest(obj, "flow.yaml")
    assert problem.path == "spec.steps[2].call.path"
    assert "runs at or after this step" in problem.message


def test_a_bare_url_in_a_path_gets_a_hint_to_write_only_the_path() -> None:
    (problem,) = validate_manifest(_integration_with_path("https://erp.example.test/api/resource/Customer"), "f.yaml")
    assert "CEL does not compile" in problem.message
    assert "write only the path, e.g. /api/resource/Customer" in problem.message


def test_a_bare_literal_in_another_cel_field_gets_a_hint_to_quote_it() -> None:
    obj = cases.integration()
    obj["spec"]["steps"][0]["map"]["fields"]["website"] = "https://acme.example"
    (problem,) = validate_manifest(obj, "f.yaml")
    assert problem.path == "spec.steps[0].map.fields.website"
    assert """CEL strings are quoted: write '"https://acme.example"'""" in problem.message


def test_a_path_without_leading_slash_that_parses_as_division_gets_the_literal_form() -> None:
    (problem,) = validate_manifest(_integration_with_path("api/resource/Customer"), "f.yaml")
    assert "which a path cannot read" in problem.message
    assert problem.message.endswith("write /api/resource/Customer")


def test_the_planner_puts_the_compiled_template_in_the_plan_and_refuses_a_bad_one() -> None:
    connectors = {"crm": _connector("crm"), "erp": _connector("erp")}
    good = Integration.model_validate(_integration_with_path("/api/resource/Customer/{record.name}"))
    plan = plan_from_integration(good, connectors, None, namespace="sales")
    assert plan.steps[2].request is not None
    assert plan.steps[2].request.path == '"/api/resource/Customer/" + pathSegment(record.name)'
    bad = Integration.model_validate(_integration_with_path("/api/resource/Customer/{}"))
    with pytest.raises(InvalidSpec) as refused:
        plan_from_integration(bad, connectors, None, namespace="sales")
    assert any(p.path == "spec.steps[2].call.path" and "is empty" in p.message for p in refused.value.problems)


def _policy(left_path: str) -> SyncPolicy:
    obj = cases.syncpolicy()
    obj["spec"]["reconcile"] = {
        "left": {"connector": "erp", "path": left_path, "keyField": "tax_id"},
        "right": {"connector": "erp", "path": "/customers", "keyField": "tax_id"},
    }
    return SyncPolicy.model_validate(obj)


def test_a_reconcile_path_is_literal_with_doubled_braces_in_the_drift_plan() -> None:
    plan = drift_check_plan(
        _policy('/api/resource/Customer?filters={{"a":1}}'), {"erp": _connector("erp")}, namespace="s"
    )
    assert plan.left.path == '/api/resource/Customer?filters={"a":1}'


def test_a_reconcile_path_with_a_placeholder_is_refused_by_the_planner_naming_the_field() -> None:
    with pytest.raises(InvalidSpec) as refused:
        drift_check_plan(_policy("/api/resource/Customer/{record.name}"), {"erp": _connector("erp")}, namespace="s")
    (problem,) = refused.value.problems
    assert problem.path == "spec.reconcile.left.path"
    assert "has no record to read" in problem.message
