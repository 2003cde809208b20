"""Reconcile an Integration: compile its revision, decide the rollout, run each lane, move the split.

Level-based and idempotent: every pass reads the object and what it references, applies what the
pure builders return (server-side apply, so a second pass changes nothing) and returns the status.
The rollout itself is decided in `rollout.decisions`; JetStream is reached through
`clients.jetstream`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from onceflow_operator.api import Integration, SyncPolicy
from onceflow_operator.api.names import API_VERSION, LABEL_INTEGRATION, LABEL_REVISION
from onceflow_operator.api.rollout import AnalysisMetric
from onceflow_operator.build.conditions import set_condition, without_condition
from onceflow_operator.build.objects import (
    build_controller_revision,
    build_plan_configmap,
    build_runner_deployment,
    plan_secrets,
    runner_deployment_name,
)
from onceflow_operator.clients.accounts import AccountError, NatsLinks
from onceflow_operator.clients.jetstream import LaneState
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.clients.prometheus import PrometheusError, query_prometheus
from onceflow_operator.compiler.planner import InvalidSpec, nats_names, plan_from_integration
from onceflow_operator.controller.figures import FigureBook
from onceflow_operator.controller.identity import integration_secret
from onceflow_operator.controller.metrics import NATS_CALLS, NATS_FAILURES
from onceflow_operator.controller.references import secrets_checksum, unusable_secrets
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_operator.controller.status import ReconcileResult, now, with_ready
from onceflow_operator.controller.view import ClusterView, LiveView
from onceflow_operator.rollout.analysis import Measurement, min_records, waiting_for_data
from onceflow_operator.rollout.decisions import RolloutDecision, RolloutView, decide, due_metrics
from onceflow_runner.contract import subjects
from onceflow_runner.contract.environment import TRACE_HASH_KEY_SECRET
from onceflow_runner.contract.plan import Plan

__all__ = ["finalize_integration", "lane_state", "reconcile_integration", "stored_plan"]


async def _revisions(
    cluster: ClusterView, body: Mapping[str, Any], revision: str, plan_json: str, version: str
) -> tuple[dict[str, int], dict[str, str]]:
    """Record the revision as a ControllerRevision (an equal older spec reuses its number).

    Returns every revision's number and the hash of its plan, by revision name.
    """
    meta = body["metadata"]
    existing = await cluster.revisions(meta["namespace"], meta["name"])
    numbers = {item["metadata"]["name"]: int(item["revision"]) for item in existing}
    hashes = {item["metadata"]["name"]: str((item.get("data") or {}).get("planHash", "")) for item in existing}
    if revision in numbers:
        return numbers, hashes
    numbers[revision] = max(numbers.values(), default=0) + 1
    record = build_controller_revision(body, revision, plan_json, version, numbers[revision])
    hashes[revision] = record["data"]["planHash"]
    await cluster.ensure(record)
    return numbers, hashes


async def _prune_revisions(
    kube: KubeClient, cluster: ClusterView, namespace: str, numbers: dict[str, int], keep: set[str], limit: int
) -> None:
    """Delete the oldest revisions beyond `limit` (never one in use) and their plan ConfigMaps."""
    old = sorted((n, r) for r, n in numbers.items() if r not in keep)
    for _, revision in old[: max(0, len(old) - limit)]:
        await cluster.delete("apps/v1", "ControllerRevision", namespace, revision, known=True)
        for cm in await kube.list("v1", "ConfigMap", namespace, selector=f"{LABEL_REVISION}={revision}"):
            await cluster.delete("v1", "ConfigMap", namespace, cm["metadata"]["name"], known=True)
        numbers.pop(revision)


async def stored_plan(
    kube: KubeClient, namespace: str, name: str, revision: str, plan_hash: str
) -> tuple[Plan, str] | None:
    """A revision's plan from its immutable ConfigMap, and the ConfigMap's name.

    Only a plan whose SHA-256 equals the hash its ControllerRevision recorded is returned: a plan
    ConfigMap replaced by someone else (deleted and re-created: it is immutable) never runs.
    """
    selector = f"{LABEL_INTEGRATION}={name},{LABEL_REVISION}={revision}"
    for cm in await kube.list("v1", "ConfigMap", namespace, selector=selector):
        text = (cm.get("data") or {}).get("plan.json")
        if text and plan_hash and hashlib.sha256(text.encode()).hexdigest() == plan_hash:
            return Plan.model_validate_json(text), cm["metadata"]["name"]
    return None


def lane_state(deployment: Mapping[str, Any] | None) -> tuple[str | None, bool]:
    """(revision the lane's pods run, whether they are all updated and available)."""
    if not deployment:
        return None, False
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    revision = ((spec.get("template") or {}).get("metadata") or {}).get("labels", {}).get(LABEL_REVISION)
    want = int(spec.get("replicas", 1))
    current = int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 1))
    ready = (
        current
        and int(status.get("updatedReplicas", 0)) >= want
        and int(status.get("availableReplicas", 0)) >= min(want, 1)
    )
    return revision, ready


