"""Scenario 1 through the whole control plane: kubectl apply of the examples -> operator ->
Deployments -> local executor runs them -> signed webhook -> sandbox ERP, exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.dev.executor import LocalExecutor
from tests.conftest import Kubectl
from tests.integration.scenario import (
    CRM_SECRET,
    Sandboxes,
    crm_customer_event,
    dumps,
    eventually,
    example_documents,
    sandbox_effects,
    signed_post,
)

pytestmark = pytest.mark.controlplane


def pointed_at(docs: list[dict[str, Any]], boxes: Sandboxes) -> list[dict[str, Any]]:
    urls = boxes.base_urls()
    for doc in docs:
        if doc.get("kind") == "Connector" and doc["metadata"]["name"] in urls:
            doc["spec"]["rest"]["baseURL"] = urls[doc["metadata"]["name"]]
    return docs


async def test_applied_examples_run_and_a_signed_webhook_lands_in_the_erp_once(
    kubectl: Kubectl, operator_running: None, executor: LocalExecutor, boxes: Sandboxes
) -> None:
    kubectl.apply(*pointed_at(example_documents("customer-onboarding"), boxes))
    await asyncio.to_thread(
        kubectl.run,
        "wait",
        "--for=condition=Ready",
        "integration/customer-onboarding",
        "connector/crm-webhooks",
        "--timeout=90s",
    )
    integration = kubectl.get("integration", "customer-onboarding")
    assert integration["status"]["phase"] == "Healthy"
    assert integration["status"]["revision"] == 1
    port = executor.port_of(kubectl.namespace, "crm-webhooks-gateway")
    tax_id = f"DE{uuid.uuid4().int % 10**9:09d}"
    async with httpx.AsyncClient() as client:
        for _ in range(2):
            resp = await signed_post(
                client,
                f"http://127.0.0.1:{port}/crm",
                "standard-webhooks",
                CRM_SECRET,
                dumps(crm_customer_event(tax_id)),
                "msg-e2e",
            )
            assert resp.status_code == 202, resp.text
    await eventually(lambda: sandbox_effects(boxes.shop), within=30)
    assert await sandbox_effects(boxes.erp) == {f"customer/{tax_id}/createInErp": 1}
    figures = await eventually(
        lambda: kubectl.get("integration", "customer-onboarding")["status"].get("figures", {}).get("processed"),
        within=30,
    )
    assert figures == 1
    overview = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["status", "-n", kubectl.namespace, "-o", "json", "--kubeconfig", str(kubectl.kubeconfig)],
    )
    assert overview.exit_code == 0, overview.output
    rows = {(r["kind"], r["name"]): r for r in json.loads(overview.output)}
    assert rows[("Integration", "customer-onboarding")]["processed"] == 1
    assert rows[("Integration", "customer-onboarding")]["ready"] == "True"
    assert rows[("Connector", "crm-webhooks")]["ready"] == "True"
    table = kubectl.run("get", "onceflow").stdout
    assert "customer-onboarding" in table
    described = json.loads(kubectl.run("get", "deployment", "-o", "json").stdout)["items"]
    assert {d["metadata"]["labels"]["app.kubernetes.io/name"] for d in described} == {
        "onceflow-runner",
        "onceflow-gateway",
    }
