"""Pure builders: the Kubernetes objects the operator creates, from plans and API objects.

No I/O here: every function returns dicts, tested against expected shapes without a cluster.
Runner and gateway pods meet the *restricted* Pod Security profile and get no API access.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from onceflow_operator.api.names import (
    LABEL_CONNECTOR,
    LABEL_INTEGRATION,
    LABEL_LANE,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_REVISION,
    LABEL_SYNCPOLICY,
    PART_OF_LABELS,
    SECRETS_CHECKSUM_ANNOTATION,
)
from onceflow_operator.build.pods import GATEWAY_PORT, METRICS_PORT, PLAN_MOUNT, SECRETS_MOUNT, pod_template
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.environment import TRACE_HASH_KEY_ENV, TRACE_HASH_KEY_SECRET_KEY
from onceflow_runner.contract.plan import DriftCheckPlan, GatewayPlan, Plan, SecretRef

__all__ = [
    "build_controller_revision",
    "build_drift_check_cronjob",
    "build_gateway_deployment",
    "build_gateway_service",
    "build_plan_configmap",
    "build_runner_deployment",
    "drift_check_name",
    "owner_reference",
    "plan_secrets",
    "runner_deployment_name",
]


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """Make `owner` the controller of what we create (deleted with it, shown by kubectl)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def plan_secrets(plan: Plan | GatewayPlan | DriftCheckPlan | EdiPartnerPlan) -> list[str]:
    """Names of the Secrets a plan reads, sorted."""
    refs: list[SecretRef | None] = []
    if isinstance(plan, EdiPartnerPlan):
        sftp = plan.sftp
        refs += [sftp.user, sftp.password, sftp.private_key, sftp.known_hosts]
    elif isinstance(plan, GatewayPlan):
        refs.append(plan.signature.secret)
    else:
        connectors = (
            [plan.left.connector, plan.right.connector]
            if isinstance(plan, DriftCheckPlan)
            else plan.connectors.values()
        )
        for connector in connectors:
            auth = connector.auth
            refs += [
                auth.token,
                auth.username,
                auth.password,
                auth.api_key,
                auth.api_secret,
                auth.client_id,
                auth.client_secret,
                auth.assertion_key,
                *(auth.session_login.secrets.values() if auth.session_login else ()),
            ]
    return sorted({r.name for r in refs if r is not None})


def build_plan_configmap(
    name: str, namespace: str, plan_json: str, owner: Mapping[str, Any], labels: Mapping[str, str]
) -> dict[str, Any]:
    """An immutable ConfigMap holding one plan; its name carries the plan's hash."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-plan-{_short_hash(plan_json)}",
            "namespace": namespace,
            "labels": {**PART_OF_LABELS, **labels},
            "ownerReferences": [owner_reference(owner)],
        },
        "immutable": True,
        "data": {"plan.json": plan_json},
    }


def _deployment(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    owner: Mapping[str, Any],
    replicas: int,
    template: dict[str, Any],
    strategy: str = "RollingUpdate",
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector)},
            "strategy": {"type": strategy},
            "template": template,
        },
    }


def runner_deployment_name(integration: str, lane: str) -> str:
    """`<integration>-runner` for the main lane, `<integration>-canary` for a rollout's canary lane."""
    return f"{integration}-runner" if lane == "main" else f"{integration}-canary"


def build_runner_deployment(
    plan: Plan,
    configmap: str,
    owner: Mapping[str, Any],
    *,
    image: str,
    nats_url: str,
    replicas: int,
    secrets_checksum: str,
    lane: str = "main",
    strategy: str = "RollingUpdate",
    nats_auth_secret: str = "",
    tracing_env: Sequence[tuple[str, str]] = (),
    trace_key_secret: str = "",
) -> dict[str, Any]:
    """The runner Deployment of one lane; its pods run `plan`'s revision (the selector names the lane only).

    `tracing_env`: the operator's OTEL_* settings, so the pods export spans when it was told to.
    `trace_key_secret`: the namespace's Secret with the key spans hash business keys with.
    """
    selector = {LABEL_INTEGRATION: plan.integration, LABEL_LANE: lane}
    labels = {
        **PART_OF_LABELS,
        LABEL_NAME: "onceflow-runner",
        **selector,
        LABEL_REVISION: plan.revision,
    }
    args = [
        "runner",
        "--plan",
        f"{PLAN_MOUNT}/plan.json",
        "--nats",
        nats_url,
        "--secrets-dir",
        SECRETS_MOUNT,
        "--port",
        str(METRICS_PORT),
        "--lane",
        lane,
    ]
    annotations = {
        SECRETS_CHECKSUM_ANNOTATION: secrets_checksum,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
    }
    return _deployment(
        runner_deployment_name(plan.integration, lane),
        plan.namespace,
        labels,
        selector,
        owner,
        replicas,
        pod_template(
            labels=labels,
            image=image,
            args=args,
            configmap=configmap,
            secrets=plan_secrets(plan),
            port=METRICS_PORT,
            port_name="metrics",
            annotations=annotations,
            nats_auth_secret=nats_auth_secret,
            extra_env=tracing_env,
            secret_env=[(TRACE_HASH_KEY_ENV, trace_key_secret, TRACE_HASH_KEY_SECRET_KEY)] if trace_key_secret else [],
        ),
        "Recreate" if strategy == "Recreate" else "RollingUpdate",
    )


