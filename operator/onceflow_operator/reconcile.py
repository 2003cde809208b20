"""What the operator does for each kind, level-based and idempotent: read, compile, apply, report.

Each `reconcile_*` reads the object and what it references, applies the objects the pure builders
return (server-side apply, so a second run changes nothing), and returns the status to write
plus the Events to record. Kopf handlers (in `handlers.py`) only call these.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import ValidationError

from onceflow_runner import natsio

from .api import Connector, Integration, SyncPolicy
from .builders import (
    build_gateway_deployment,
    build_gateway_service,
    build_plan_configmap,
    build_reconcile_cronjob,
    build_runner_deployment,
    plan_secrets,
    set_condition,
    without_condition,
)
from .figures import FigureBook
from .kube import KubeClient
from .metrics import NATS_CALLS, NATS_FAILURES
from .planner import InvalidSpec, drift_subject, gateway_plan, nats_names, plan_from_integration, reconcile_plan

__all__ = [
    "NatsLink",
    "OperatorConfig",
    "Outcome",
    "finalize_integration",
    "probe_connector",
    "reconcile_connector",
    "reconcile_integration",
    "reconcile_syncpolicy",
]

API = "onceflow.io/v1alpha1"


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator process."""

    image: str = "ghcr.io/onceflow/onceflow:0.1.0"
    nats_url: str = "nats://nats.nats.svc:4222"


class NatsLink:
    """The operator's NATS connection, made on first use and retried on the next reconcile.

    It provisions JetStream streams and consumers and collects runner heartbeats into `book`.
    """

    def __init__(self, url: str, book: FigureBook) -> None:
        self.url = url
        self.book = book
        self._nc: Client | None = None
        self._lock = asyncio.Lock()

    async def jetstream(self) -> JetStreamContext:
        # Handlers run concurrently: one connection, made once, or a second one would leak.
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await natsio.connect(self.url, name="onceflow-operator")
                await natsio.subscribe_stats(self._nc, self.book.record)
        return self._nc.jetstream(timeout=5)

    async def last_drift(self, subject: str) -> dict[str, Any] | None:
        """The newest drift result a reconcile job published, or None."""
        try:
            msg = await (await self.jetstream()).get_last_msg("ONCEFLOW_EVENTS", subject)
        except Exception:  # no result yet, or NATS away: status keeps what it had
            return None
        result: dict[str, Any] = json.loads(msg.data or b"null")
        return result

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


@dataclass
class Outcome:
    """The status to write and the Events to record (reason, message, warning)."""

    status: dict[str, Any]
    events: list[tuple[str, str, bool]] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def _ready(
    status: dict[str, Any],
    generation: int,
    ok: bool,
    reason: str,
    message: str,
    *,
    stalled: bool = False,
    reconciling: bool = False,
) -> dict[str, Any]:
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, "Ready", ok, reason, message, generation=generation, now=_now())
    for kind, on in (("Stalled", stalled), ("Reconciling", reconciling)):
        conditions = (
            set_condition(conditions, kind, True, reason, message, generation=generation, now=_now())
            if on
            else without_condition(conditions, kind)
        )
    return {**status, "conditions": conditions, "observedGeneration": generation}


def _secret_refs(connector: Connector) -> list[tuple[str, str, str]]:
    """(field path, secret, key) for every Secret a Connector reads."""
    spec = connector.spec
    out: list[tuple[str, str, str]] = []
    if spec.webhook:
        ref = spec.webhook.signature.secret_ref
        out.append(("spec.webhook.signature.secretRef", ref.name, ref.key))
    if spec.rest:
        auth = spec.rest.auth
        for block_name in ("bearer", "basic", "api_key", "erpnext_token", "oauth2"):
            block = getattr(auth, block_name)
            if block is None:
                continue
            for attr, info in type(block).model_fields.items():
                value = getattr(block, attr)
                if attr.endswith("_ref") and value is not None:
                    alias = info.alias or attr
                    out.append((f"spec.rest.auth.{type(block).__name__}.{alias}", value.name, value.key))
    return out


