"""Onceflow synced from Git by a real GitOps controller: Flux's source-controller and
kustomize-controller (built from the Go module proxy) against the test API server, a local
repository served over smart HTTP, the operator, the local executor and the sandboxes.

Flux judges health with kstatus (`wait: true`): an Integration is healthy when its
`status.observedGeneration` matches and neither `Reconciling` nor `Stalled` is true; `Stalled`
makes it Failed. The test proves what docs/gitops.md promises:

a) a commit adding the customer-onboarding example is applied and the Kustomization turns Ready;
b) a commit whose canary cannot pass its analysis leaves the Kustomization not Ready, through
   Flux's own health check;
c) `git revert` of that commit brings back the stable revision under its old number;
d) the operator never fights the sync: Flux's applied revision, the Integration's generation and
   resourceVersion stay put across several reconciles of both controllers, and server-side apply
   shows Flux owning spec and the operator only status.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from onceflow_operator.api.names import FIELD_MANAGER
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import LocalExecutor
from tests.conftest import ROOT, Kubectl
from tests.integration.flux_harness import FluxControllers, GitRepo, find_flux, reconcile_count
from tests.integration.scenario import (
    CRM_SECRET,
    Sandboxes,
    crm_customer_event,
    dumps,
    eventually,
    signed_post,
)

pytestmark = pytest.mark.controlplane

FLUX_MANAGER = "kustomize-controller"
#: The operator writes status as itself, and through Kopf's handler patch (status, its finalizer
#: and progress annotations), which the API server names after Kopf's user agent.
OPERATOR_MANAGERS = {FIELD_MANAGER, "kopf"}
KUSTOMIZATION = "onceflow"
FLUX_CRDS = ("gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io")


@pytest.fixture(scope="module")
def flux(control_plane: ControlPlane, admin_kubectl: Kubectl) -> Path:
    """The Flux binaries and their CRDs, installed once for this module."""
    folder = find_flux()
    admin_kubectl.run("apply", "--server-side", "-f", str(folder / "crds"))
    admin_kubectl.run("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in FLUX_CRDS))
    return folder


@pytest.fixture
def flux_controllers(flux: Path, control_plane: ControlPlane, tmp_path: Path) -> Iterator[FluxControllers]:
    with FluxControllers(flux, control_plane.kubeconfig, tmp_path / "flux") as controllers:
        yield controllers


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[GitRepo]:
    with GitRepo(tmp_path / "git") as served:
        yield served


def onboarding_manifests(boxes: Sandboxes) -> dict[str, list[dict[str, Any]]]:
    """The customer-onboarding example as a repository holds it, pointed at the sandboxes.

    Only the canary's analysis is shortened (readings every 2s from the start, at half the
    records) so a broken revision is judged in seconds rather than the example's minutes.
    """
    urls = boxes.base_urls()
    files: dict[str, list[dict[str, Any]]] = {}
    for folder in ("common", "customer-onboarding"):
        for path in sorted((ROOT / "examples" / folder).glob("*.yaml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            for doc in docs:
                if doc.get("kind") == "Connector" and doc["metadata"]["name"] in urls:
                    doc["spec"]["rest"]["baseURL"] = urls[doc["metadata"]["name"]]
                if doc.get("kind") == "Integration":
                    canary = doc["spec"]["strategy"]["canary"]
                    canary["steps"][0] = {"setWeight": 50}
                    metric = canary["steps"][1]["analysis"]["metrics"][0]
                    metric.update(initialDelay="0s", interval="2s", count=3, minRecords=2)
            files[f"{folder}/{path.name}"] = docs
    files["kustomization.yaml"] = [
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": sorted(files)}
    ]
    return files


def broken(files: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The Integration with a createInErp body the ERP refuses (no customer_name): every canary
    record becomes an exception, so the error-ratio analysis cannot pass."""
    name = "customer-onboarding/integration.yaml"
    docs = copy.deepcopy(files[name])
    for step in docs[0]["spec"]["steps"]:
        if step["name"] == "createInErp":
            step["call"]["body"] = '{"customer_type": "Company", "tax_id": record.tax_id}'
    return {name: docs}


