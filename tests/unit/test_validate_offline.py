from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.api.names import CREDENTIALS_LABEL
from onceflow_operator.cli import main
from onceflow_operator.compiler.validation import validate_manifest, validate_paths
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


def test_matching_with_nothing_but_the_entity_defaults_is_valid() -> None:
    policy = cases.syncpolicy()
    policy["spec"]["matching"] = {}
    assert validate_manifest(policy, "x.yaml") == []


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


def _write(tmp_path: Path, *docs: dict[str, Any]) -> Path:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def _secret(name: str, *keys: str, labelled: bool = True) -> dict[str, Any]:
    labels = {CREDENTIALS_LABEL: "true"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "stringData": dict.fromkeys(keys, "x"),
    }


def _webhook_secret() -> dict[str, Any]:
    secret = _secret("crm")
    secret["stringData"] = {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    return secret


def _problems(path: Path, **options: Any) -> list[tuple[str, str, str]]:
    _, problems = validate_paths([path], **options)
    return [(f"{p.kind}/{p.name}", p.path, p.message) for p in problems]


def test_an_integration_alone_names_each_connector_and_policy_it_misses() -> None:
    found = [
        (p.path, p.message) for p in validate_paths([ROOT / "examples" / "customer-onboarding" / "integration.yaml"])[1]
    ]
    assert ("spec.trigger.connector.name", found[0][1]) in found
    assert found[0][1].startswith("names Connector 'crm-webhooks', which none of the given manifests defines")
    assert "--external Connector" in found[0][1]
    assert any(path == "spec.syncPolicyRef.name" and "SyncPolicy 'customer'" in m for path, m in found)
    assert any(path == "spec.steps[6].call.connector" and "Connector 'shop-api'" in m for path, m in found)


def test_references_resolved_among_the_given_manifests_pass(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        cases.connector_webhook(),
        _webhook_secret(),
        cases.connector_rest(),
        _secret("erp", "token"),
        cases.integration(),
    )
    assert _problems(path) == []


def test_a_connector_secret_missing_unlabelled_or_without_the_key_is_named(tmp_path: Path) -> None:
    wms = cases.connector_rest("wms")
    wms["spec"]["rest"]["auth"]["bearer"]["tokenRef"] = {"name": "wms", "key": "token"}
    shop = cases.connector_rest("shop")
    shop["spec"]["rest"]["auth"]["bearer"]["tokenRef"] = {"name": "shop", "key": "token"}
    path = _write(tmp_path, cases.connector_rest(), wms, _secret("wms", "token", labelled=False), shop, _secret("shop"))
    found = _problems(path)
    field = "spec.rest.auth.bearer.tokenRef"
    assert [(owner, at) for owner, at, _ in found] == [
        ("Connector/erp", field),
        ("Connector/wms", field),
        ("Connector/shop", field),
    ]
    assert "names Secret 'erp', which none of the given manifests defines" in found[0][2]
    assert f'not labelled {CREDENTIALS_LABEL}: "true"' in found[1][2]
    assert found[2][2] == "Secret 'shop' has no key 'token'"


def test_a_connector_of_the_wrong_type_is_named_where_it_is_referenced(tmp_path: Path) -> None:
    obj = cases.integration()
    obj["spec"]["steps"][2]["call"]["connector"] = "crm"
    path = _write(tmp_path, cases.connector_webhook(), _webhook_secret(), obj)
    assert _problems(path) == [
        ("Integration/onboard", "spec.steps[2].call.connector", "Connector 'crm' is Webhook; calls need REST")
    ]


def test_a_reconcile_connector_must_be_given_too(tmp_path: Path) -> None:
    policy = cases.syncpolicy()
    policy["spec"]["reconcile"] = {
        "left": {"connector": "erp", "path": "/api/resource/Customer", "keyField": "tax_id"},
        "right": {"connector": "shop", "path": "/customers", "keyField": "tax_id"},
    }
    path = _write(tmp_path, cases.connector_rest(), _secret("erp", "token"), policy)
    ((owner, field, message),) = _problems(path)
    assert (owner, field) == ("SyncPolicy/customer", "spec.reconcile.right.connector")
    assert "names Connector 'shop'" in message


def test_references_match_within_a_namespace_only(tmp_path: Path) -> None:
    erp = cases.connector_rest()
    erp["metadata"]["namespace"] = "other"
    flow = cases.integration()
    flow["metadata"]["namespace"] = "sales"
    path = _write(tmp_path, cases.connector_webhook(), _webhook_secret(), erp, _secret("erp", "token"), flow)
    ((owner, field, message),) = _problems(path)
    assert (owner, field) == ("Integration/onboard", "spec.steps[2].call.connector")
    assert "none of the given manifests defines in namespace sales" in message


def test_external_kinds_are_left_to_the_cluster_on_the_command_line(tmp_path: Path) -> None:
    path = _write(tmp_path, cases.integration())
    refused = CliRunner().invoke(main, ["validate", "-f", str(path)])
    assert refused.exit_code == 1
    assert "spec.trigger.connector.name: names Connector 'crm'" in refused.stdout
    accepted = CliRunner().invoke(main, ["validate", "-f", str(path), "--external", "Connector"])
    assert accepted.exit_code == 0, accepted.output
    assert "1 manifest(s) valid" in accepted.output


def test_files_with_nothing_to_check_or_not_text_are_one_line_each_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (tmp_path / "random.yaml").write_bytes(bytes(range(256)) * 4)
    nothing = CliRunner().invoke(main, ["validate", "-f", str(tmp_path / "configmap.yaml")])
    assert nothing.exit_code == 1
    assert "no Onceflow manifests" in nothing.output
    binary = CliRunner().invoke(main, ["validate", "-f", str(tmp_path / "random.yaml")])
    assert binary.exit_code == 1
    assert "random.yaml:<file>/-: is not UTF-8 text" in binary.output
    assert "Traceback" not in binary.output + nothing.output


def test_erp_connector_examples_pass_validate_on_their_own() -> None:
    # docs/connecting-erps.md: one Connector per ERP, each with its Secret, valid without the rest.
    folder = ROOT / "examples" / "erps"
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    assert names == ["business-central", "erpnext", "netsuite", "odoo", "sap-business-one"]
    for path in sorted(folder.glob("*.yaml")):
        result = CliRunner().invoke(main, ["validate", "-f", str(path)])
        assert result.exit_code == 0, f"{path.name}: {result.output}"


def test_a_session_login_reading_a_secret_it_does_not_name_is_refused() -> None:
    doc = yaml.safe_load_all((ROOT / "examples" / "erps" / "sap-business-one.yaml").read_text())
    connector = next(d for d in doc if d["kind"] == "Connector")
    connector["spec"]["rest"]["auth"]["sessionLogin"]["body"] = "{'UserName': secrets.usr}"
    (problem,) = validate_manifest(connector, "b1.yaml")
    assert problem.path == "spec.rest.auth.sessionLogin.body"
    assert "reads secrets.usr, which sessionLogin.secrets does not name" in problem.message


def test_a_connector_header_carrying_credentials_is_refused_by_the_schema_rule() -> None:
    connector = cases.connector_rest()
    connector["spec"]["rest"]["headers"] = {"Cookie": "sid=abc", "Accept": "application/json"}
    (problem,) = validate_manifest(connector, "erp.yaml")
    assert problem.path == "spec.rest.headers"
    assert "credentials go in rest.auth" in problem.message


def test_a_session_login_expression_that_iterates_is_refused_and_stalls_the_integrations_that_use_it() -> None:
    from onceflow_operator.api import Connector, Integration
    from onceflow_operator.compiler.planner import InvalidSpec, plan_from_integration

    docs = list(yaml.safe_load_all((ROOT / "examples" / "erps" / "odoo.yaml").read_text()))
    connector = next(d for d in docs if d["kind"] == "Connector")
    connector["spec"]["rest"]["auth"]["sessionLogin"]["session"] = "response.result.filter(x, x.uid > 0)[0].uid"
    (problem,) = validate_manifest(connector, "odoo.yaml")
    assert problem.path == "spec.rest.auth.sessionLogin.session"
    assert "iterates" in problem.message
    integration = Integration.model_validate(next(d for d in docs if d["kind"] == "Integration"))
    with pytest.raises(InvalidSpec) as stalled:
        plan_from_integration(integration, {"odoo": Connector.model_validate(connector)}, None, namespace="sales")
    (where,) = stalled.value.problems
    assert where.path == "spec.steps[0].call.connector"
    assert "Connector 'odoo': spec.rest.auth.sessionLogin.session: iterates" in where.message