async def _check_secrets(kube: KubeClient, namespace: str, refs: list[tuple[str, str, str]]) -> tuple[list[str], str]:
    """Return (problems, checksum of the Secrets' resourceVersions)."""
    problems, versions = [], []
    for path, name, key in refs:
        secret = await kube.get("v1", "Secret", namespace, name)
        if secret is None:
            problems.append(f"Secret {name} (key {key}, from {path}) does not exist in {namespace}; create it")
        elif key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
            problems.append(f"Secret {name} has no key {key} (from {path}); add the key or fix {path}.key")
        else:
            versions.append(f"{name}={secret['metadata'].get('resourceVersion', '')}")
    return problems, hashlib.sha256(",".join(sorted(versions)).encode()).hexdigest()[:16]


async def _secrets_checksum(kube: KubeClient, namespace: str, names: list[str]) -> str:
    """Changes when any Secret a pod mounts changes, so the pod template (and the pods) roll."""
    versions = []
    for name in names:
        secret = await kube.get("v1", "Secret", namespace, name)
        versions.append(f"{name}={(secret or {}).get('metadata', {}).get('resourceVersion', 'missing')}")
    return hashlib.sha256(",".join(versions).encode()).hexdigest()[:16]


def _available(deployment: Mapping[str, Any] | None) -> bool:
    return bool(deployment and (deployment.get("status") or {}).get("availableReplicas", 0) >= 1)


async def reconcile_connector(kube: KubeClient, body: Mapping[str, Any], config: OperatorConfig) -> Outcome:
    """Check Secrets; for webhooks run a gateway (ConfigMap, Deployment, Service); report."""
    meta = body["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation", 1))
    status = dict(body.get("status") or {})
    connector = Connector.model_validate({**body, "status": None})
    problems, checksum = await _check_secrets(kube, namespace, _secret_refs(connector))
    if problems:
        message = "; ".join(problems)
        return Outcome(
            _ready(status, generation, False, "SecretNotFound", message, stalled=True),
            [("SecretNotFound", message, True)],
        )
    if connector.spec.rest:
        status["endpoint"] = connector.spec.rest.base_url
        return Outcome(_ready(status, generation, True, "Configured", "secrets present; endpoint probed on a timer"))
    plan = gateway_plan(connector, namespace=namespace)
    configmap = build_plan_configmap(
        f"{meta['name']}-gateway", namespace, plan.to_json(), body, {"onceflow.io/connector": meta["name"]}
    )
    await kube.apply(configmap)
    replicas = connector.spec.webhook.replicas if connector.spec.webhook else 1
    deployment = await kube.apply(
        build_gateway_deployment(
            plan,
            configmap["metadata"]["name"],
            body,
            image=config.image,
            nats_url=config.nats_url,
            replicas=replicas,
            secrets_checksum=checksum,
        )
    )
    await kube.apply(build_gateway_service(plan, body))
    status["endpoint"] = f"http://{meta['name']}-gateway.{namespace}.svc{plan.path}"
    if _available(deployment):
        return Outcome(_ready(status, generation, True, "GatewayAvailable", "the gateway accepts webhooks"))
    return Outcome(
        _ready(
            status,
            generation,
            False,
            "GatewayNotAvailable",
            f"waiting for Deployment {meta['name']}-gateway to have an available pod",
            reconciling=True,
        )
    )


async def probe_connector(body: Mapping[str, Any]) -> dict[str, Any]:
    """GET the REST endpoint's health path; any HTTP answer means reachable."""
    meta = body["metadata"]
    spec = body["spec"].get("rest") or {}
    url = spec["baseURL"].rstrip("/") + spec.get("healthPath", "/")
    started = time.perf_counter()
    status = dict(body.get("status") or {})
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url) as resp,
        ):
            code: int | None = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        code = None
        error = type(exc).__name__
    latency = int((time.perf_counter() - started) * 1000)
    status["lastProbeTime"] = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    status["lastProbeLatencyMs"] = latency
    conditions = list(status.get("conditions") or [])
    generation = int(meta.get("generation", 1))
    if code is None:
        conditions = set_condition(
            conditions,
            "Reachable",
            False,
            "ProbeFailed",
            f"GET {url} failed: {error}",
            generation=generation,
            now=_now(),
        )
    else:
        status["lastHttpStatus"] = code
        conditions = set_condition(
            conditions,
            "Reachable",
            True,
            "Answered",
            f"GET {url} answered {code} in {latency} ms",
            generation=generation,
            now=_now(),
        )
    status["conditions"] = conditions
    return status