def flux_objects(namespace: str, url: str) -> list[dict[str, Any]]:
    """A GitRepository on the served repository and a Kustomization that waits for health."""
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": KUSTOMIZATION, "namespace": namespace},
            "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1h", "timeout": "30s"},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": KUSTOMIZATION, "namespace": namespace},
            "spec": {
                "sourceRef": {"kind": "GitRepository", "name": KUSTOMIZATION},
                "path": "./",
                "targetNamespace": namespace,
                "prune": True,
                "wait": True,
                "interval": "2s",
                "retryInterval": "2s",
                "timeout": "90s",
            },
        },
    ]


async def get(kubectl: Kubectl, resource: str, name: str) -> dict[str, Any]:
    """The object as JSON, managedFields included (kubectl hides them by default)."""
    proc = await asyncio.to_thread(kubectl.run, "get", resource, name, "-o", "json", "--show-managed-fields")
    obj: dict[str, Any] = json.loads(proc.stdout)
    return obj


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


async def fetch_now(kubectl: Kubectl) -> None:
    """What `flux reconcile source git` does: ask source-controller to fetch at once."""
    stamp = uuid.uuid4().hex
    await asyncio.to_thread(
        kubectl.run,
        "annotate",
        "--overwrite",
        f"gitrepository/{KUSTOMIZATION}",
        f"reconcile.fluxcd.io/requestedAt={stamp}",
    )


async def kustomization_when(kubectl: Kubectl, sha: str, ready: str, within: float) -> dict[str, Any]:
    """The Kustomization once it has acted on commit `sha` and its Ready condition is `ready`."""

    async def probe() -> dict[str, Any] | None:
        ks = await get(kubectl, "kustomization", KUSTOMIZATION)
        status = ks.get("status") or {}
        attempted = status.get("lastAttemptedRevision", "")
        acted = attempted.endswith(sha) and condition(ks, "Ready").get("status") == ready
        return ks if acted and status.get("observedGeneration") == ks["metadata"]["generation"] else None

    result: dict[str, Any] = await eventually(probe, within=within, interval=0.5)
    return result


def operator_reconciles(kind: str) -> float:
    """Reconciles the in-process operator has finished for `kind` (any outcome)."""
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "onceflow_operator_reconciles":
            total += sum(s.value for s in family.samples if s.name.endswith("_total") and s.labels["kind"] == kind)
    return total


async def send_customers(port: int, count: int) -> int:
    """Signed CRM webhooks for `count` distinct customers through the gateway; returns the accepted."""
    accepted = 0
    async with httpx.AsyncClient() as client:
        for i in range(count):
            tax_id = f"DE{uuid.uuid4().int % 10**9:09d}"
            event = crm_customer_event(
                tax_id,
                name=f"Customer {tax_id}",
                address={"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": f"{10000 + i}", "country": "DE"},
            )
            resp = await signed_post(
                client, f"http://127.0.0.1:{port}/crm", "standard-webhooks", CRM_SECRET, dumps(event), f"msg-{tax_id}"
            )
            accepted += resp.status_code == 202
            await asyncio.sleep(0.1)
    return accepted