async def _measure(
    metric: AnalysisMetric, book: FigureBook | None, namespace: str, name: str, revision: str
) -> Measurement:
    """One reading: a Prometheus query, or the canary revision's heartbeat window.

    A heartbeat window with fewer canary records than the metric's `minRecords` is waiting for
    data, not a reading (see `rollout.analysis`).
    """
    if metric.provider.prometheus is None:
        result = book.analysis(namespace, name, revision) if book is not None else None
        records = int(result["count"]) if result else 0
        if records < min_records(metric):
            return waiting_for_data(metric, records)
        return Measurement(result)
    source = metric.provider.prometheus
    try:
        return Measurement(await query_prometheus(source.address, source.query))
    except PrometheusError as exc:
        return Measurement(None, str(exc))


def _conditions(status: dict[str, Any], generation: int, decision: RolloutDecision) -> list[dict[str, Any]]:
    conditions = list(status.get("conditions") or [])
    moment = now()
    for kind, (ok, reason, message) in (
        ("Ready", decision.ready),
        ("Available", decision.available),
        ("Progressing", decision.progressing),
    ):
        conditions = set_condition(conditions, kind, ok, reason, message, generation=generation, now=moment)
    stalled = decision.ready[1] in {"ProgressDeadlineExceeded", "RolloutAborted", "AnalysisFailed"}
    for kind, on in (("Stalled", stalled), ("Reconciling", not decision.ready[0] and not stalled)):
        conditions = (
            set_condition(
                conditions, kind, True, decision.ready[1], decision.ready[2], generation=generation, now=moment
            )
            if on
            else without_condition(conditions, kind)
        )
    return conditions


async def reconcile_integration(
    kube: KubeClient,
    body: Mapping[str, Any],
    config: OperatorConfig,
    jetstream: NatsLinks | None = None,
    action: str | None = None,
    *,
    book: FigureBook | None = None,
    cluster: ClusterView | None = None,
) -> ReconcileResult:
    """Compile the revision, decide the rollout, run each lane's revision, move the split, report.

    `cluster` is what the operator's watches already know (`controller.view`); without one, every
    answer comes from the API server and every owned object is applied.
    """
    cluster = cluster or LiveView(kube)
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
    status = dict(body.get("status") or {})
    integration = Integration.model_validate({**body, "status": None})
    connectors = await cluster.connectors(namespace)
    policy = None
    if integration.spec.sync_policy_ref:
        raw = await kube.get(API_VERSION, "SyncPolicy", namespace, integration.spec.sync_policy_ref.name)
        policy = SyncPolicy.model_validate({**raw, "status": None}) if raw else None
    try:
        plan = plan_from_integration(integration, connectors, policy, namespace=namespace)
    except InvalidSpec as exc:
        message = str(exc)
        status.update({"phase": "Degraded", "message": message})
        return ReconcileResult(
            with_ready(status, generation, False, "InvalidSpec", message, stalled=True),
            [("InvalidSpec", message, True)],
            needs_fix=True,
        )
    refused = await unusable_secrets(kube, namespace, plan_secrets(plan), "a Connector this Integration calls")
    if refused:
        message = "; ".join(refused)
        status.update({"phase": "Degraded", "message": message})
        return ReconcileResult(
            with_ready(status, generation, False, "SecretNotUsable", message, stalled=True),
            [("SecretNotUsable", message, True)],
            needs_fix=True,
        )
    plan_json = plan.to_json()
    configmap = build_plan_configmap(
        name, namespace, plan_json, body, {LABEL_INTEGRATION: name, LABEL_REVISION: plan.revision}
    )
    await cluster.ensure(configmap)
    numbers, hashes = await _revisions(cluster, body, plan.revision, plan_json, integration.spec.version)
    plans = {plan.revision: (plan, configmap["metadata"]["name"])}
    events: list[tuple[str, str, bool]] = []

    async def plan_of(revision: str) -> tuple[Plan, str]:
        if revision not in plans:
            stored = await stored_plan(kube, namespace, name, revision, hashes.get(revision, ""))
            if stored is None:
                events.append(
                    (
                        "StoredPlanMismatch",
                        f"the plan of revision {revision} is missing or does not match its ControllerRevision's "
                        f"hash; running revision {plan.revision} instead",
                        True,
                    )
                )
            plans[revision] = stored or plans[plan.revision]
        return plans[revision]

    deployments = {
        lane: await cluster.deployment(namespace, runner_deployment_name(name, lane)) for lane in ("main", "canary")
    }
    main_running, main_available = lane_state(deployments["main"])
    canary_running, canary_available = lane_state(deployments["canary"])
    nats_problem = ""
    lanes = LaneState()
    reached = False
    if jetstream is not None:
        try:
            lanes = await jetstream.observe_lanes(plan)
            reached = True
        except Exception as exc:  # NATS away: no rollout step moves until it is back
            nats_problem = f"JetStream at {jetstream.url} is not reachable ({_why(exc)}); retrying"
    stable = status.get("stableRevision") or None
    view = RolloutView(
        desired=plan.revision,
        stable=stable,
        strategy=integration.spec.strategy,
        status=status,
        now=now(),
        main_running=main_running,
        main_available=main_available,
        canary_running=canary_running,
        canary_available=canary_available,
        canary_drained=lanes.canary_drained if reached else False,
        spec_paused=integration.spec.paused,
        progress_deadline_seconds=integration.spec.progress_deadline_seconds,
        action=action,
        revision_numbers=numbers,
    )
    if reached:
        measured = {m.name: await _measure(m, book, namespace, name, plan.revision) for m in due_metrics(view)}
        view = replace(view, measurements=measured)
    decision = decide(view)
    if jetstream is not None and not reached:  # hold every lane and the split where they are
        decision.main = main_running or decision.main
        decision.canary = canary_running
    main_plan, main_cm = await plan_of(decision.main)
    canary_plan = (await plan_of(decision.canary))[0] if decision.canary else None
    if jetstream is not None and reached:
        NATS_CALLS.labels(operation="provision").inc()
        try:
            await jetstream.provision(main_plan)
            if canary_plan is not None or lanes.table is not None:
                decision.status.setdefault("rollout", {})["splitSequence"] = await jetstream.apply_split(
                    lanes, main_plan, canary_plan, decision.weight
                )
            if decision.canary is None and lanes.canary_floor is not None and deployments["canary"] is None:
                await jetstream.remove_lane(plan, "canary")
        except Exception as exc:
            NATS_FAILURES.labels(operation="provision").inc()
            nats_problem = f"JetStream at {jetstream.url} could not be provisioned ({_why(exc)}); retrying"
    if nats_problem:
        events.append(("NatsUnavailable", nats_problem, True))
    await _apply_lane(kube, cluster, config, body, "main", main_plan, main_cm, integration.spec.replicas, integration)
    if decision.canary is not None and canary_plan is not None and (reached or deployments["canary"]):
        canary_cm = (await plan_of(decision.canary))[1]
        await _apply_lane(kube, cluster, config, body, "canary", canary_plan, canary_cm, 1, integration)
    elif deployments["canary"] is not None:
        await cluster.delete("apps/v1", "Deployment", namespace, runner_deployment_name(name, "canary"), known=True)
    in_use = (decision.canary, decision.status.get("stableRevision") or stable)
    keep = {plan.revision, decision.main, *(r for r in in_use if r)}
    await _prune_revisions(kube, cluster, namespace, numbers, keep, integration.spec.revision_history_limit)
    if book is not None:
        figures = book.figures(namespace, name, numbers)
        if figures is not None:
            status["figures"] = figures
    status.update(decision.status)
    status.update({"currentRevision": plan.revision, "revision": numbers[plan.revision]})
    events.extend(decision.events)
    if nats_problem:
        status.update({"phase": "Degraded", "message": nats_problem})
        return ReconcileResult(
            with_ready(status, generation, False, "NatsUnavailable", nats_problem, reconciling=True), events
        )
    status["conditions"] = _conditions(status, generation, decision)
    status["observedGeneration"] = generation
    return ReconcileResult(status, events)


