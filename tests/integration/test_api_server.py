"""The CRDs on a real kube-apiserver + etcd, driven with the real kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import cases
from tests.conftest import KUBECTL, ROOT, Kubectl

pytestmark = pytest.mark.controlplane


def test_crds_install_and_become_established(admin_kubectl: Kubectl, crds_installed: None) -> None:
    for plural in ("connectors", "integrations", "syncpolicies"):
        crd = admin_kubectl.get("crd", f"{plural}.onceflow.io")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


def test_every_example_passes_server_side_apply(kubectl: Kubectl) -> None:
    files = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "fixtures" not in p.parts)
    assert len(files) >= 7
    for path in files:
        kubectl.run("apply", "--server-side", "-f", str(path))
    listed = kubectl.run("get", "onceflow", "-o", "name").stdout.split()
    kinds = {name.split("/")[0] for name in listed}
    assert kinds == {"connector.onceflow.io", "integration.onceflow.io", "syncpolicy.onceflow.io"}
    assert len(listed) >= 15


def test_server_fills_defaults_from_the_schema(kubectl: Kubectl) -> None:
    kubectl.apply(cases.integration())
    spec = kubectl.get("integration", "onboard")["spec"]
    assert spec["replicas"] == 1
    assert spec["concurrency"] == 16
    assert spec["errorPolicy"] == {
        "backoff": ["1s", "10s", "1m"],
        "maxDeliver": 5,
        "ackWait": "3m",
        "permanentFailures": "Exception",
    }
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["steps"][2]["call"]["method"] == "POST"


@pytest.mark.parametrize("case", cases.INVALID, ids=lambda c: c.id)
def test_api_server_refuses_invalid_object_naming_the_field(kubectl: Kubectl, case: cases.Invalid) -> None:
    result = kubectl.apply(case.make(), check=False)
    assert result.returncode != 0, f"{case.id} was accepted by the API server"
    error = result.stderr
    if case.server_says:
        assert case.server_says in error, error
    else:
        assert case.field in error, error
        assert case.says in error, error


def test_syncpolicy_entity_is_immutable(kubectl: Kubectl) -> None:
    kubectl.apply(cases.syncpolicy())
    changed = cases.syncpolicy()
    changed["spec"]["entity"] = "supplier"
    result = kubectl.apply(changed, check=False)
    assert result.returncode != 0
    assert "spec.entity" in result.stderr
    assert "entity is immutable; create a new SyncPolicy" in result.stderr


def test_integration_sync_policy_ref_is_immutable(kubectl: Kubectl) -> None:
    first = cases.integration()
    first["spec"]["syncPolicyRef"] = {"name": "customer"}
    kubectl.apply(first)
    second = cases.integration()
    second["spec"]["syncPolicyRef"] = {"name": "customer-v2"}
    result = kubectl.apply(second, check=False)
    assert result.returncode != 0
    assert "syncPolicyRef is immutable" in result.stderr


def test_get_integrations_shows_the_printer_columns(kubectl: Kubectl) -> None:
    kubectl.apply(cases.integration())
    kubectl.run(
        "patch",
        "integration",
        "onboard",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "phase": "Progressing",
                    "revision": 2,
                    "canaryWeight": 20,
                    "stableRevision": "onboard-5d8f",
                    "currentRevision": "onboard-7c9a",
                    "message": "canary at 20%",
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "RolloutInProgress",
                            "message": "canary at 20%",
                            "lastTransitionTime": "2026-11-27T10:00:00Z",
                        }
                    ],
                }
            }
        ),
    )
    table = kubectl.run("get", "integrations").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "PHASE", "VERSION", "REVISION", "WEIGHT", "AGE"]
    assert table[1].split()[:6] == ["onboard", "False", "Progressing", "1.0.0", "2", "20"]
    wide = kubectl.run("get", "integrations", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["STABLE", "CURRENT", "MESSAGE"]
    assert "onboard-5d8f" in wide[1]
    assert "canary at 20%" in wide[1]


def test_status_is_a_subresource_so_spec_writers_cannot_touch_it(kubectl: Kubectl) -> None:
    obj = cases.integration()
    obj["status"] = {"phase": "Healthy"}
    kubectl.apply(obj)
    assert kubectl.get("integration", "onboard").get("status", {}).get("phase") is None


def test_a_new_object_reads_as_not_yet_observed_so_kstatus_waits_for_the_operator(kubectl: Kubectl) -> None:
    """kstatus (Flux's `wait`) calls an object without status.observedGeneration Current; the
    schema's status default makes a new one read as generation 0 observed: InProgress."""
    for obj in (cases.connector_rest(), cases.integration(), cases.syncpolicy()):
        created = json.loads(kubectl.run("create", "-o", "json", "-f", "-", stdin=yaml.safe_dump(obj)).stdout)
        assert created["metadata"]["generation"] == 1
        assert created["status"]["observedGeneration"] == 0, created["kind"]


def test_get_onceflow_category_lists_all_three_kinds(kubectl: Kubectl) -> None:
    kubectl.apply(cases.connector_rest(), cases.integration(), cases.syncpolicy())
    out = kubectl.run("get", "onceflow").stdout
    assert "connector.onceflow.io/erp" in out
    assert "integration.onceflow.io/onboard" in out
    assert "syncpolicy.onceflow.io/customer" in out


def test_short_names_work(kubectl: Kubectl) -> None:
    kubectl.apply(cases.syncpolicy())
    assert "customer" in kubectl.run("get", "ofsp").stdout


def test_kubectl_explain_shows_the_model_descriptions(kubectl: Kubectl) -> None:
    out = kubectl.run("explain", "integration.spec.steps").stdout
    assert "Ordered steps." in out
    assert "exactly one kind" in out
    for kind in ("validate", "map", "filter", "lookup", "dedupe", "call", "publish", "approve"):
        assert f"\n  {kind}\t" in out, kind
    out = kubectl.run("explain", "connector.spec.rest.auth.bearer.tokenRef").stdout
    assert "Secret key holding the bearer token." in out


def test_kustomize_base_renders_crds_namespace_rbac_and_operator(admin_kubectl: Kubectl) -> None:
    rendered = admin_kubectl.run("kustomize", str(ROOT / "manifests" / "base")).stdout
    kinds = sorted(f"{doc['kind']}/{doc['metadata']['name']}" for doc in yaml.safe_load_all(rendered))
    assert kinds == [
        "ClusterRole/onceflow-operator",
        "ClusterRoleBinding/onceflow-operator",
        "CustomResourceDefinition/connectors.onceflow.io",
        "CustomResourceDefinition/integrations.onceflow.io",
        "CustomResourceDefinition/syncpolicies.onceflow.io",
        "Deployment/onceflow-operator",
        "Namespace/onceflow-system",
        "NetworkPolicy/onceflow-operator",
        "Role/onceflow-operator-election",
        "RoleBinding/onceflow-operator-election",
        "Service/onceflow-operator-metrics",
        "ServiceAccount/onceflow-operator",
    ]
    rules = next(d for d in yaml.safe_load_all(rendered) if d["kind"] == "ClusterRole")["rules"]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


def test_kubectl_finds_the_onceflow_plugin(admin_kubectl: Kubectl) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [KUBECTL, "onceflow", "validate", "-f", str(ROOT / "examples")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "manifest(s) valid" in proc.stdout


@pytest.mark.parametrize(
    "how", [("create", "-o", "json"), ("apply", "--server-side", "--field-manager=flux", "-o", "json")]
)
def test_a_status_written_in_git_cannot_make_a_new_object_read_as_observed(
    kubectl: Kubectl, how: tuple[str, ...]
) -> None:
    """A manifest carrying `status: {observedGeneration: 1, Ready}` (copied from a live object, or
    hostile) is created or server-side applied as Flux does: the status is dropped and the default
    holds, so kstatus and health.lua still wait for the operator (#17 attack)."""
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Synced",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    for obj in (cases.connector_rest(), cases.integration(), cases.syncpolicy()):
        obj["status"] = {"observedGeneration": 1, "conditions": [ready]}
        created = json.loads(kubectl.run(*how, "-f", "-", stdin=yaml.safe_dump(obj)).stdout)
        assert created["metadata"]["generation"] == 1
        assert created["status"]["observedGeneration"] == 0, created["kind"]
        assert not created["status"].get("conditions"), created["kind"]
        managers = {m["manager"]: m.get("subresource", "") for m in created["metadata"].get("managedFields", [])}
        assert "status" not in managers.values(), managers
