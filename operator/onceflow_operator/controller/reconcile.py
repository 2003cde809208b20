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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import ValidationError

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.api.integration import AnalysisMetric
from onceflow_operator.build.objects import (
    build_gateway_deployment,
    build_gateway_service,
    build_plan_configmap,
    build_reconcile_cronjob,
    build_runner_deployment,
    plan_secrets,
    runner_deployment_name,
    set_condition,
    without_condition,
)
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.clients.prometheus import PrometheusError, query_prometheus
from onceflow_operator.compiler.planner import (
    InvalidSpec,
    drift_subject,
    gateway_plan,
    nats_names,
    plan_from_integration,
    reconcile_plan,
)
from onceflow_operator.controller.figures import FigureBook
from onceflow_operator.controller.metrics import NATS_CALLS, NATS_FAILURES
from onceflow_operator.rollout.decisions import Decision, Measurement, RolloutView, decide, due_metrics
from onceflow_runner.adapters import natsio
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.split import SplitTable

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
    #: A Secret (keys user + password, or token) that every runner, gateway and job reads from its
    #: own namespace for NATS credentials; empty when NATS needs none.
    nats_auth_secret: str = ""


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
            nats_auth_secret=config.nats_auth_secret,
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


def _owner_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API,
        "kind": "Integration",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


async def _revisions(
    kube: KubeClient, body: Mapping[str, Any], revision: str, plan_json: str, version: str
) -> dict[str, int]:
    """Record the revision as a ControllerRevision (an equal older spec reuses its number); all by name."""
    meta = body["metadata"]
    existing = await kube.list(
        "apps/v1", "ControllerRevision", meta["namespace"], selector=f"onceflow.io/integration={meta['name']}"
    )
    numbers = {item["metadata"]["name"]: int(item["revision"]) for item in existing}
    if revision in numbers:
        return numbers
    numbers[revision] = max(numbers.values(), default=0) + 1
    await kube.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": revision,
                "namespace": meta["namespace"],
                "labels": {"onceflow.io/integration": meta["name"], "app.kubernetes.io/part-of": "onceflow"},
                "ownerReferences": [_owner_ref(body)],
            },
            "data": {"planHash": hashlib.sha256(plan_json.encode()).hexdigest(), "version": version},
            "revision": numbers[revision],
        }
    )
    return numbers


async def _prune_revisions(
    kube: KubeClient, namespace: str, name: str, numbers: dict[str, int], keep: set[str], limit: int
) -> None:
    """Delete the oldest revisions beyond `limit` (never one in use) and their plan ConfigMaps."""
    old = sorted((n, r) for r, n in numbers.items() if r not in keep)

    for _, revision in old[: max(0, len(old) - limit)]:
        await kube.delete("apps/v1", "ControllerRevision", namespace, revision)
        for cm in await kube.list("v1", "ConfigMap", namespace, selector=f"onceflow.io/revision={revision}"):
            await kube.delete("v1", "ConfigMap", namespace, cm["metadata"]["name"])
        numbers.pop(revision)


async def _stored_plan(kube: KubeClient, namespace: str, name: str, revision: str) -> tuple[Plan, str] | None:
    """A revision's plan from its immutable ConfigMap, and the ConfigMap's name."""
    selector = f"onceflow.io/integration={name},onceflow.io/revision={revision}"
    for cm in await kube.list("v1", "ConfigMap", namespace, selector=selector):
        text = (cm.get("data") or {}).get("plan.json")
        if text:
            return Plan.model_validate_json(text), cm["metadata"]["name"]
    return None


def _lane_state(deployment: Mapping[str, Any] | None) -> tuple[str | None, bool]:
    """(revision the lane's pods run, whether they are all updated and available)."""
    if not deployment:
        return None, False
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    revision = ((spec.get("template") or {}).get("metadata") or {}).get("labels", {}).get("onceflow.io/revision")
    want = int(spec.get("replicas", 1))
    current = int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 1))
    ready = (
        current
        and int(status.get("updatedReplicas", 0)) >= want
        and int(status.get("availableReplicas", 0)) >= min(want, 1)
    )
    return revision, ready


