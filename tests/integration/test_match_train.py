"""`onceflow match train --apply` and `match eval` against a real kube-apiserver, driven like a user would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_runner.testing.customers import candidate_pairs, generate_customers
from tests import cases
from tests.conftest import Kubectl
from tests.integration.scenario import Sandboxes, example_documents

pytestmark = pytest.mark.controlplane


def test_trained_m_u_are_written_into_the_policy_the_api_server_accepts_and_eval_reads_them(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    policy = cases.syncpolicy("customers")
    policy["spec"]["matching"] = {"onCertainMatch": "Update", "thresholds": {"match": 0.98, "review": 0.5}}
    kubectl.apply(policy)
    data = generate_customers(43, originals=600)
    records = tmp_path / "sample.json"
    records.write_text(json.dumps(data.records))
    flags = ["--kubeconfig", str(kubectl.kubeconfig), "-n", kubectl.namespace]

    result = CliRunner().invoke(main, ["match", "train", "customers", "--records", str(records), "--apply", *flags])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("syncpolicy.onceflow.io/customers matching trained")

    matching = kubectl.get("syncpolicy", "customers")["spec"]["matching"]
    assert matching["onCertainMatch"] == "Update"  # what the user wrote stays
    assert matching["thresholds"] == {"match": 0.98, "review": 0.5}
    assert [f["field"] for f in matching["fields"]][:3] == ["name", "tax_id", "contact.first_name"]
    assert 0 < matching["priorLinkRate"] < 0.01

    truth = data.true_pairs()
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"left": data.records[i], "right": data.records[j], "same": (i, j) in truth}) + "\n"
            for i, j in sorted(candidate_pairs(data.records))
        )
    )
    result = CliRunner().invoke(main, ["match", "eval", "customers", "--labels", str(labels), "-o", "json", *flags])
    assert result.exit_code == 0, result.output
    [figures] = json.loads(result.stdout)
    assert figures["precision"] >= 0.98
    assert figures["recall"] >= 0.95


def test_a_policy_that_is_not_there_is_one_line(kubectl: Kubectl, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"left": {"name": "a"}, "right": {"name": "b"}, "same": False}) + "\n")
    flags = ["--kubeconfig", str(kubectl.kubeconfig), "-n", kubectl.namespace]
    result = CliRunner().invoke(main, ["match", "eval", "nobody", "--labels", str(labels), *flags])
    assert result.exit_code == 1
    assert f"SyncPolicy nobody not found in namespace {kubectl.namespace}" in result.stderr


async def test_train_reads_the_sample_through_the_connector_every_page(boxes: Sandboxes, tmp_path: Path) -> None:
    """--from left: the reconcile block's ERP list, paged (500 a page here), with the Connector's token."""
    data = generate_customers(47, originals=450)
    for n, rec in enumerate(data.records):
        boxes.erp.seed("Customer", {**rec, "name": f"CUST-{n:05d}", "customer_name": rec["name"]})
    urls = boxes.base_urls()
    docs = [d for d in example_documents("customer-onboarding") if d["kind"] in {"Secret", "Connector", "SyncPolicy"}]
    for doc in docs:
        if doc["kind"] == "Connector" and doc["metadata"]["name"] in urls:
            doc["spec"]["rest"]["baseURL"] = urls[doc["metadata"]["name"]]
    manifests = tmp_path / "docs.yaml"
    manifests.write_text(yaml.safe_dump_all(docs))
    argv = ["match", "train", "customer", "-f", str(manifests), "--from", "left", "--field", "name=customer_name"]
    result = await asyncio.to_thread(CliRunner().invoke, main, [*argv, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert f"random pairs of {len(data.records)} records" in result.stderr
    assert len(data.records) > 500  # more than one page was read
    fields = json.loads(result.stdout)["spec"]["matching"]["fields"]
    name_exact = fields[0]["levels"][0]
    assert fields[0]["field"] == "name"
    assert name_exact["m"] > 0.3
    assert name_exact["u"] < 0.01


async def test_from_a_side_whose_connector_is_missing_is_one_line(tmp_path: Path) -> None:
    policy = [d for d in example_documents("customer-onboarding") if d["kind"] == "SyncPolicy"]
    manifests = tmp_path / "docs.yaml"
    manifests.write_text(yaml.safe_dump_all(policy))
    argv = ["match", "train", "customer", "-f", str(manifests), "--from", "right"]
    result = await asyncio.to_thread(CliRunner().invoke, main, argv)
    assert result.exit_code == 1
    assert "spec.reconcile.right.connector: REST Connector 'shop-api' does not exist" in result.stderr
