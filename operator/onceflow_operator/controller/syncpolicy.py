"""Reconcile a SyncPolicy: which Integrations use it, its drift check CronJob, the last drift found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onceflow_operator.api import SyncPolicy
from onceflow_operator.api.names import API_VERSION, LABEL_SYNCPOLICY
from onceflow_operator.build.objects import (
    build_drift_check_cronjob,
    build_plan_configmap,
    drift_check_name,
    plan_secrets,
)
from onceflow_operator.clients.accounts import NatsLinks
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.compiler.planner import InvalidSpec, drift_check_plan
from onceflow_operator.controller.references import secrets_checksum, unusable_secrets
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_operator.controller.status import ReconcileResult, with_ready
from onceflow_operator.controller.view import ClusterView, LiveView
from onceflow_runner.contract.subjects import drift_subject

__all__ = ["reconcile_syncpolicy"]


async def reconcile_syncpolicy(
    kube: KubeClient,
    body: Mapping[str, Any],
    config: OperatorConfig,
    jetstream: NatsLinks | None = None,
    *,
    cluster: ClusterView | None = None,
) -> ReconcileResult:
    """Validate; list the Integrations that use the policy; run its drift check on a CronJob; report drift."""
    cluster = cluster or LiveView(kube)
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
    status = dict(body.get("status") or {})
    policy = SyncPolicy.model_validate({**body, "status": None})
    users = sorted(
        i["metadata"]["name"]
        for i in await kube.list(API_VERSION, "Integration", namespace)
        if (i.get("spec", {}).get("syncPolicyRef") or {}).get("name") == name
    )
    status["integrations"] = users
    if policy.spec.reconcile is not None:
        connectors = await cluster.connectors(namespace)
        try:
            plan = drift_check_plan(policy, connectors, namespace=namespace)
        except InvalidSpec as exc:
            return ReconcileResult(
                with_ready(status, generation, False, "InvalidSpec", str(exc), stalled=True),
                [("InvalidSpec", str(exc), True)],
            )
        refused = await unusable_secrets(kube, namespace, plan_secrets(plan), "a Connector the drift check reads")
        if refused:
            message = "; ".join(refused)
            return ReconcileResult(
                with_ready(status, generation, False, "SecretNotUsable", message, stalled=True),
                [("SecretNotUsable", message, True)],
            )
        configmap = build_plan_configmap(
            drift_check_name(name), namespace, plan.to_json(), body, {LABEL_SYNCPOLICY: name}
        )
        await cluster.ensure(configmap)
        await cluster.ensure(
            build_drift_check_cronjob(
                plan,
                configmap["metadata"]["name"],
                body,
                image=config.image,
                nats_url=config.nats_url,
                nats_auth_secret=config.nats_auth_secret,
                schedule=policy.spec.reconcile.schedule,
                suspend=policy.spec.reconcile.suspend,
                secrets_checksum=await secrets_checksum(kube, namespace, plan_secrets(plan)),
            )
        )
        await _remove_legacy_drift_job(cluster, namespace, name)
        if jetstream is not None:
            drift = await jetstream.last_drift(drift_subject(namespace, policy.spec.entity, name))
            if drift is not None:
                status["drift"] = drift.to_status()
    return ReconcileResult(with_ready(status, generation, True, "Valid", f"used by {len(users)} Integration(s)"))


async def _remove_legacy_drift_job(cluster: ClusterView, namespace: str, name: str) -> None:
    """Delete the `<policy>-reconcile` CronJob and ConfigMap of releases before the drift-check rename.

    Without this an upgraded cluster would run every drift check twice. Remove in the next release.
    """
    await cluster.delete("batch/v1", "CronJob", namespace, f"{name}-reconcile")
    await cluster.delete("v1", "ConfigMap", namespace, f"{name}-reconcile")
