"""The EDI Connector as users write it: docs/edi.md's partner validates offline and compiles into the poller's plan."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.api import Connector, Integration
from onceflow_operator.build.objects import build_edi_deployment, plan_secrets
from onceflow_operator.cli import main
from onceflow_operator.compiler.edi import edi_partner_plan
from onceflow_operator.compiler.planner import InvalidSpec, plan_from_integration
from onceflow_operator.compiler.validation import validate_manifest
from onceflow_runner.contract.plan import Plan

ROOT = Path(__file__).resolve().parents[2]


def documented() -> list[dict[str, Any]]:
    block = re.search(r"```yaml\n(.*?)```", (ROOT / "docs" / "edi.md").read_text(), re.S)
    assert block is not None
    return [d for d in yaml.safe_load_all(block.group(1)) if d]


def test_the_documented_partner_passes_onceflow_validate(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump_all(documented()))
    result = CliRunner().invoke(main, ["validate", "-f", str(path), "-f", str(ROOT / "examples" / "common")])
    assert result.exit_code == 0, result.output


def test_the_documented_connector_compiles_into_the_poller_plan_and_deployment() -> None:
    doc = next(d for d in documented() if d["kind"] == "Connector")
    plan = edi_partner_plan(Connector.model_validate(doc), namespace="sales")
    assert plan.envelope.partner.id == "ACMEBUY"
    assert plan.envelope.ours.application_code == "ONCEDIST"
    assert (plan.sftp.poll_seconds, plan.sftp.lease_seconds) == (30.0, 600.0)
    assert plan.sftp.known_hosts.key == "known_hosts"
    assert plan_secrets(plan) == ["acme-sftp"]
    owner = {"apiVersion": "onceflow.io/v1alpha1", "kind": "Connector", "metadata": {"name": "acme-edi", "uid": "u1"}}
    deployment = build_edi_deployment(
        plan,
        "acme-edi-edi-plan-x",
        owner,
        image="onceflow:dev",
        nats_url="nats://nats:4222",
        replicas=2,
        secrets_checksum="c",
    )
    assert deployment["metadata"]["name"] == "acme-edi-edi"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "edi-inbound"


def test_an_edi_connector_without_a_known_hosts_secret_is_refused_naming_the_field() -> None:
    doc = next(d for d in documented() if d["kind"] == "Connector")
    del doc["spec"]["edi"]["sftp"]["knownHostsRef"]
    problems = validate_manifest(doc, "acme.yaml")
    assert any("knownHostsRef" in p.path for p in problems), problems


def test_an_edi_connector_needs_its_edi_block() -> None:
    doc = next(d for d in documented() if d["kind"] == "Connector")
    del doc["spec"]["edi"]
    problems = validate_manifest(doc, "acme.yaml")
    assert any("type EDI an edi block" in p.message for p in problems), problems


def erp_connector() -> Connector:
    docs = yaml.safe_load_all((ROOT / "examples" / "common" / "erp.yaml").read_text())
    return Connector.model_validate(next(d for d in docs if d and d.get("kind") == "Connector"))


def documented_plans() -> dict[str, Plan]:
    docs = documented()
    connectors = {d["metadata"]["name"]: Connector.model_validate(d) for d in docs if d["kind"] == "Connector"}
    connectors["erp"] = erp_connector()
    return {
        d["metadata"]["name"]: plan_from_integration(Integration.model_validate(d), connectors, None, namespace="sales")
        for d in docs
        if d["kind"] == "Integration"
    }


def test_the_documented_send_edi_steps_compile_into_hand_overs_to_the_partner() -> None:
    plans = documented_plans()
    sent = {
        name: [(s.send_edi.connector, s.send_edi.document) for s in plan.steps if s.send_edi is not None]
        for name, plan in plans.items()
    }
    assert sent == {
        "acme-orders": [("acme-edi", "855")],
        "acme-ship-notices": [("acme-edi", "856")],
        "acme-invoices": [("acme-edi", "810")],
    }
    connector = Connector.model_validate(next(d for d in documented() if d["kind"] == "Connector"))
    partner = edi_partner_plan(connector, namespace="sales")
    assert partner.send == ("855", "856", "810")
    assert partner.acknowledgment_deadline_seconds == 86400.0


def test_send_edi_to_a_partner_that_does_not_send_the_document_or_to_a_rest_connector_is_refused() -> None:
    docs = documented()
    connector = next(d for d in docs if d["kind"] == "Connector")
    connector["spec"]["edi"]["send"] = ["855"]
    connectors = {"acme-edi": Connector.model_validate(connector), "erp": erp_connector()}
    invoices = next(d for d in docs if d["metadata"]["name"] == "acme-invoices")
    with pytest.raises(InvalidSpec) as caught:
        plan_from_integration(Integration.model_validate(invoices), connectors, None, namespace="sales")
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("spec.steps[1].sendEdi.document", "Connector 'acme-edi' does not send 810: add it to its spec.edi.send")
    ]
    invoices["spec"]["steps"][1]["sendEdi"]["connector"] = "erp"
    with pytest.raises(InvalidSpec) as caught:
        plan_from_integration(Integration.model_validate(invoices), connectors, None, namespace="sales")
    assert [p.path for p in caught.value.problems] == ["spec.steps[1].sendEdi.connector"]
    assert "sendEdi needs an EDI Connector" in caught.value.problems[0].message


def test_a_step_that_sets_send_edi_and_call_is_refused_by_the_exactly_one_rule() -> None:
    orders = next(d for d in documented() if d["metadata"]["name"] == "acme-orders")
    orders["spec"]["steps"][1]["call"] = orders["spec"]["steps"][0]["call"]
    problems = validate_manifest(orders, "acme.yaml")
    assert any("exactly one of" in p.message and "sendEdi" in p.message for p in problems), problems


def test_the_example_partner_is_the_documented_one() -> None:
    example = [d for d in yaml.safe_load_all((ROOT / "examples" / "edi-partner" / "partner.yaml").read_text()) if d]
    assert example == documented()
