"""Reconcile a Connector: its Secrets exist; webhooks run a gateway, EDI a poller; REST endpoints are probed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onceflow_operator.api import Connector
from onceflow_operator.api.names import API_VERSION, LABEL_CONNECTOR
from onceflow_operator.build.conditions import set_condition
from onceflow_operator.build.objects import (
    build_edi_deployment,
    build_gateway_deployment,
    build_gateway_service,
    build_plan_configmap,
)
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.clients.probe import ProbeResult, probe_connector_endpoint, probe_endpoint
from onceflow_operator.compiler.edi import edi_partner_plan
from onceflow_operator.compiler.planner import connector_plan, gateway_plan
from onceflow_operator.controller.identity import edi_secret
from onceflow_operator.controller.references import check_secrets, secret_refs, secret_values
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_operator.controller.status import ReconcileResult, now, with_ready
from onceflow_operator.controller.view import ClusterView, LiveView
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.plan import SecretRef
from onceflow_runner.errors import PlanError

__all__ = [
    "current_status",
    "is_available",
    "probe_connector",
    "probed_status",
    "reconcile_connector",
    "with_probe",
]


def is_available(deployment: Mapping[str, Any] | None) -> bool:
    """True when a Deployment has at least one available pod."""
    return bool(deployment and (deployment.get("status") or {}).get("availableReplicas", 0) >= 1)


#: Status written by the probe, not the reconcile: the probe's conditions and figures.
PROBE_CONDITIONS = ("Reachable", "Authenticated")
#: The probe's clock (lastProbeTime, lastProbeLatencyMs) is not among them: the probe writes it
#: only when its outcome changes, so a reconcile must not write it either.
PROBE_FIELDS = ("lastHttpStatus",)


def with_probe(status: Mapping[str, Any], probed: Mapping[str, Any] | None) -> dict[str, Any]:
    """`status` with the latest probe's conditions and figures put back (pure).

    Why: the reconcile and the probe are separate Kopf handlers, and each writes the whole
    `conditions` list; a reconcile built on a status read just before a probe's patch would drop
    that probe's conditions (an `Authenticated` turning False) until the next probe, a minute
    later. The controller keeps each Connector's last probe in memory and every reconcile writes
    it again, so a lost race heals at the next reconcile.
    """
    out = dict(status)
    if not probed:
        return out
    kept = [c for c in out.get("conditions") or [] if c.get("type") not in PROBE_CONDITIONS]
    out["conditions"] = kept + [c for c in probed.get("conditions") or [] if c.get("type") in PROBE_CONDITIONS]
    out.update({k: probed[k] for k in PROBE_FIELDS if k in probed})
    return out


async def reconcile_connector(
    kube: KubeClient,
    body: Mapping[str, Any],
    config: OperatorConfig,
    *,
    probed: Mapping[str, Any] | None = None,
    cluster: ClusterView | None = None,
) -> ReconcileResult:
    """Check Secrets; for webhooks run a gateway (ConfigMap, Deployment, Service); report.

    `probed` is the status the Connector's last probe wrote (see `with_probe`); `cluster` the
    operator's view of the objects it owns (the live API when None).
    """
    cluster = cluster or LiveView(kube)
    meta = body["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation", 1))
    status = with_probe(await current_status(kube, body), probed)
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
    if connector.spec.edi:
        return await _reconcile_edi(cluster, body, connector, status, config, checksum)
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
            tracing_env=config.tracing_env,
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


def edi_outbound_plan(body: Mapping[str, Any]) -> EdiPartnerPlan | None:
    """The partner plan of an EDI Connector that sends documents (`spec.edi.send`), else None.

    The operator creates that partner's outbound consumer and, with issued NATS identities, gives
    its pods a user that may read it; a Connector that does not validate has neither yet.
    """
    if not ((body.get("spec") or {}).get("edi") or {}).get("send"):
        return None
    try:
        connector = Connector.model_validate({**body, "status": None})
    except ValueError:
        return None
    plan = edi_partner_plan(connector, namespace=body["metadata"]["namespace"])
    return plan if plan.send else None


async def _reconcile_edi(
    cluster: ClusterView,
    body: Mapping[str, Any],
    connector: Connector,
    status: dict[str, Any],
    config: OperatorConfig,
    checksum: str,
) -> ReconcileResult:
    """An EDI Connector runs its poller (ConfigMap with the plan, Deployment); Ready when files can move."""
    meta = body["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation", 1))
    plan = edi_partner_plan(connector, namespace=namespace)
    configmap = build_plan_configmap(
        f"{meta['name']}-edi", namespace, plan.model_dump_json(by_alias=True), body, {LABEL_CONNECTOR: meta["name"]}
    )
    await cluster.ensure(configmap)
    deployment = await cluster.ensure(
        build_edi_deployment(
            plan,
            configmap["metadata"]["name"],
            body,
            image=config.image,
            nats_url=config.nats_url,
            # With issued identities, a sending partner's pods read their own user (its outbound consumer).
            nats_auth_secret=edi_secret(meta["name"]) if config.identities and plan.send else config.nats_auth_secret,
            replicas=connector.spec.edi.replicas if connector.spec.edi else 1,
            secrets_checksum=checksum,
        )
    )
    sftp = plan.sftp
    status["endpoint"] = f"sftp://{sftp.host}:{sftp.port}{sftp.pickup}"
    if is_available(deployment):
        return ReconcileResult(
            with_ready(status, generation, True, "PollerAvailable", "the EDI poller reaches the SFTP folders")
        )
    return ReconcileResult(
        with_ready(
            status,
            generation,
            False,
            "PollerNotAvailable",
            f"waiting for Deployment {meta['name']}-edi to have a ready pod (its /readyz says why, e.g. SFTP "
            "unreachable or host key refused)",
            reconciling=True,
        )
    )


async def current_status(kube: KubeClient, body: Mapping[str, Any]) -> dict[str, Any]:
    """The Connector's status as the API server has it now, else as the handler saw it.

    Why: the reconcile and the probe run as separate Kopf handlers and each writes the whole
    `conditions` list; built on the body a handler was queued with, one would drop the other's
    latest conditions (a probe's `Authenticated`) until its next run.
    """
    meta = body["metadata"]
    fresh = await kube.get(API_VERSION, "Connector", meta["namespace"], meta["name"])
    return dict((fresh or {}).get("status") or body.get("status") or {})


def probed_status(body: Mapping[str, Any], probe: ProbeResult) -> dict[str, Any]:
    """The Connector's status after a probe (pure): Reachable, the figures, and Authenticated.

    Authenticated is set when credentials were sent: reason AuthFailed when they (or the login)
    were refused, CredentialsAccepted otherwise.
    """
    status = dict(body.get("status") or {})
    status["lastProbeTime"] = now().strftime("%Y-%m-%dT%H:%M:%SZ")
    status["lastProbeLatencyMs"] = probe.latency_ms
    generation = int(body["metadata"].get("generation", 1))
    if probe.status is None and probe.auth_failed and not probe.error:
        reachable, reason, message = True, "Answered", f"the login to {probe.url.split('/', 3)[2]} was answered"
    elif probe.status is None:
        reachable, reason, message = False, "ProbeFailed", f"GET {probe.url} failed: {probe.error}"
    else:
        status["lastHttpStatus"] = probe.status
        reachable, reason = True, "Answered"
        message = f"GET {probe.url} answered {probe.status}"
    conditions = set_condition(
        list(status.get("conditions") or []), "Reachable", reachable, reason, message, generation=generation, now=now()
    )
    if probe.auth:
        accepted = not probe.auth_failed
        conditions = set_condition(
            conditions,
            "Authenticated",
            accepted,
            "CredentialsAccepted" if accepted else "AuthFailed",
            f"GET {probe.url} accepted the Connector's credentials" if accepted else probe.auth,
            generation=generation,
            now=now(),
        )
    status["conditions"] = conditions
    return status


async def probe_connector(kube: KubeClient, body: Mapping[str, Any]) -> dict[str, Any]:
    """GET the REST endpoint's health path with the Connector's credentials; any HTTP answer means reachable.

    Without usable Secrets (the reconcile reports those) the GET goes without credentials.
    """
    body = {**body, "status": await current_status(kube, body)}
    spec = body["spec"].get("rest") or {}
    health_path = spec.get("healthPath", "/")
    connector = Connector.model_validate({**body, "status": None})
    values = await secret_values(kube, body["metadata"]["namespace"], secret_refs(connector))
    if values is None or connector.spec.rest is None:
        return probed_status(body, await probe_endpoint(spec["baseURL"].rstrip("/") + health_path))

    def secret(ref: SecretRef | None) -> str:
        if ref is None or (ref.name, ref.key) not in values:
            raise PlanError("a Secret key the Connector names was not read")
        return values[(ref.name, ref.key)]

    return probed_status(body, await probe_connector_endpoint(connector_plan(connector), health_path, secret))