async def _connectors(kube: KubeClient, namespace: str) -> dict[str, Connector]:
    """The namespace's Connectors by name; one that does not parse is left out (it is Stalled on its own)."""
    connectors: dict[str, Connector] = {}
    for item in await kube.list(API, "Connector", namespace):
        try:
            connectors[item["metadata"]["name"]] = Connector.model_validate({**item, "status": None})
        except ValidationError:
            continue
    return connectors


async def _revision_number(kube: KubeClient, body: Mapping[str, Any], revision: str, plan_json: str) -> int:
    """Record the revision as a ControllerRevision; an equal older spec reuses its number."""
    meta = body["metadata"]
    existing = await kube.list(
        "apps/v1", "ControllerRevision", meta["namespace"], selector=f"onceflow.io/integration={meta['name']}"
    )
    for item in existing:
        if item["metadata"]["name"] == revision:
            return int(item["revision"])
    number = max((int(i["revision"]) for i in existing), default=0) + 1
    await kube.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": revision,
                "namespace": meta["namespace"],
                "labels": {"onceflow.io/integration": meta["name"], "app.kubernetes.io/part-of": "onceflow"},
                "ownerReferences": [
                    {
                        "apiVersion": API,
                        "kind": "Integration",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": {"planHash": hashlib.sha256(plan_json.encode()).hexdigest()},
            "revision": number,
        }
    )
    return number


async def reconcile_integration(
    kube: KubeClient, body: Mapping[str, Any], config: OperatorConfig, nats: NatsLink | None = None
) -> Outcome:
    """Compile the plan; provision its consumer; apply ConfigMap, ControllerRevision, Deployment; report."""
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
    status = dict(body.get("status") or {})
    integration = Integration.model_validate({**body, "status": None})
    connectors = await _connectors(kube, namespace)
    policy = None
    if integration.spec.sync_policy_ref:
        raw = await kube.get(API, "SyncPolicy", namespace, integration.spec.sync_policy_ref.name)
        policy = SyncPolicy.model_validate({**raw, "status": None}) if raw else None
    try:
        plan = plan_from_integration(integration, connectors, policy, namespace=namespace)
    except InvalidSpec as exc:
        message = str(exc)
        status.update({"phase": "Degraded", "message": message})
        return Outcome(
            _ready(status, generation, False, "InvalidSpec", message, stalled=True),
            [("InvalidSpec", message, True)],
        )
    events: list[tuple[str, str, bool]] = []
    nats_problem = ""
    if nats is not None:
        NATS_CALLS.labels(operation="provision").inc()
        try:
            await natsio.provision_consumer(await nats.jetstream(), plan)
        except Exception as exc:
            NATS_FAILURES.labels(
                operation="provision"
            ).inc()  # any NATS failure: report it, keep the rest of the revision in place
            nats_problem = f"JetStream at {nats.url} could not be provisioned ({type(exc).__name__}); retrying"
            events.append(("NatsUnavailable", nats_problem, True))
        figures = nats.book.figures(namespace, name, plan.revision)
        if figures is not None:
            status["figures"] = figures
    plan_json = plan.to_json()
    configmap = build_plan_configmap(
        name,
        namespace,
        plan_json,
        body,
        {"onceflow.io/integration": name, "onceflow.io/revision": plan.revision},
    )
    await kube.apply(configmap)
    number = await _revision_number(kube, body, plan.revision, plan_json)
    checksum = await _secrets_checksum(kube, namespace, plan_secrets(plan))
    deployment = await kube.apply(
        build_runner_deployment(
            plan,
            configmap["metadata"]["name"],
            body,
            image=config.image,
            nats_url=config.nats_url,
            replicas=integration.spec.replicas,
            secrets_checksum=checksum,
        )
    )
    status.update({"currentRevision": plan.revision, "revision": number})
    if nats_problem:
        status.update({"phase": "Degraded", "message": nats_problem})
        return Outcome(_ready(status, generation, False, "NatsUnavailable", nats_problem, reconciling=True), events)
    if _available(deployment):
        status.update(
            {
                "phase": "Healthy",
                "stableRevision": plan.revision,
                "message": f"revision {number} is serving",
                "canaryWeight": 100,
            }
        )
        return Outcome(_ready(status, generation, True, "RunnersAvailable", status["message"]))
    status.update({"phase": "Progressing", "message": f"waiting for runners of revision {number} ({plan.revision})"})
    return Outcome(_ready(status, generation, False, "RunnersNotAvailable", status["message"], reconciling=True))


