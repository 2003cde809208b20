"""The pod every Onceflow workload runs (pure): restricted Pod Security, no API access, plan and secrets mounted.

Runner, gateway and drift-check pods differ only in their command, ports and labels; the rest
(security context, volumes, NATS credentials from a Secret, probes) is decided here once. A
gateway has two ports: `http` for webhooks (the only one its Service exposes) and `metrics` for
/metrics and the probes, so operations endpoints are never reachable through the public path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from onceflow_runner.contract.environment import METRICS_PORT_ENV, NAMESPACE_ENV, NATS_CREDS_KEY

__all__ = [
    "GATEWAY_PORT",
    "METRICS_PORT",
    "PLAN_MOUNT",
    "SECRETS_MOUNT",
    "nats_auth_env",
    "pod_template",
    "secrets_checksum_of",
]

PLAN_MOUNT = "/etc/onceflow"
SECRETS_MOUNT = "/var/run/onceflow/secrets"
METRICS_PORT = 9090
GATEWAY_PORT = 8080


def _pod_security() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def pod_template(
    *,
    labels: Mapping[str, str],
    image: str,
    args: list[str],
    configmap: str,
    secrets: Iterable[str],
    port: int,
    port_name: str,
    annotations: Mapping[str, str],
    nats_auth_secret: str = "",
    operations_port: int | None = None,
    extra_env: Iterable[tuple[str, str]] = (),
    secret_env: Iterable[tuple[str, str, str]] = (),
    processes: int = 1,
) -> dict[str, Any]:
    """The pod template of a runner, gateway or drift-check pod: the plan and each Secret mounted read-only.

    `port` is the pod's main port; with `operations_port` (a gateway) metrics and probes move to
    a second port named `metrics`, passed to the process as $ONCEFLOW_METRICS_PORT. `extra_env`:
    plain variables for the process (the operator's tracing settings, docs/observability.md).
    `secret_env`: (variable, Secret, key) read from a Secret of the pod's namespace, required: a
    pod whose Secret is missing waits for it (kubelet retries until the operator writes it again)
    instead of starting without it, e.g. hashing business keys with a reversible unkeyed hash.
    `processes` (a gateway's processesPerPod): the CPU request and memory limit grow with it, each
    process being a Python interpreter of its own.
    """
    pod_security, container_security = _pod_security()
    secret_list = list(secrets)
    volumes: list[dict[str, Any]] = [
        {"name": "plan", "configMap": {"name": configmap}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        *({"name": f"secret-{s}", "secret": {"secretName": s}} for s in secret_list),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "plan", "mountPath": PLAN_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        *({"name": f"secret-{s}", "mountPath": f"{SECRETS_MOUNT}/{s}", "readOnly": True} for s in secret_list),
    ]
    ports = [{"name": port_name, "containerPort": port}]
    env = nats_auth_env(nats_auth_secret)
    probe_port = port_name
    if operations_port is not None:
        ports.append({"name": "metrics", "containerPort": operations_port})
        env = [{"name": METRICS_PORT_ENV, "value": str(operations_port)}, *env]
        probe_port = "metrics"
    env = [
        *env,
        *({"name": k, "value": v} for k, v in extra_env),
        *({"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for k, secret, key in secret_env),
    ]
    return {
        "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security,
            "terminationGracePeriodSeconds": 45,
            "containers": [
                {
                    "name": "onceflow",
                    "image": image,
                    "args": args,
                    "env": env,
                    "ports": ports,
                    "securityContext": container_security,
                    "resources": {
                        "requests": {"cpu": f"{100 * processes}m", "memory": f"{128 * processes}Mi"},
                        "limits": {"memory": f"{512 + 256 * (processes - 1)}Mi"},
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": probe_port},
                        "periodSeconds": 10,
                    },
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": probe_port}, "periodSeconds": 5},
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def nats_auth_env(secret: str) -> list[dict[str, Any]]:
    """NATS credentials from a Secret in the pod's namespace: `user.creds`, or `user` + `password`, or `token`.

    `user.creds` is what the operator issues per namespace (build/natsauth.py); the pod's namespace
    (downward API) gives the reply inbox prefix that namespace's NATS user may read.
    """
    if not secret:
        return []
    keys = (
        ("ONCEFLOW_NATS_USER", "user"),
        ("ONCEFLOW_NATS_PASSWORD", "password"),
        ("ONCEFLOW_NATS_TOKEN", "token"),
        ("ONCEFLOW_NATS_CREDS", NATS_CREDS_KEY),
    )
    return [
        *({"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for env, key in keys),
        {"name": NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def secrets_checksum_of(versions: Mapping[str, str]) -> str:
    """The pod template annotation that rolls the pods when a Secret they read changes.

    `versions` maps each Secret's name to its resourceVersion ("missing" when it does not exist).
    """
    text = ",".join(f"{name}={version}" for name, version in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