async def _apply_lane(
    kube: KubeClient,
    cluster: ClusterView,
    config: OperatorConfig,
    body: Mapping[str, Any],
    lane: str,
    plan: Plan,
    configmap: str,
    replicas: int,
    integration: Integration,
) -> dict[str, Any]:
    checksum = await secrets_checksum(kube, plan.namespace, plan_secrets(plan))
    return await cluster.ensure(
        build_runner_deployment(
            plan,
            configmap,
            body,
            image=config.image,
            nats_url=config.nats_url,
            # With issued identities, an Integration's runners read their own user (its consumers only).
            nats_auth_secret=integration_secret(plan.integration) if config.identities else config.nats_auth_secret,
            tracing_env=config.tracing_env,
            trace_key_secret=TRACE_HASH_KEY_SECRET if config.trace_keys else "",
            replicas=replicas,
            secrets_checksum=checksum,
            lane=lane,
            strategy=integration.spec.strategy.type,
        )
    )


def _why(exc: Exception) -> str:
    """An error for a status line: an account-mode refusal says what to do (it holds no secret); others their type."""
    return str(exc) if isinstance(exc, AccountError) else type(exc).__name__


async def finalize_integration(body: Mapping[str, Any], jetstream: NatsLinks) -> None:
    """On delete: remove the Integration's durable consumer (its Deployments go with their owner)."""
    meta = body["metadata"]
    trigger = body["spec"].get("trigger") or {}
    subject = trigger.get("subject") or subjects.inbound_prefix(meta["namespace"], "x")
    names = nats_names(meta["namespace"], meta["name"], subject)
    NATS_CALLS.labels(operation="remove").inc()
    try:
        await jetstream.remove_consumer(meta["namespace"], names.stream, names.consumer)
    except Exception:
        NATS_FAILURES.labels(operation="remove").inc()
        raise
