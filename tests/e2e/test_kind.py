"""End to end on a kind cluster, driven by hack/kind-e2e.sh (needs Docker and internet).

NEVER run on the project's own machines (no Docker engine there); `make test` deselects the
`e2e` marker. The cluster has NATS (official chart), Onceflow (our chart, image built from the
Dockerfile) and the sandbox ERP in namespace `sandbox` (Service erp:8000).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from onceflow_operator.dev.controlplane import free_port
from tests.conftest import ROOT
from tests.integration.scenario import CRM_SECRET, crm_customer_event, dumps, signature_headers

pytestmark = pytest.mark.e2e
CONTEXT = os.environ.get("ONCEFLOW_E2E_CONTEXT", "kind-onceflow-e2e")


def kubectl(*args: str, stdin: str | None = None) -> str:
    cmd = ["kubectl", f"--context={CONTEXT}", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True, timeout=600).stdout


def wait_for(check: Any, within: float = 180.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(2)
    raise AssertionError(f"not within {within}s")


@contextlib.contextmanager
def port_forward(namespace: str, target: str, port: int) -> Iterator[int]:
    local = free_port()
    proc = subprocess.Popen(
        ["kubectl", f"--context={CONTEXT}", "-n", namespace, "port-forward", target, f"{local}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        yield local
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def namespace() -> str:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    for folder in ("examples/common", "examples/customer-onboarding"):
        kubectl("apply", "-n", name, "--server-side", "-f", str(ROOT / folder))
    kubectl(
        "patch",
        "-n",
        name,
        "connector",
        "erp",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"rest": {"baseURL": "http://erp.sandbox.svc:8000"}}}),
    )
    kubectl("wait", "-n", name, "--for=condition=Ready", "integration/customer-onboarding", "--timeout=300s")
    return name


def erp_customers_with(tax_id: str) -> list[dict[str, Any]]:
    """Ask the sandbox ERP itself, through its ERPNext-shaped list API."""
    with port_forward("sandbox", "svc/erp", 8000) as port:
        resp = httpx.get(
            f"http://127.0.0.1:{port}/api/resource/Customer",
            params={"filters": json.dumps([["tax_id", "=", tax_id]]), "fields": '["name", "tax_id"]'},
            headers={"Authorization": "token sandbox-key:sandbox-secret"},
            timeout=10,
        )
    return list(resp.json()["data"])


def test_signed_webhook_lands_in_the_sandbox_erp_once(namespace: str) -> None:
    tax_id = f"DE{uuid.uuid4().int % 10**9:09d}"
    body = dumps(crm_customer_event(tax_id, name=f"E2E {tax_id}"))
    with port_forward(namespace, "svc/crm-webhooks-gateway", 80) as port:
        for _ in range(2):  # the CRM retries: still one customer
            headers = signature_headers("standard-webhooks", CRM_SECRET, body, f"msg_{tax_id}")
            resp = httpx.post(
                f"http://127.0.0.1:{port}/crm", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            assert resp.status_code == 202, resp.text
    found = wait_for(lambda: erp_customers_with(tax_id))
    time.sleep(5)  # a late double would show now
    assert len(erp_customers_with(tax_id)) == len(found) == 1


def test_a_broken_canary_rolls_back_by_itself(namespace: str) -> None:
    live = json.loads(kubectl("get", "-n", namespace, "integration", "customer-onboarding", "-o", "json"))
    spec = live["spec"]
    create = next(s for s in spec["steps"] if s["name"] == "createInErp")
    create["call"]["path"] = '"/api/resource/NoSuchDoctype"'  # the ERP answers 404 -> exceptions -> analysis fails
    changed = {
        "apiVersion": live["apiVersion"],
        "kind": "Integration",
        "metadata": {"name": "customer-onboarding"},
        "spec": spec,
    }
    kubectl("apply", "-n", namespace, "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(changed))

    def aborted() -> dict[str, Any] | None:
        obj = json.loads(kubectl("get", "-n", namespace, "integration", "customer-onboarding", "-o", "json"))
        status = obj.get("status", {})
        return status if status.get("rollout", {}).get("abortedRevision") else None

    status = wait_for(aborted, within=900)
    assert status["phase"] == "Degraded"
