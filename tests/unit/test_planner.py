from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.compiler.planner import InvalidSpec, gateway_plan, plan_from_integration
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.plan import PLAN_VERSION, Plan

ROOT = Path(__file__).resolve().parents[2]


def load_examples() -> tuple[dict[str, Connector], dict[str, SyncPolicy], list[Integration]]:
    files = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "fixtures" not in p.parts)
    docs = [d for p in files for d in yaml.safe_load_all(p.read_text()) if d]
    connectors = {d["metadata"]["name"]: Connector.model_validate(d) for d in docs if d["kind"] == "Connector"}
    policies = {d["metadata"]["name"]: SyncPolicy.model_validate(d) for d in docs if d["kind"] == "SyncPolicy"}
    integrations = [Integration.model_validate(d) for d in docs if d["kind"] == "Integration"]
    return connectors, policies, integrations


def test_every_example_integration_compiles_to_a_plan_that_round_trips() -> None:
    connectors, policies, integrations = load_examples()
    assert len(integrations) >= 5
    for integration in integrations:
        ref = integration.spec.sync_policy_ref
        plan = plan_from_integration(integration, connectors, policies[ref.name] if ref else None, namespace="sales")
        again = Plan.model_validate(json.loads(plan.to_json()))
        assert again == plan
        assert plan.plan_version == PLAN_VERSION
        assert "sandbox-secret" not in plan.to_json()


def test_plan_names_follow_the_nats_layout() -> None:
    connectors, policies, integrations = load_examples()
    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    plan = plan_from_integration(onboarding, connectors, policies["customer"], namespace="sales")
    assert plan.nats.subject == "onceflow.sales.in.crm-webhooks.customer.approved"
    assert plan.nats.consumer == "sales_customer-onboarding"
    assert plan.nats.exceptions_subject == "onceflow.sales.exceptions.customer-onboarding"
    assert plan.nats.kv_bucket == "onceflow-keys-sales"
    assert plan.source == "crm-webhooks"
    assert plan.error_policy.backoff == (1.0, 10.0, 60.0)
    invoice = next(i for i in integrations if i.metadata["name"] == "invoice-to-accounting")
    assert (
        plan_from_integration(invoice, connectors, policies["invoice"], namespace="sales").nats.stream
        == "ONCEFLOW_EVENTS"
    )


def test_revision_changes_with_the_workflow_not_with_replicas() -> None:
    connectors, policies, integrations = load_examples()
    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    base = plan_from_integration(onboarding, connectors, policies["customer"], namespace="s").revision
    scaled = onboarding.model_copy(update={"spec": onboarding.spec.model_copy(update={"replicas": 7})})
    assert plan_from_integration(scaled, connectors, policies["customer"], namespace="s").revision == base
    steps = list(onboarding.spec.steps)[:-1]
    shorter = onboarding.model_copy(update={"spec": onboarding.spec.model_copy(update={"steps": steps})})
    assert plan_from_integration(shorter, connectors, policies["customer"], namespace="s").revision != base


def test_missing_connector_and_policy_are_named_with_their_field_paths() -> None:
    connectors, _, integrations = load_examples()
    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    without_wms = {k: v for k, v in connectors.items() if k != "wms"}
    with pytest.raises(InvalidSpec) as caught:
        plan_from_integration(onboarding, without_wms, None, namespace="sales")
    paths = {p.path for p in caught.value.problems}
    assert "spec.steps[5].call.connector" in paths
    assert "spec.syncPolicyRef.name" in paths
    assert "Connector 'wms' does not exist in sales" in str(caught.value)


