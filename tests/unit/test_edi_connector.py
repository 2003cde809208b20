"""The EDI Connector as users write it: docs/edi.md's partner validates offline and compiles into the poller's plan."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from onceflow_operator.api import Connector
from onceflow_operator.build.objects import build_edi_deployment, plan_secrets
from onceflow_operator.cli import main
from onceflow_operator.compiler.edi import edi_partner_plan
from onceflow_operator.compiler.validation import validate_manifest

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