async def _measure(
    metric: AnalysisMetric, nats: NatsLink | None, namespace: str, name: str, revision: str
) -> Measurement:
    """One reading: a Prometheus query, or the canary revision's heartbeat window."""
    if metric.provider.prometheus is None:
        result = nats.book.analysis(namespace, name, revision) if nats is not None else None
        return Measurement(result, "" if result else "no canary runner settled a record in the last minute")
    source = metric.provider.prometheus
    try:
        return Measurement(await query_prometheus(source.address, source.query))
    except PrometheusError as exc:
        return Measurement(None, str(exc))


@dataclass
class _Lanes:
    """What NATS says about an Integration's lanes."""

    table: SplitTable | None = None
    canary_floor: int | None = None
    main_floor: int | None = None

    @property
    def canary_drained(self) -> bool:
        if self.canary_floor is None:
            return True
        return self.table is not None and self.table.weight == 0 and self.canary_floor >= self.table.last_sequence


async def _observe_lanes(js: JetStreamContext, plan: Plan) -> _Lanes:
    subject = natsio.rollout_subject(plan.nats, plan.namespace, plan.integration)
    return _Lanes(
        table=await natsio.read_split(js, plan.nats.stream, subject),
        canary_floor=await natsio.ack_floor(js, plan.nats.stream, natsio.lane_consumer(plan, "canary")),
        main_floor=await natsio.ack_floor(js, plan.nats.stream, natsio.lane_consumer(plan, "main")),
    )


async def _apply_split(js: JetStreamContext, lanes: _Lanes, main: Plan, canary: Plan | None, weight: int) -> int:
    """Publish a split marker when the weight in force must change; open the canary lane at its first marker."""
    table = lanes.table
    subject = natsio.rollout_subject(main.nats, main.namespace, main.integration)
    opening = canary is not None and lanes.canary_floor is None
    if opening or (table is not None and table.weight != weight) or (table is None and weight != 0):
        # Only markers below *both* lanes' ack floors are forgotten: a lagging lane still judges by them.
        floors = [f for f in (lanes.main_floor, lanes.canary_floor) if f is not None]
        base = table.compacted(min(floors, default=0)) if table is not None else None
        table = await natsio.publish_split(js, subject, base, weight)
        lanes.table = table
    if opening and canary is not None and table is not None:
        await natsio.provision_consumer(js, canary, "canary", start_sequence=table.last_sequence)
        lanes.canary_floor = 0
    return table.last_sequence if table is not None else 0


def _conditions(status: dict[str, Any], generation: int, decision: Decision) -> list[dict[str, Any]]:
    conditions = list(status.get("conditions") or [])
    now = _now()
    for kind, (ok, reason, message) in (
        ("Ready", decision.ready),
        ("Available", decision.available),
        ("Progressing", decision.progressing),
    ):
        conditions = set_condition(conditions, kind, ok, reason, message, generation=generation, now=now)
    stalled = decision.ready[1] in {"ProgressDeadlineExceeded", "RolloutAborted", "AnalysisFailed"}
    for kind, on in (("Stalled", stalled), ("Reconciling", not decision.ready[0] and not stalled)):
        conditions = (
            set_condition(conditions, kind, True, decision.ready[1], decision.ready[2], generation=generation, now=now)
            if on
            else without_condition(conditions, kind)
        )
    return conditions