def test_gateway_plan_of_a_webhook_connector() -> None:
    connectors, _, _ = load_examples()
    plan = gateway_plan(connectors["shop-webhooks"], namespace="sales")
    assert plan.signature.scheme == "shopify"
    assert plan.event_header == "X-Shopify-Topic"
    assert plan.subject_prefix == "onceflow.sales.in.shop-webhooks"


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("1m30s", 90), ("2h", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_is_named() -> None:
    with pytest.raises(ValueError, match="'5 minutes' is not a duration"):
        parse_duration("5 minutes")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            {"planVersion": "onceflow.io/plan/v99"},
            "planVersion 'onceflow.io/plan/v99'; this runner understands",
        ),
        ({"planVersion": PLAN_VERSION, "namespace": "x"}, "is invalid at"),
    ],
)
def test_runner_refuses_unknown_or_invalid_plan_with_exit_code_2(
    tmp_path: Path, content: dict[str, str], says: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(content))
    proc = subprocess.run(
        [sys.executable, "-m", "onceflow_operator", "runner", "--plan", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runner_does_not_import_kopf_or_kubernetes() -> None:
    code = "import sys, onceflow_runner.runner, onceflow_runner.gateway.server; print(sorted(m for m in sys.modules if m.split('.')[0] in {'kopf','kubernetes','onceflow_operator'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_lanes_are_deployments_named_by_lane_that_select_no_revision() -> None:
    from onceflow_operator.build.objects import build_runner_deployment
    from onceflow_runner.adapters.natsio import consumer_config

    connectors, policies, integrations = load_examples()
    integration = next(i for i in integrations if i.spec.strategy.type == "Canary")
    plan = plan_from_integration(integration, connectors, policies.get("customer"), namespace="sales")
    owner = {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": plan.integration, "uid": "u"},
    }
    main, canary = (
        build_runner_deployment(
            plan, "cm", owner, image="i", nats_url="n", replicas=2, secrets_checksum="c", lane=lane, strategy="Recreate"
        )
        for lane in ("main", "canary")
    )
    assert (main["metadata"]["name"], canary["metadata"]["name"]) == (
        f"{plan.integration}-runner",
        f"{plan.integration}-canary",
    )
    assert main["spec"]["strategy"] == {"type": "Recreate"}
    # The selector names the lane only, so a lane can switch revision in place (selectors are immutable).
    assert main["spec"]["selector"]["matchLabels"] == {
        "onceflow.io/integration": plan.integration,
        "onceflow.io/lane": "main",
    }
    assert canary["spec"]["template"]["metadata"]["labels"]["onceflow.io/revision"] == plan.revision
    assert canary["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--lane", "canary"]
    main_consumer, canary_consumer = consumer_config(plan), consumer_config(plan, "canary", start_sequence=42)
    assert canary_consumer.durable_name == f"{main_consumer.durable_name}_canary"
    assert (canary_consumer.opt_start_seq, main_consumer.opt_start_seq) == (42, None)
    assert main_consumer.filter_subjects == [plan.nats.subject, f"onceflow.sales.in._rollout.{plan.integration}"]
    wildcard = plan.model_copy(update={"nats": plan.nats.model_copy(update={"subject": "onceflow.sales.in.>"})})
    assert consumer_config(wildcard).filter_subjects == ["onceflow.sales.in.>"]  # already covers the markers


def test_plan_validation_refuses_a_suggestion_on_a_credit_field_naming_its_path() -> None:
    connectors, policies, integrations = load_examples()
    integration = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    doc = integration.model_dump(by_alias=True, exclude_none=True, mode="json")
    check = next(s for s in doc["spec"]["steps"] if s["name"] == "checkCustomer")
    check["validate"]["rules"][0]["suggest"] = {"field": "data.credit_limit", "value": "250000.0"}
    with pytest.raises(InvalidSpec) as refused:
        plan_from_integration(Integration.model_validate(doc), connectors, policies.get("customer"), namespace="n")
    assert "spec.steps[1].validate.rules[0].suggest.field" in str(refused.value)
    assert "suggestions never change those" in str(refused.value)
    check["validate"]["rules"][0]["suggest"] = {"field": "data.address.country", "value": "'DE'"}
    plan = plan_from_integration(Integration.model_validate(doc), connectors, policies.get("customer"), namespace="n")
    validate = next(s for s in plan.steps if s.name == "checkCustomer").validate_
    assert validate is not None
    assert validate.suggestions == ((0, "data.address.country", "'DE'"),)


def _with_subject(subject: str) -> Integration:
    _, _, integrations = load_examples()
    invoice = next(i for i in integrations if i.metadata["name"] == "invoice-to-accounting")
    doc = invoice.model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["spec"]["trigger"] = {"subject": subject}
    return Integration.model_validate(doc)


@pytest.mark.parametrize("subject", ["onceflow.finance.in.>", "onceflow.*.in.>", "onceflow.>", "onceflow.finance"])
def test_the_planner_refuses_a_trigger_subject_outside_the_integrations_namespace(subject: str) -> None:
    connectors, policies, _ = load_examples()
    with pytest.raises(InvalidSpec) as refused:
        plan_from_integration(_with_subject(subject), connectors, policies["invoice"], namespace="sales")
    (problem,) = refused.value.problems
    assert problem.path == "spec.trigger.subject"
    assert "outside this Integration's namespace 'sales'" in problem.message


def test_a_trigger_subject_relative_to_the_namespace_or_naming_it_is_planned_inside_it() -> None:
    connectors, policies, _ = load_examples()
    for subject in ("events.invoice.posted", "onceflow.sales.events.invoice.posted"):
        plan = plan_from_integration(_with_subject(subject), connectors, policies["invoice"], namespace="sales")
        assert plan.nats.subject == "onceflow.sales.events.invoice.posted"
        assert plan.nats.stream == "ONCEFLOW_EVENTS"


def test_validate_refuses_a_trigger_subject_of_another_namespace_than_the_one_applied_to() -> None:
    from onceflow_operator.compiler.validation import validate_manifest

    doc = _with_subject("onceflow.finance.events.invoice.posted").model_dump(by_alias=True, exclude_none=True)
    doc["metadata"].pop("namespace", None)
    assert validate_manifest(doc, "f.yaml") == []  # where it goes is not known yet: the operator checks it
    assert validate_manifest(doc, "f.yaml", namespace="finance") == []
    (problem,) = validate_manifest(doc, "f.yaml", namespace="sales")
    assert problem.path == "spec.trigger.subject"
    assert "outside this Integration's namespace 'sales'" in problem.message
    doc["metadata"]["namespace"] = "sales"
    assert [p.path for p in validate_manifest(doc, "f.yaml")] == ["spec.trigger.subject"]
