"""The operator against the real kube-apiserver, driven by Kopf's KopfRunner and real kubectl.

There are no nodes: Deployments never get pods here, so availability is simulated by writing a
Deployment's status as its controller would. Everything else is the real API server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import nats
import pytest
from prometheus_client import REGISTRY

from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.natsserver import NatsServer
from tests import cases
from tests.conftest import Kubectl

pytestmark = pytest.mark.controlplane


def wait_for(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {within}s: {last!r}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def secret(name: str, **data: str) -> dict[str, Any]:
    labels = {"onceflow.io/credentials": "true"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels}, "stringData": data}


def apply_onboarding(kubectl: Kubectl) -> None:
    """The webhook and REST Connectors with their Secrets, and the Integration between them."""
    kubectl.apply(
        secret("crm", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        secret("erp", token="t"),
        cases.connector_webhook(),
        cases.connector_rest(),
        cases.integration(),
    )


def events(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    out = kubectl.run("get", "events", "-o", "json", f"--field-selector=involvedObject.name={name}").stdout
    return list(json.loads(out)["items"])


def test_connector_with_missing_secret_is_stalled_then_recovers(kubectl: Kubectl, operator_running: None) -> None:
    kubectl.apply(cases.connector_rest())
    stalled = wait_for(lambda: condition(kubectl.get("connector", "erp"), "Stalled"))
    assert stalled["reason"] == "SecretNotFound"
    assert "Secret erp (key token" in stalled["message"]
    assert condition(kubectl.get("connector", "erp"), "Ready")["status"] == "False"  # type: ignore[index]
    assert wait_for(lambda: [e for e in events(kubectl, "erp") if e["reason"] == "SecretNotFound"])
    kubectl.apply(secret("erp", token="t0ken"))
    ready = wait_for(lambda: (c := condition(kubectl.get("connector", "erp"), "Ready")) and c["status"] == "True" and c)
    assert ready["reason"] == "Configured"
    connector = kubectl.get("connector", "erp")
    assert condition(connector, "Stalled") is None
    assert connector["status"]["endpoint"] == "http://erp.example.test:8000"
    assert connector["status"]["observedGeneration"] == connector["metadata"]["generation"]
    assert "t0ken" not in json.dumps(connector)


def test_connector_naming_an_unlabelled_secret_is_stalled_until_its_owner_opts_in(
    kubectl: Kubectl, operator_running: None
) -> None:
    # Any Secret of the namespace could otherwise be sent to a base URL the Connector's author chose.
    unlabelled = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "erp"}, "stringData": {"token": "t0ken"}}
    kubectl.apply(unlabelled, cases.connector_rest())
    stalled = wait_for(lambda: condition(kubectl.get("connector", "erp"), "Stalled"))
    assert stalled["reason"] == "SecretNotUsable"
    assert "kubectl label secret erp onceflow.io/credentials=true" in stalled["message"]
    kubectl.run("label", "secret", "erp", "onceflow.io/credentials=true")
    ready = wait_for(lambda: (c := condition(kubectl.get("connector", "erp"), "Ready")) and c["status"] == "True" and c)
    assert ready["reason"] == "Configured"
    assert "t0ken" not in json.dumps(kubectl.get("connector", "erp"))


def test_webhook_connector_with_an_unusable_signing_secret_is_stalled_without_showing_it(
    kubectl: Kubectl, operator_running: None
) -> None:
    # Empty (or whitespace) is a key everyone knows; the gateway would refuse it, so the status says so first.
    kubectl.apply(secret("crm", secret="  "), cases.connector_webhook())
    stalled = wait_for(lambda: condition(kubectl.get("connector", "crm"), "Stalled"))
    assert stalled["reason"] == "SigningSecretUnusable"
    assert "spec.webhook.signature.secretRef" in stalled["message"]
    assert "whsec_<base64>" in stalled["message"]
    kubectl.apply(secret("crm", secret="not-a-whsec-secret"))
    wait_for(lambda: "not-a-whsec-secret" not in json.dumps(kubectl.get("connector", "crm")) or None)
    kubectl.apply(secret("crm", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    wait_for(lambda: condition(kubectl.get("connector", "crm"), "Stalled") is None or None)
    assert "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in json.dumps(kubectl.get("connector", "crm"))


def test_webhook_connector_gets_a_restricted_gateway_and_service(kubectl: Kubectl, operator_running: None) -> None:
    kubectl.apply(secret("crm", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), cases.connector_webhook())
    deployment = wait_for(lambda: kubectl.run("get", "deployment", "crm-gateway", "-o", "json", check=False).stdout)
    pod = json.loads(deployment)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["args"][:2] == ["gateway", "--plan"]
    assert "whsec" not in deployment
    assert (
        json.loads(kubectl.run("get", "service", "crm-gateway", "-o", "json").stdout)["spec"]["ports"][0]["port"] == 80
    )
    connector = wait_for(lambda: (c := kubectl.get("connector", "crm")).get("status", {}).get("endpoint") and c)
    assert connector["status"]["endpoint"] == f"http://crm-gateway.{kubectl.namespace}.svc/crm"
    assert condition(connector, "Ready")["reason"] == "GatewayNotAvailable"  # type: ignore[index]


def _mark_available(kubectl: Kubectl, deployment: str) -> None:
    """Write the status the Deployment controller would once its pod is ready."""
    generation = kubectl.get("deployment", deployment)["metadata"]["generation"]
    status = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1}
    status.update(availableReplicas=1, readyReplicas=1)
    kubectl.run(
        "patch", "deployment", deployment, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )


def test_integration_becomes_a_revision_with_runners_and_turns_ready(kubectl: Kubectl, operator_running: None) -> None:
    apply_onboarding(kubectl)
    status = wait_for(
        lambda: (
            kubectl.get("integration", "onboard").get("status", {}).get("currentRevision")
            and kubectl.get("integration", "onboard")["status"]
        )
    )
    revision = status["currentRevision"]
    assert status["revision"] == 1
    assert status["phase"] == "Progressing"
    deployment = kubectl.get("deployment", "onboard-runner")
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "Integration"
    assert deployment["spec"]["template"]["metadata"]["labels"]["onceflow.io/revision"] == revision
    configmap = deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    plan_cm = json.loads(kubectl.run("get", "configmap", configmap, "-o", "json").stdout)
    assert plan_cm["immutable"] is True
    assert json.loads(plan_cm["data"]["plan.json"])["revision"] == revision
    assert kubectl.run("get", "controllerrevision", revision, "-o", "jsonpath={.revision}").stdout == "1"
    _mark_available(kubectl, "onboard-runner")
    kubectl.run("wait", "--for=condition=Ready", "integration/onboard", "--timeout=30s")
    ready = kubectl.get("integration", "onboard")
    assert ready["status"]["phase"] == "Healthy"
    assert ready["status"]["stableRevision"] == revision
    assert condition(ready, "Reconciling") is None
    assert condition(ready, "Available")["status"] == "True"  # type: ignore[index]
    assert condition(ready, "Progressing")["reason"] == "NewRevisionPromoted"  # type: ignore[index]


def test_new_spec_makes_revision_2_and_a_revert_reuses_revision_1(kubectl: Kubectl, operator_running: None) -> None:
    apply_onboarding(kubectl)
    first = wait_for(lambda: kubectl.get("integration", "onboard").get("status", {}).get("currentRevision"))
    changed = cases.integration()
    changed["spec"]["steps"][0]["map"]["fields"]["country"] = "input.country"
    kubectl.apply(changed)
    second = wait_for(
        lambda: (r := kubectl.get("integration", "onboard")["status"].get("currentRevision")) != first and r
    )
    assert kubectl.get("integration", "onboard")["status"]["revision"] == 2
    kubectl.apply(cases.integration())
    wait_for(lambda: kubectl.get("integration", "onboard")["status"].get("currentRevision") == first)
    assert kubectl.get("integration", "onboard")["status"]["revision"] == 1
    revisions = kubectl.run("get", "controllerrevisions", "-o", "name").stdout.split()
    assert sorted(revisions) == sorted([f"controllerrevision.apps/{first}", f"controllerrevision.apps/{second}"])


def test_integration_naming_a_missing_connector_is_stalled_with_the_field_path(
    kubectl: Kubectl, operator_running: None
) -> None:
    kubectl.apply(cases.integration())
    stalled = wait_for(lambda: condition(kubectl.get("integration", "onboard"), "Stalled"))
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.trigger.connector.name: Connector 'crm' does not exist" in stalled["message"]
    assert "spec.steps[2].call.connector: Connector 'erp' does not exist" in stalled["message"]
    assert kubectl.get("integration", "onboard")["status"]["phase"] == "Degraded"
    assert wait_for(lambda: [e for e in events(kubectl, "onboard") if e["reason"] == "InvalidSpec"])
    table = kubectl.run("get", "integration", "onboard").stdout.splitlines()[1].split()
    assert table[1:3] == ["False", "Degraded"]


def _warnings(kubectl: Kubectl, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in events(kubectl, name) if e["reason"] == reason and e["type"] == "Warning"]


def test_an_invalid_integration_is_one_counted_event_and_silent_once_fixed(
    kubectl: Kubectl, operator_running: None
) -> None:
    apply_onboarding(kubectl)
    wait_for(lambda: kubectl.run("get", "deployment", "onboard-runner", check=False).stdout)
    _mark_available(kubectl, "onboard-runner")
    kubectl.run("wait", "--for=condition=Ready", "integration/onboard", "--timeout=30s")
    invalid = cases.integration()
    invalid["spec"]["trigger"] = {"subject": "onceflow.someone-else.in.>"}
    kubectl.apply(invalid)

    # The resync timer looks at it again and again (1 s here): the same problem is one Event, counted.
    repeated = wait_for(lambda: [e for e in _warnings(kubectl, "onboard", "InvalidSpec") if e["count"] > 1], 30)
    assert len(_warnings(kubectl, "onboard", "InvalidSpec")) == 1
    assert repeated[0]["lastTimestamp"] >= repeated[0]["firstTimestamp"]
    assert "lies outside this Integration's namespace" in repeated[0]["message"]
    table = kubectl.run("get", "events", "--field-selector=involvedObject.name=onboard").stdout
    assert "InvalidSpec" in table

    # Fixed: the next generation is reconciled, and the old one's problem is never reported again.
    kubectl.apply(cases.integration())
    wait_for(lambda: condition(kubectl.get("integration", "onboard"), "Ready")["status"] == "True")  # type: ignore[index]
    before = {e["metadata"]["name"]: e["count"] for e in _warnings(kubectl, "onboard", "InvalidSpec")}
    # A healthy reconcile writes nothing, so count them in the operator's own metric (same process).
    healthy = {"kind": "Integration", "reason": "RunnersAvailable"}
    start = REGISTRY.get_sample_value("onceflow_operator_reconciles_total", healthy) or 0
    wait_for(lambda: (REGISTRY.get_sample_value("onceflow_operator_reconciles_total", healthy) or 0) >= start + 3, 30)
    after = {e["metadata"]["name"]: e["count"] for e in _warnings(kubectl, "onboard", "InvalidSpec")}
    assert after == before
    assert not [e for e in events(kubectl, "onboard") if e["type"] == "Warning" and e["reason"] != "InvalidSpec"]


def test_integration_triggered_by_another_namespaces_subject_is_stalled_with_the_field_path(
    kubectl: Kubectl, operator_running: None
) -> None:
    reader = cases.integration("reads-elsewhere")
    reader["spec"]["trigger"] = {"subject": "onceflow.someone-else.in.>"}
    kubectl.apply(reader)  # the API server cannot know the namespace in CEL: the operator refuses it
    stalled = wait_for(lambda: condition(kubectl.get("integration", "reads-elsewhere"), "Stalled"))
    assert stalled["reason"] == "InvalidSpec"
    assert (
        f"spec.trigger.subject: 'onceflow.someone-else.in.>' lies outside this Integration's namespace "
        f"'{kubectl.namespace}'" in stalled["message"]
    )
    assert kubectl.get("integration", "reads-elsewhere")["status"]["phase"] == "Degraded"


def test_syncpolicy_lists_the_integrations_that_use_it(kubectl: Kubectl, operator_running: None) -> None:
    flow = cases.integration()
    flow["spec"]["syncPolicyRef"] = {"name": "customer"}
    kubectl.apply(cases.syncpolicy(), flow)
    policy = wait_for(lambda: (p := kubectl.get("syncpolicy", "customer")).get("status", {}).get("integrations") and p)
    assert policy["status"]["integrations"] == ["onboard"]
    assert condition(policy, "Ready")["status"] == "True"  # type: ignore[index]


def test_integration_consumer_is_provisioned_and_removed_on_delete(
    kubectl: Kubectl, operator_running: None, nats_server: NatsServer
) -> None:
    apply_onboarding(kubectl)
    consumer = f"{kubectl.namespace}_onboard"
    info = wait_for(lambda: asyncio.run(_consumer(nats_server.url, consumer)))
    assert info.config.filter_subjects == [
        f"onceflow.{kubectl.namespace}.in.crm.customer.approved",
        f"onceflow.{kubectl.namespace}.in._rollout.onboard",  # split markers, see onceflow_runner.contract.split
    ]
    assert info.config.max_deliver == 5
    assert "onceflow.io/finalizer" in kubectl.get("integration", "onboard")["metadata"]["finalizers"]
    kubectl.run("delete", "integration", "onboard", "--wait=false")
    wait_for(
        lambda: not kubectl.run("get", "integration", "onboard", "--ignore-not-found", "-o", "name").stdout, within=120
    )
    assert wait_for(lambda: asyncio.run(_consumer(nats_server.url, consumer)) is None)


async def _consumer(url: str, name: str) -> Any:
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().consumer_info("ONCEFLOW_IN", name)
    except nats.js.errors.NotFoundError:
        return None
    finally:
        await nc.close()


def test_secret_rotation_rolls_the_gateway_pods(kubectl: Kubectl, operator_running: None) -> None:
    kubectl.apply(secret("crm", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), cases.connector_webhook())

    def checksum() -> str | None:
        out = kubectl.run("get", "deployment", "crm-gateway", "-o", "json", check=False).stdout
        if not out:
            return None
        annotations = json.loads(out)["spec"]["template"]["metadata"].get("annotations", {})
        return annotations.get("onceflow.io/secrets-checksum")

    before = wait_for(checksum)
    kubectl.apply(secret("crm", secret="whsec_dGhlIG5ldyBrZXkgYWZ0ZXIgcm90YXRpb24="))
    after = wait_for(lambda: (c := checksum()) != before and c)
    assert after != before


async def test_reconciling_again_changes_nothing(
    kubectl: Kubectl, control_plane: ControlPlane, operator_running: None
) -> None:
    # What an operator restarted mid-reconcile does: run the same reconcile again.
    from onceflow_operator.clients.kube import KubeClient
    from onceflow_operator.controller.integration import reconcile_integration
    from onceflow_operator.controller.settings import OperatorConfig

    apply_onboarding(kubectl)
    # The operator reconciles this namespace too; let it settle first, so that whatever changes
    # below is ours.
    wait_for(lambda: kubectl.get("integration", "onboard").get("status", {}).get("currentRevision"))
    body = kubectl.get("integration", "onboard")
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    try:
        config = OperatorConfig(nats_url=os.environ["ONCEFLOW_NATS_URL"])  # the running operator's settings
        first = await reconcile_integration(kube, body, config)
        snapshot = _children(kubectl)
        second = await reconcile_integration(kube, body, config)
    finally:
        await kube.close()
    assert second.status["currentRevision"] == first.status["currentRevision"]
    assert second.status["revision"] == first.status["revision"] == 1
    assert _children(kubectl) == snapshot  # same objects, same resourceVersions: nothing rewritten


def _children(kubectl: Kubectl) -> list[tuple[str, str, str]]:
    items = json.loads(kubectl.run("get", "deployments,configmaps,controllerrevisions", "-o", "json").stdout)["items"]
    return sorted(
        (i["kind"], i["metadata"]["name"], i["metadata"]["resourceVersion"])
        for i in items
        if i["metadata"]["name"] != "kube-root-ca.crt"
    )


def test_children_carry_owner_references(kubectl: Kubectl, operator_running: None) -> None:
    apply_onboarding(kubectl)
    wait_for(lambda: kubectl.get("integration", "onboard").get("status", {}).get("currentRevision"))
    uid = kubectl.get("integration", "onboard")["metadata"]["uid"]
    items = json.loads(
        kubectl.run(
            "get", "deployments,configmaps,controllerrevisions", "-l", "onceflow.io/integration=onboard", "-o", "json"
        ).stdout
    )["items"]
    assert {i["kind"] for i in items} == {"Deployment", "ConfigMap", "ControllerRevision"}
    for item in items:
        (ref,) = item["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("Integration", uid, True)


async def test_a_replaced_plan_configmap_never_runs(
    kubectl: Kubectl, control_plane: ControlPlane, operator_running: None
) -> None:
    # Plan ConfigMaps are immutable, but anyone with ConfigMap rights can delete one and create
    # another under the same labels; the revision's recorded hash decides which plan is real.
    from onceflow_operator.clients.kube import KubeClient
    from onceflow_operator.controller.integration import stored_plan

    apply_onboarding(kubectl)
    revision = wait_for(lambda: kubectl.get("integration", "onboard").get("status", {}).get("currentRevision"))
    recorded = kubectl.get("controllerrevision", revision)["data"]["planHash"]
    configmaps = json.loads(
        kubectl.run("get", "configmaps", "-l", f"onceflow.io/revision={revision}", "-o", "json").stdout
    )["items"]
    assert len(configmaps) == 1
    genuine = configmaps[0]
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    try:
        namespace = genuine["metadata"]["namespace"]
        found = await stored_plan(kube, namespace, "onboard", revision, recorded)
        assert found is not None
        assert found[0].revision == revision
        forged = genuine["data"]["plan.json"].replace("http://erp.example.test:8000", "http://attacker.example.test")
        assert forged != genuine["data"]["plan.json"]
        # The operator re-applies the current revision's ConfigMap on every pass, so the forgery
        # stands under a second revision label whose record says it must be the genuine plan.
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "onboard-forged",
                    "labels": {**genuine["metadata"]["labels"], "onceflow.io/revision": "forged"},
                },
                "data": {"plan.json": forged},
            }
        )
        assert await stored_plan(kube, namespace, "onboard", "forged", recorded) is None
    finally:
        await kube.close()