async def reconcile_integration(
    kube: KubeClient,
    body: Mapping[str, Any],
    config: OperatorConfig,
    nats: NatsLink | None = None,
    action: str | None = None,
) -> Outcome:
    """Compile the revision, decide the rollout, run each lane's revision, move the split, report."""
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
    plan_json = plan.to_json()
    configmap = build_plan_configmap(
        name, namespace, plan_json, body, {"onceflow.io/integration": name, "onceflow.io/revision": plan.revision}
    )
    await kube.apply(configmap)
    numbers = await _revisions(kube, body, plan.revision, plan_json, integration.spec.version)
    plans = {plan.revision: (plan, configmap["metadata"]["name"])}

    async def plan_of(revision: str) -> tuple[Plan, str]:
        if revision not in plans:
            plans[revision] = await _stored_plan(kube, namespace, name, revision) or plans[plan.revision]
        return plans[revision]

    deployments = {
        lane: await kube.get("apps/v1", "Deployment", namespace, runner_deployment_name(name, lane))
        for lane in ("main", "canary")
    }
    main_running, main_available = _lane_state(deployments["main"])
    canary_running, canary_available = _lane_state(deployments["canary"])
    events: list[tuple[str, str, bool]] = []
    nats_problem = ""
    lanes = _Lanes()
    js: JetStreamContext | None = None
    if nats is not None:
        try:
            js = await nats.jetstream()
            lanes = await _observe_lanes(js, plan)
        except Exception as exc:  # NATS away: no rollout step moves until it is back
            js = None
            nats_problem = f"JetStream at {nats.url} is not reachable ({type(exc).__name__}); retrying"
    stable = status.get("stableRevision") or None
    view = RolloutView(
        desired=plan.revision,
        stable=stable,
        strategy=integration.spec.strategy,
        status=status,
        now=_now(),
        main_running=main_running,
        main_available=main_available,
        canary_running=canary_running,
        canary_available=canary_available,
        canary_drained=lanes.canary_drained if js is not None else False,
        spec_paused=integration.spec.paused,
        progress_deadline_seconds=integration.spec.progress_deadline_seconds,
        action=action,
        revision_numbers=numbers,
    )
    if js is not None:
        measured = {m.name: await _measure(m, nats, namespace, name, plan.revision) for m in due_metrics(view)}
        view = replace(view, measurements=measured)
    decision = decide(view)
    if js is None and nats is not None:  # hold every lane and the split where they are
        decision.main = main_running or decision.main
        decision.canary = canary_running
    main_plan, main_cm = await plan_of(decision.main)
    canary_plan = (await plan_of(decision.canary))[0] if decision.canary else None
    if js is not None and nats is not None:
        NATS_CALLS.labels(operation="provision").inc()
        try:
            await natsio.provision_consumer(js, main_plan)
            if canary_plan is not None or lanes.table is not None:
                decision.status.setdefault("rollout", {})["splitSequence"] = await _apply_split(
                    js, lanes, main_plan, canary_plan, decision.weight
                )
            if decision.canary is None and lanes.canary_floor is not None and deployments["canary"] is None:
                await natsio.remove_consumer(js, plan.nats.stream, natsio.lane_consumer(plan, "canary"))
        except Exception as exc:
            NATS_FAILURES.labels(operation="provision").inc()
            nats_problem = f"JetStream at {nats.url} could not be provisioned ({type(exc).__name__}); retrying"
    if nats_problem:
        events.append(("NatsUnavailable", nats_problem, True))
    await _apply_lane(kube, config, body, "main", main_plan, main_cm, integration.spec.replicas, integration)
    if decision.canary is not None and canary_plan is not None and (js is not None or deployments["canary"]):
        canary_cm = (await plan_of(decision.canary))[1]
        await _apply_lane(kube, config, body, "canary", canary_plan, canary_cm, 1, integration)
    elif deployments["canary"] is not None:
        await kube.delete("apps/v1", "Deployment", namespace, runner_deployment_name(name, "canary"))
    in_use = (decision.canary, decision.status.get("stableRevision") or stable)
    keep = {plan.revision, decision.main, *(r for r in in_use if r)}
    await _prune_revisions(kube, namespace, name, numbers, keep, integration.spec.revision_history_limit)
    if nats is not None:
        figures = nats.book.figures(namespace, name, decision.main)
        if figures is not None:
            status["figures"] = figures
    status.update(decision.status)
    status.update({"currentRevision": plan.revision, "revision": numbers[plan.revision]})
    events.extend(decision.events)
    if nats_problem:
        status.update({"phase": "Degraded", "message": nats_problem})
        return Outcome(_ready(status, generation, False, "NatsUnavailable", nats_problem, reconciling=True), events)
    status["conditions"] = _conditions(status, generation, decision)
    status["observedGeneration"] = generation
    return Outcome(status, events)


async def _apply_lane(
    kube: KubeClient,
    config: OperatorConfig,
    body: Mapping[str, Any],
    lane: str,
    plan: Plan,
    configmap: str,
    replicas: int,
    integration: Integration,
) -> dict[str, Any]:
    checksum = await _secrets_checksum(kube, plan.namespace, plan_secrets(plan))
    return await kube.apply(
        build_runner_deployment(
            plan,
            configmap,
            body,
            image=config.image,
            nats_url=config.nats_url,
            nats_auth_secret=config.nats_auth_secret,
            replicas=replicas,
            secrets_checksum=checksum,
            lane=lane,
            strategy=integration.spec.strategy.type,
        )
    )


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
                nats_auth_secret=config.nats_auth_secret,
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
