"""Reconcile a Connector: its Secrets exist; a webhook Connector runs a gateway; a REST one is probed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onceflow_operator.api import Connector
from onceflow_operator.api.names import LABEL_CONNECTOR
from onceflow_operator.build.conditions import set_condition
from onceflow_operator.build.objects import (
    build_gateway_deployment,
    build_gateway_service,
    build_plan_configmap,
)
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.clients.probe import ProbeResult, probe_endpoint
from onceflow_operator.compiler.planner import gateway_plan
from onceflow_operator.controller.references import check_secrets, secret_refs
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_operator.controller.status import ReconcileResult, now, with_ready
from onceflow_operator.controller.view import ClusterView, LiveView

__all__ = ["is_available", "probe_connector", "probed_status", "reconcile_connector"]


def is_available(deployment: Mapping[str, Any] | None) -> bool:
    """True when a Deployment has at least one available pod."""
    return bool(deployment and (deployment.get("status") or {}).get("availableReplicas", 0) >= 1)


async def reconcile_connector(
    kube: KubeClient, body: Mapping[str, Any], config: OperatorConfig, *, cluster: ClusterView | None = None
) -> ReconcileResult:
    """Check Secrets; for webhooks run a gateway (ConfigMap, Deployment, Service); report."""
    cluster = cluster or LiveView(kube)
    meta = body["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation", 1))
    status = dict(body.get("status") or {})
    connector = Connector.model_validate({**body, "status": None})
    scheme = connector.spec.webhook.signature.scheme if connector.spec.webhook else ""
    problems, checksum = await check_secrets(kube, namespace, secret_refs(connector), signing_scheme=scheme)
    if problems:
        reason = problems[0][0]
        message = "; ".join(text for _, text in problems)
        return ReconcileResult(
            with_ready(status, generation, False, reason, message, stalled=True), [(reason, message, True)]
        )
    if connector.spec.rest:
        status["endpoint"] = connector.spec.rest.base_url
        return ReconcileResult(
            with_ready(status, generation, True, "Configured", "secrets present; endpoint probed on a timer")
        )
    plan = gateway_plan(connector, namespace=namespace)
    configmap = build_plan_configmap(
        f"{meta['name']}-gateway", namespace, plan.to_json(), body, {LABEL_CONNECTOR: meta["name"]}
    )
    await cluster.ensure(configmap)
    replicas = connector.spec.webhook.replicas if connector.spec.webhook else 1
    deployment = await cluster.ensure(
        build_gateway_deployment(
            plan,
            configmap["metadata"]["name"],
            body,
            image=config.image,
            nats_url=config.nats_url,
            nats_auth_secret=config.nats_auth_secret,
            replicas=replicas,
            secrets_checksum=checksum,
        )
    )
    await cluster.ensure(build_gateway_service(plan, body))
    status["endpoint"] = f"http://{meta['name']}-gateway.{namespace}.svc{plan.path}"
    if is_available(deployment):
        return ReconcileResult(with_ready(status, generation, True, "GatewayAvailable", "the gateway accepts webhooks"))
    return ReconcileResult(
        with_ready(
            status,
            generation,
            False,
            "GatewayNotAvailable",
            f"waiting for Deployment {meta['name']}-gateway to have an available pod",
            reconciling=True,
        )
    )


def probed_status(body: Mapping[str, Any], probe: ProbeResult) -> dict[str, Any]:
    """The Connector's status after a probe: the Reachable condition and the probe's figures (pure)."""
    status = dict(body.get("status") or {})
    status["lastProbeTime"] = now().strftime("%Y-%m-%dT%H:%M:%SZ")
    status["lastProbeLatencyMs"] = probe.latency_ms
    generation = int(body["metadata"].get("generation", 1))
    if probe.status is None:
        reachable, reason, message = False, "ProbeFailed", f"GET {probe.url} failed: {probe.error}"
    else:
        status["lastHttpStatus"] = probe.status
        reachable, reason = True, "Answered"
        message = f"GET {probe.url} answered {probe.status}"
    status["conditions"] = set_condition(
        list(status.get("conditions") or []), "Reachable", reachable, reason, message, generation=generation, now=now()
    )
    return status


async def probe_connector(body: Mapping[str, Any]) -> dict[str, Any]:
    """GET the REST endpoint's health path; any HTTP answer means reachable."""
    spec = body["spec"].get("rest") or {}
    url = spec["baseURL"].rstrip("/") + spec.get("healthPath", "/")
    return probed_status(body, await probe_endpoint(url))
