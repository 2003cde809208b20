"""What a gateway exposes: webhooks on the Service, metrics and probes only on the pods' own port;
and ids too long for `Nats-Msg-Id` stay distinct (issue 19 item 18)."""

from __future__ import annotations

from typing import Any

from onceflow_operator.build.objects import build_gateway_deployment, build_gateway_service
from onceflow_runner.contract.keys import MAX_MSG_ID_CHARS, bounded_id
from onceflow_runner.contract.plan import PLAN_VERSION, GatewayPlan

OWNER = {"apiVersion": "onceflow.io/v1alpha1", "kind": "Connector", "metadata": {"name": "crm", "uid": "u1"}}
PLAN = GatewayPlan.model_validate(
    {
        "planVersion": PLAN_VERSION,
        "namespace": "sales",
        "connector": "crm",
        "signature": {"scheme": "hmac", "header": "X-S", "secret": {"name": "crm", "key": "secret"}},
        "subject_prefix": "onceflow.sales.in.crm",
    }
)


def _container() -> dict[str, Any]:
    deployment = build_gateway_deployment(
        PLAN, "crm-gateway-plan", OWNER, image="img", nats_url="nats://n:4222", replicas=1, secrets_checksum="x"
    )
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_gateway_pod_serves_webhooks_on_http_and_probes_on_its_metrics_port() -> None:
    container = _container()
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "metrics": 9090}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "ONCEFLOW_METRICS_PORT", "value": "9090"} in container["env"]


def test_gateway_service_exposes_only_the_webhook_port() -> None:
    service = build_gateway_service(PLAN, OWNER)
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_ids_over_the_limit_are_hashed_not_truncated() -> None:
    shared = "x" * 400
    first, second = bounded_id(shared + "a"), bounded_id(shared + "b")
    assert first != second
    assert len(first) <= MAX_MSG_ID_CHARS
    assert len(second) <= MAX_MSG_ID_CHARS
    assert bounded_id("short-id") == "short-id"
    assert bounded_id("y" * MAX_MSG_ID_CHARS) == "y" * MAX_MSG_ID_CHARS
