"""The shipped manifests on the real API server: Pod Security "restricted" and least privilege."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path

import pytest
import yaml

from onceflow_operator.build.objects import build_runner_deployment
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.controller.integration import reconcile_integration
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_operator.dev.controlplane import ControlPlane
from tests import cases
from tests.conftest import ROOT, Kubectl
from tests.unit.test_planner import load_examples

pytestmark = pytest.mark.controlplane
SA = "system:serviceaccount:onceflow-system:onceflow-operator"


@pytest.fixture(scope="module")
def installed(admin_kubectl: Kubectl) -> None:
    system = Kubectl(admin_kubectl.kubeconfig, "onceflow-system")
    result = system.run("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "manifests" / "base"))
    assert "would violate PodSecurity" not in result.stderr, result.stderr


def test_operator_deployment_meets_the_restricted_profile(admin_kubectl: Kubectl, installed: None) -> None:
    ns = admin_kubectl.run("get", "namespace", "onceflow-system", "-o", "yaml").stdout
    assert "pod-security.kubernetes.io/enforce: restricted" in ns
    dry = Kubectl(admin_kubectl.kubeconfig, "onceflow-system").run(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "-f",
        str(ROOT / "manifests/base/operator.yaml"),
    )
    assert "would violate PodSecurity" not in dry.stderr


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kustomize_overlays_render_and_pass_the_restricted_profile(
    admin_kubectl: Kubectl, installed: None, overlay: str
) -> None:
    rendered = admin_kubectl.run("kustomize", str(ROOT / "manifests" / "overlays" / overlay)).stdout
    docs = list(yaml.safe_load_all(rendered))
    operator = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    image = operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert env["ONCEFLOW_IMAGE"] == image  # runners and gateways run the operator's own image
    assert {d["kind"] for d in docs} >= {"CustomResourceDefinition", "ClusterRole", "NetworkPolicy", "Deployment"}
    dry = Kubectl(admin_kubectl.kubeconfig, "onceflow-system").run(
        "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-", stdin=rendered
    )
    assert "would violate PodSecurity" not in dry.stderr, dry.stderr


def test_runner_deployment_meets_the_restricted_profile(admin_kubectl: Kubectl, installed: None) -> None:
    connectors, policies, integrations = load_examples()
    from onceflow_operator.compiler.planner import plan_from_integration

    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    plan = plan_from_integration(onboarding, connectors, policies["customer"], namespace="onceflow-system")
    owner = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "uid": "00000000-0000-0000-0000-000000000000"},
    }
    deployment = build_runner_deployment(
        plan, "plan", owner, image="img:1", nats_url="nats://n:4222", replicas=1, secrets_checksum="x"
    )
    deployment["metadata"].pop("ownerReferences")
    result = Kubectl(admin_kubectl.kubeconfig, "onceflow-system").run(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(deployment)
    )
    assert "would violate PodSecurity" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "integrations.onceflow.io", True),
        ("patch", "integrations.onceflow.io/status", True),
        ("create", "deployments.apps", True),
        ("create", "controllerrevisions.apps", True),
        ("get", "secrets", True),
        ("list", "secrets", False),
        ("watch", "secrets", False),
        ("create", "events", True),
        ("create", "secrets", False),
        ("delete", "secrets", False),
        ("create", "pods", False),
        ("list", "nodes", False),
        ("delete", "integrations.onceflow.io", False),
        ("create", "clusterroles.rbac.authorization.k8s.io", False),
    ],
)
def test_operator_service_account_has_least_privilege(
    admin_kubectl: Kubectl, installed: None, verb: str, resource: str, allowed: bool
) -> None:
    result = admin_kubectl.run("auth", "can-i", verb, resource, f"--as={SA}", "--all-namespaces", check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, result.stdout, result.stderr)


async def test_reconcile_works_with_only_the_service_accounts_rights(
    admin_kubectl: Kubectl, installed: None, control_plane: ControlPlane, tmp_path: Path
) -> None:
    token = admin_kubectl.run("create", "token", "onceflow-operator", "-n", "onceflow-system").stdout.strip()
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    admin["users"] = [{"name": "sa", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "sa"
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    namespace = f"sa-{uuid.uuid4().hex[:6]}"
    admin_kubectl.run("create", "namespace", namespace)
    k = Kubectl(admin_kubectl.kubeconfig, namespace)
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "crm", "labels": {"onceflow.io/credentials": "true"}},
            "data": {"secret": base64.b64encode(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "erp", "labels": {"onceflow.io/credentials": "true"}},
            "stringData": {"token": "t"},
        },
        cases.connector_webhook(),
        cases.connector_rest(),
        cases.integration(),
    )
    body = k.get("integration", "onboard")
    kube = KubeClient.from_environment(str(kubeconfig))
    try:
        outcome = await reconcile_integration(kube, body, OperatorConfig())
    finally:
        await kube.close()
    assert outcome.status["revision"] == 1
    runner = await asyncio.to_thread(k.get, "deployment", "onboard-runner")
    assert runner["spec"]["template"]["metadata"]["labels"]["onceflow.io/revision"] == outcome.status["currentRevision"]


def test_the_pod_security_check_does_catch_a_violation(admin_kubectl: Kubectl, installed: None) -> None:
    # Control for the two tests above: the same dry run warns about a template that is not restricted.
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}]},
            },
        },
    }
    result = Kubectl(admin_kubectl.kubeconfig, "onceflow-system").run(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad)
    )
    assert "would violate PodSecurity" in result.stderr
