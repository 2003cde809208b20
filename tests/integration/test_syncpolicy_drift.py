"""A SyncPolicy's drift check: the operator's CronJob, its command run as the Job would, the
result in the SyncPolicy's status."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from onceflow_operator.dev.natsserver import NatsServer
from tests.conftest import Kubectl
from tests.integration.scenario import Sandboxes, eventually, example_documents

pytestmark = pytest.mark.controlplane


def run_job_locally(kubectl: Kubectl, cronjob: dict, nats_url: str, folder: Path) -> dict:  # type: ignore[type-arg]
    """Do what the Job's pod would: mount the plan and Secrets, run the container's command."""
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = list(pod["containers"][0]["args"])
    for volume in pod["volumes"]:
        if "configMap" in volume:
            data = kubectl.get("configmap", volume["configMap"]["name"])["data"]
            (folder / "plan.json").write_text(data["plan.json"])
        if "secret" in volume:
            secret = kubectl.get("secret", volume["secret"]["secretName"])
            target = folder / "secrets" / volume["secret"]["secretName"]
            target.mkdir(parents=True)
            for key, value in secret["data"].items():
                (target / key).write_bytes(base64.b64decode(value))
    args[args.index("--plan") + 1] = str(folder / "plan.json")
    args[args.index("--nats") + 1] = nats_url
    args[args.index("--secrets-dir") + 1] = str(folder / "secrets")
    proc = subprocess.run(
        [sys.executable, "-m", "onceflow_operator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


async def test_drift_between_erp_and_shop_reaches_the_syncpolicy_status(
    kubectl: Kubectl, operator_running: None, nats_server: NatsServer, boxes: Sandboxes, tmp_path: Path
) -> None:
    for name, tax_id, email in (("Acme", "DE1", "a@acme.test"), ("Bolt", "DE2", "b@bolt.test")):
        boxes.erp.seed("Customer", {"name": name, "customer_name": name, "tax_id": tax_id, "email_id": email})
    async with httpx.AsyncClient(base_url=boxes.shop.url) as shop:
        await shop.post("/customers", json={"tax_id": "DE1", "email_id": "changed@acme.test"})
        await shop.post("/customers", json={"tax_id": "DE3", "email_id": "c@cog.test"})
    urls = boxes.base_urls()
    docs = [d for d in example_documents("customer-onboarding") if d["kind"] in {"Secret", "Connector", "SyncPolicy"}]
    for doc in docs:
        if doc["kind"] == "Connector" and doc["metadata"]["name"] in urls:
            doc["spec"]["rest"]["baseURL"] = urls[doc["metadata"]["name"]]
    kubectl.apply(*docs)
    cronjob = await eventually(
        lambda: json.loads(
            kubectl.run("get", "cronjob", "customer-drift-check", "-o", "json", check=False).stdout or "null"
        ),
        within=30,
    )
    assert cronjob["spec"]["schedule"] == "15 * * * *"
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    result = await asyncio.to_thread(run_job_locally, kubectl, cronjob, nats_server.url, tmp_path)
    assert (result["missingLeft"], result["missingRight"], result["mismatched"], result["total"]) == (1, 1, 1, 3)
    drift = await eventually(lambda: kubectl.get("syncpolicy", "customer").get("status", {}).get("drift"), within=30)
    assert drift["total"] == 3
    assert drift["mismatched"] == 1
    row = kubectl.run("get", "syncpolicy", "customer").stdout.splitlines()[1].split()
    assert row[:4] == ["customer", "customer", "True", "3"]
