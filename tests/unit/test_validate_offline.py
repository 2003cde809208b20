from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.compiler.validation import validate_manifest
from tests import cases

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", cases.INVALID, ids=lambda c: c.id)
def test_offline_validate_refuses_invalid_object_naming_the_field(case: cases.Invalid) -> None:
    problems = validate_manifest(case.make(), "x.yaml")
    assert problems, f"{case.id} was accepted"
    assert any(p.path.startswith(case.field) and case.says in p.message + p.path for p in problems), problems


@pytest.mark.parametrize("make", [cases.connector_rest, cases.connector_webhook, cases.integration, cases.syncpolicy])
def test_valid_base_objects_pass(make: object) -> None:
    assert validate_manifest(make(), "x.yaml") == []  # type: ignore[operator]


def test_examples_are_valid() -> None:
    result = CliRunner().invoke(main, ["validate", "-f", str(ROOT / "examples")])
    assert result.exit_code == 0, result.output
    assert "manifest(s) valid" in result.output


def test_cel_that_does_not_compile_is_reported_with_its_field_path() -> None:
    obj = cases.integration()
    obj["spec"]["steps"][0]["map"]["fields"]["name"] = "input.company +"
    (problem,) = validate_manifest(obj, "flow.yaml")
    assert str(problem).startswith("flow.yaml:Integration/onboard: spec.steps[0].map.fields.name: CEL does not compile")


def test_reading_a_later_step_is_reported() -> None:
    obj = cases.integration()
    obj["spec"]["steps"][0]["map"]["fields"]["erp_name"] = "steps.create.data.name"
    (problem,) = validate_manifest(obj, "flow.yaml")
    assert problem.path == "spec.steps[0].map.fields.erp_name"
    assert "runs at or after this step" in problem.message


def test_reading_an_unknown_step_is_reported_with_the_known_names() -> None:
    obj = cases.integration()
    obj["spec"]["steps"][2]["call"]["body"] = "steps.lookupCustomer.data"
    (problem,) = validate_manifest(obj, "flow.yaml")
    assert "no step is named 'lookupCustomer'" in problem.message
    assert "canonical" in problem.message


def test_reading_a_step_without_result_is_reported() -> None:
    obj = cases.integration()
    obj["spec"]["steps"][2]["call"]["body"] = "steps.check"
    (problem,) = validate_manifest(obj, "flow.yaml")
    assert "a validate step, which has no result" in problem.message


def test_cli_prints_one_line_per_problem_and_exits_1(tmp_path: Path) -> None:
    bad = [c.make() for c in cases.INVALID[:3]]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(bad))
    result = CliRunner().invoke(main, ["validate", "-f", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line]
    assert len(lines) >= 3
    assert all(line.startswith(f"{path}:") for line in lines)
    assert f"{path}:Connector/erp: spec.rest.auth.bearer.token: inline secret values" in lines[0]


def test_non_onceflow_documents_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}, cases.syncpolicy()])
    )
    result = CliRunner().invoke(main, ["validate", "-f", str(path)])
    assert result.exit_code == 0
    assert "1 manifest(s) valid" in result.output


def test_unknown_kind_in_group_is_reported() -> None:
    (problem,) = validate_manifest(
        {"apiVersion": "onceflow.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"}}, "p.yaml"
    )
    assert problem.path == "kind"
    assert "Connector" in problem.message


def test_a_mistyped_secret_field_never_echoes_its_value() -> None:
    obj = cases.connector_rest()
    obj["spec"]["rest"]["auth"]["bearer"]["tokne"] = "s3cr3t-value"
    problems = validate_manifest(obj, "c.yaml")
    assert problems
    assert all("s3cr3t-value" not in str(p) for p in problems)