def _plan_secret_names(connector: Any) -> list[str]:
    auth = connector.auth
    refs = [
        auth.token,
        auth.username,
        auth.password,
        auth.api_key,
        auth.api_secret,
        auth.client_id,
        auth.client_secret,
    ]
    return [r.name for r in refs if r is not None]


async def finalize_integration(body: Mapping[str, Any], nats: NatsLink) -> None:
    """On delete: remove the Integration's durable consumer (its Deployments go with their owner)."""
    meta = body["metadata"]
    trigger = body["spec"].get("trigger") or {}
    subject = trigger.get("subject") or f"onceflow.{meta['namespace']}.in.x"
    names = nats_names(meta["namespace"], meta["name"], subject)
    NATS_CALLS.labels(operation="remove").inc()
    try:
        await natsio.remove_consumer(await nats.jetstream(), names.stream, names.consumer)
    except Exception:
        NATS_FAILURES.labels(operation="remove").inc()
        raise


async def reconcile_syncpolicy(
    kube: KubeClient, body: Mapping[str, Any], config: OperatorConfig, nats: NatsLink | None = None
) -> Outcome:
    """Validate; list the Integrations that use the policy; run its drift check on a CronJob; report drift."""
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
    status = dict(body.get("status") or {})
    policy = SyncPolicy.model_validate({**body, "status": None})
    users = sorted(
        i["metadata"]["name"]
        for i in await kube.list(API, "Integration", namespace)
        if (i.get("spec", {}).get("syncPolicyRef") or {}).get("name") == name
    )
    status["integrations"] = users
    if policy.spec.reconcile is not None:
        connectors = await _connectors(kube, namespace)
        try:
            plan = reconcile_plan(policy, connectors, namespace=namespace)
        except InvalidSpec as exc:
            return Outcome(
                _ready(status, generation, False, "InvalidSpec", str(exc), stalled=True),
                [("InvalidSpec", str(exc), True)],
            )
        configmap = build_plan_configmap(
            f"{name}-reconcile", namespace, plan.to_json(), body, {"onceflow.io/syncpolicy": name}
        )
        await kube.apply(configmap)
        await kube.apply(
            build_reconcile_cronjob(
                plan,
                configmap["metadata"]["name"],
                body,
                image=config.image,
                nats_url=config.nats_url,
                schedule=policy.spec.reconcile.schedule,
                suspend=policy.spec.reconcile.suspend,
                secrets_checksum=await _secrets_checksum(kube, namespace, plan_secrets(plan)),
            )
        )
        if nats is not None:
            drift = await nats.last_drift(drift_subject(namespace, policy.spec.entity, name))
            if drift is not None:
                status["drift"] = {k: drift[k] for k in ("total", "missingLeft", "missingRight", "mismatched")}
                status["drift"]["lastRunTime"] = drift["time"]
    return Outcome(_ready(status, generation, True, "Valid", f"used by {len(users)} Integration(s)"))