async def test_flux_syncs_onceflow_from_git_judges_health_reverts_and_never_fights(
    kubectl: Kubectl,
    operator_running: None,
    executor: LocalExecutor,
    boxes: Sandboxes,
    flux_controllers: FluxControllers,
    repo: GitRepo,
) -> None:
    namespace = kubectl.namespace
    files = onboarding_manifests(boxes)
    first = repo.commit("Add customer onboarding", files)
    kubectl.apply(*flux_objects(namespace, repo.url))

    # a) the example is applied from Git and the Kustomization is Ready once kstatus says healthy.
    try:
        ks = await kustomization_when(kubectl, first, "True", 150)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{flux_controllers.logs()}") from None
    assert condition(ks, "Healthy")["status"] == "True"
    integration = await get(kubectl, "integration", "customer-onboarding")
    assert condition(integration, "Ready")["status"] == "True"
    assert integration["status"]["phase"] == "Healthy"
    assert integration["status"]["revision"] == 1
    stable = integration["status"]["stableRevision"]
    assert integration["status"]["observedGeneration"] == integration["metadata"]["generation"]

    # d) no diff loop: several reconciles of each controller change nothing.
    await assert_no_fight(kubectl, flux_controllers, ks["status"]["lastAppliedRevision"])

    # b) a commit whose canary cannot pass: Flux's own health check reports it.
    second = repo.commit("Send customers to the ERP without a name", broken(files))
    await fetch_now(kubectl)
    port = executor.port_of(namespace, "crm-webhooks-gateway")

    async def canary_started() -> bool:
        status = (await get(kubectl, "integration", "customer-onboarding"))["status"]
        return bool(status.get("currentRevision")) and status["currentRevision"] != stable

    await eventually(canary_started, within=60, interval=0.5)
    sending = asyncio.create_task(send_customers(port, 400))
    try:
        degraded = await kustomization_when(kubectl, second, "False", 150)
    finally:
        sending.cancel()
    integration = await get(kubectl, "integration", "customer-onboarding")
    assert integration["status"]["phase"] == "Degraded", integration["status"]
    assert condition(integration, "Stalled")["status"] == "True"
    health = condition(degraded, "Healthy")
    assert health["status"] == "False", health
    assert "Integration" in health["message"], health
    # Flux keeps the last revision that was applied *and* healthy: the stable commit.
    assert degraded["status"]["lastAppliedRevision"].endswith(first)
    assert degraded["status"]["lastAttemptedRevision"].endswith(second)

    # c) git revert: the stable revision again, under its old number, and Flux healthy again.
    third = repo.revert(second)
    await fetch_now(kubectl)
    ks = await kustomization_when(kubectl, third, "True", 120)
    integration = await get(kubectl, "integration", "customer-onboarding")
    status = integration["status"]
    assert (status["currentRevision"], status["revision"], status["phase"]) == (stable, 1, "Healthy")
    assert condition(ks, "Healthy")["status"] == "True"
    # The broken canary's records still settle into figures now, so status may still be written:
    # here only what Flux or a spec writer would move is held still.
    await assert_no_fight(kubectl, flux_controllers, ks["status"]["lastAppliedRevision"], status_quiet=False)


def flux_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """Flux's server-side apply entry in managedFields (its time moves when it applies again)."""
    return next(e for e in obj["metadata"]["managedFields"] if e["manager"] == FLUX_MANAGER)


async def assert_no_fight(
    kubectl: Kubectl, flux: FluxControllers, applied: str, rounds: int = 3, *, status_quiet: bool = True
) -> None:
    """Over `rounds` reconciles of the Kustomization and of every Integration, nothing moves, and
    server-side apply shows Flux owning spec and the operator only status (and its bookkeeping).

    `status_quiet`: the resourceVersion must hold too (nothing at all was written); otherwise
    the generation and Flux's own field-manager entry must."""
    before = await get(kubectl, "integration", "customer-onboarding")
    flux_start = reconcile_count(flux.metrics("kustomize-controller"), "kustomization")
    integrations = len((await asyncio.to_thread(kubectl.run, "get", "integrations", "-A", "-o", "name")).stdout.split())
    operator_start = operator_reconciles("Integration")

    def enough() -> bool:
        flux_done = reconcile_count(flux.metrics("kustomize-controller"), "kustomization") - flux_start
        return flux_done >= rounds and operator_reconciles("Integration") - operator_start >= rounds * integrations

    await eventually(enough, within=60, interval=0.5)
    after = await get(kubectl, "integration", "customer-onboarding")
    ks = await get(kubectl, "kustomization", KUSTOMIZATION)
    assert ks["status"]["lastAppliedRevision"] == applied
    assert condition(ks, "Ready")["status"] == "True"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    if status_quiet:
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert flux_entry(after) == flux_entry(before), "Flux applied the Integration again"

    owners: dict[str, set[str]] = {}
    for entry in after["metadata"]["managedFields"]:
        owners.setdefault(entry["manager"], set()).update(entry.get("fieldsV1", {}))
        if entry["manager"] == FLUX_MANAGER:
            assert entry["operation"] == "Apply"
    assert set(owners) <= {FLUX_MANAGER, *OPERATOR_MANAGERS}, owners
    assert "f:spec" in owners[FLUX_MANAGER], owners
    assert "f:status" not in owners[FLUX_MANAGER], owners
    for manager in OPERATOR_MANAGERS & set(owners):
        assert "f:spec" not in owners[manager], f"{manager} owns spec fields"
    assert owners[FIELD_MANAGER] == {"f:status"}, owners