def build_gateway_deployment(
    plan: GatewayPlan,
    configmap: str,
    owner: Mapping[str, Any],
    *,
    image: str,
    nats_url: str,
    replicas: int,
    secrets_checksum: str,
    nats_auth_secret: str = "",
    tracing_env: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The gateway Deployment of one webhook Connector (`<connector>-gateway`); `tracing_env` as the runner's."""
    labels = {
        **PART_OF_LABELS,
        LABEL_NAME: "onceflow-gateway",
        LABEL_CONNECTOR: plan.connector,
    }
    args = [
        "gateway",
        "--plan",
        f"{PLAN_MOUNT}/plan.json",
        "--nats",
        nats_url,
        "--secrets-dir",
        SECRETS_MOUNT,
        "--port",
        str(GATEWAY_PORT),
    ]
    return _deployment(
        f"{plan.connector}-gateway",
        plan.namespace,
        labels,
        {LABEL_CONNECTOR: plan.connector, LABEL_NAME: "onceflow-gateway"},
        owner,
        replicas,
        pod_template(
            labels=labels,
            image=image,
            args=args,
            configmap=configmap,
            secrets=plan_secrets(plan),
            port=GATEWAY_PORT,
            port_name="http",
            annotations={
                SECRETS_CHECKSUM_ANNOTATION: secrets_checksum,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
            },
            nats_auth_secret=nats_auth_secret,
            operations_port=METRICS_PORT,
            extra_env=tracing_env,
        ),
    )


def edi_deployment_name(connector: str) -> str:
    """`<connector>-edi`: the Deployment polling an EDI Connector's SFTP folders."""
    return f"{connector}-edi"


def build_edi_deployment(
    plan: EdiPartnerPlan,
    configmap: str,
    owner: Mapping[str, Any],
    *,
    image: str,
    nats_url: str,
    replicas: int,
    secrets_checksum: str,
    nats_auth_secret: str = "",
) -> dict[str, Any]:
    """The EDI poller Deployment of one EDI Connector; replicas share the folders (files are claimed by rename)."""
    selector = {LABEL_CONNECTOR: plan.connector, LABEL_NAME: "onceflow-edi"}
    labels = {**PART_OF_LABELS, **selector}
    args = [
        "edi-inbound",
        "--plan",
        f"{PLAN_MOUNT}/plan.json",
        "--nats",
        nats_url,
        "--secrets-dir",
        SECRETS_MOUNT,
        "--port",
        str(METRICS_PORT),
    ]
    return _deployment(
        edi_deployment_name(plan.connector),
        plan.namespace,
        labels,
        selector,
        owner,
        replicas,
        pod_template(
            labels=labels,
            image=image,
            args=args,
            configmap=configmap,
            secrets=plan_secrets(plan),
            port=METRICS_PORT,
            port_name="metrics",
            annotations={
                SECRETS_CHECKSUM_ANNOTATION: secrets_checksum,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
            },
            nats_auth_secret=nats_auth_secret,
        ),
    )


def drift_check_name(sync_policy: str) -> str:
    """Name of a SyncPolicy's drift-check CronJob and plan ConfigMap."""
    return f"{sync_policy}-drift-check"


def build_drift_check_cronjob(
    plan: DriftCheckPlan,
    configmap: str,
    owner: Mapping[str, Any],
    *,
    image: str,
    nats_url: str,
    schedule: str,
    suspend: bool,
    secrets_checksum: str,
    nats_auth_secret: str = "",
) -> dict[str, Any]:
    """The CronJob that runs `onceflow drift-check` for one SyncPolicy (`<policy>-drift-check`)."""
    labels = {**PART_OF_LABELS, LABEL_NAME: "onceflow-drift-check", LABEL_SYNCPOLICY: plan.sync_policy}
    args = ["drift-check", "--plan", f"{PLAN_MOUNT}/plan.json", "--nats", nats_url, "--secrets-dir", SECRETS_MOUNT]
    template = pod_template(
        labels=labels,
        image=image,
        args=args,
        configmap=configmap,
        secrets=plan_secrets(plan),
        port=METRICS_PORT,
        port_name="metrics",
        annotations={SECRETS_CHECKSUM_ANNOTATION: secrets_checksum},
        nats_auth_secret=nats_auth_secret,
    )
    container = template["spec"]["containers"][0]
    del container["livenessProbe"], container["readinessProbe"]  # a job that runs once and exits
    template["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": drift_check_name(plan.sync_policy),
            "namespace": plan.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "schedule": schedule,
            "suspend": suspend,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 2, "activeDeadlineSeconds": 1800, "template": template}},
        },
    }


def build_gateway_service(plan: GatewayPlan, owner: Mapping[str, Any]) -> dict[str, Any]:
    """The Service senders post to: http://<connector>-gateway.<namespace>.svc<path>.

    Only the webhook port: /metrics and the probes are on the pods' `metrics` port, scraped per pod.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{plan.connector}-gateway",
            "namespace": plan.namespace,
            "labels": {**PART_OF_LABELS, LABEL_CONNECTOR: plan.connector},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "selector": {
                LABEL_CONNECTOR: plan.connector,
                LABEL_NAME: "onceflow-gateway",
            },
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def build_controller_revision(
    owner: Mapping[str, Any], revision: str, plan_json: str, version: str, number: int
) -> dict[str, Any]:
    """The ControllerRevision that records one Integration revision (hash of its plan, its number)."""
    meta = owner["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision,
            "namespace": meta["namespace"],
            "labels": {LABEL_INTEGRATION: meta["name"], LABEL_PART_OF: "onceflow"},
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {"planHash": hashlib.sha256(plan_json.encode()).hexdigest(), "version": version},
        "revision": number,
    }
