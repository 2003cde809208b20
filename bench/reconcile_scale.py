"""How fast the operator brings many Integrations to Ready on the real control plane.

Applies N Integrations (default 200 and 1,000) that share two Connectors, with the operator
running as its own process (`onceflow operator -A`). There are no nodes, so a small loop plays
the Deployment controller and marks each runner Deployment available. Prints, per N: seconds
until all are Ready, operator peak RSS, API requests per Integration (from the API server's own
apiserver_request_total). Last line: one JSON object. Target: 1,000 Ready in < 60 s, RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, env_note, peak_rss_mb

from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import spawn_operator
from onceflow_operator.dev.natsserver import NatsServer

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout


def api_requests(kubeconfig: Path) -> float:
    text = kubectl(kubeconfig, "get", "--raw", "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("apiserver_request_total{")
    )


def integrations(namespace: str, n: int, offset: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": f"flow-{offset + i}", "namespace": namespace},
            "spec": {
                "trigger": {"connector": {"name": "crm", "event": f"e{offset + i}"}},
                "steps": [
                    {"name": "canonical", "map": {"fields": {"name": "input.company"}}},
                    {"name": "create", "call": {"connector": "erp", "path": '"/api/resource/Customer"'}},
                ],
            },
        }
        for i in range(n)
    ]


async def mark_available(kube: KubeClient, namespace: str, stop: asyncio.Event) -> None:
    """Play the Deployment controller: every runner Deployment gets one available replica."""
    done: set[str] = set()
    while not stop.is_set():
        for d in await kube.list("apps/v1", "Deployment", namespace, selector="app.kubernetes.io/part-of=onceflow"):
            name = d["metadata"]["name"]
            if name not in done:
                await kube.patch_status(
                    "apps/v1",
                    "Deployment",
                    namespace,
                    name,
                    {
                        "observedGeneration": d["metadata"].get("generation", 1),
                        "replicas": 1,
                        "updatedReplicas": 1,
                        "readyReplicas": 1,
                        "availableReplicas": 1,
                    },
                )
                done.add(name)
        await asyncio.sleep(0.5)


async def count_ready(kube: KubeClient, namespace: str) -> int:
    items = await kube.list("onceflow.io/v1alpha1", "Integration", namespace)
    return sum(
        1
        for i in items
        for c in i.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    )


async def measure(
    cp: ControlPlane, namespace: str, n: int, offset: int, operator_pid: int, timeout: float
) -> dict[str, Any]:
    kube = KubeClient.from_environment(str(cp.kubeconfig))
    stop = asyncio.Event()
    marker = asyncio.create_task(mark_available(kube, namespace, stop))
    before = api_requests(cp.kubeconfig)
    started = time.monotonic()
    kubectl(
        cp.kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(integrations(namespace, n, offset))
    )
    applied = time.monotonic() - started
    target = offset + n
    ready = 0
    while time.monotonic() - started < timeout:
        ready = await count_ready(kube, namespace)
        if ready >= target:
            break
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    stop.set()
    await marker
    await kube.close()
    requests = api_requests(cp.kubeconfig) - before
    return {
        "integrations": n,
        "all_ready": ready >= target,
        "ready": ready - offset,
        "seconds_to_ready": round(elapsed, 1),
        "apply_seconds": round(applied, 1),
        "operator_peak_rss_mb": peak_rss_mb([operator_pid]),
        "api_requests_per_integration": round(requests / n, 1),
    }


async def main(sizes: list[int], timeout: float, resync: float) -> dict[str, Any]:
    nats = NatsServer()
    nats.start()
    with ControlPlane() as cp:
        kubectl(cp.kubeconfig, "apply", "--server-side", "-k", str(ROOT / "crds"))
        kubectl(cp.kubeconfig, "wait", "--for=condition=Established", "crd/integrations.onceflow.io")
        namespace = "bench"
        kubectl(cp.kubeconfig, "create", "namespace", namespace)
        base = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s", "namespace": namespace, "labels": {"onceflow.io/credentials": "true"}},
                "stringData": {"k": "v"},
            },
            {
                "apiVersion": "onceflow.io/v1alpha1",
                "kind": "Connector",
                "metadata": {"name": "crm", "namespace": namespace},
                "spec": {
                    "type": "Webhook",
                    "webhook": {
                        "signature": {"scheme": "hmac", "header": "X-S", "secretRef": {"name": "s", "key": "k"}}
                    },
                },
            },
            {
                "apiVersion": "onceflow.io/v1alpha1",
                "kind": "Connector",
                "metadata": {"name": "erp", "namespace": namespace},
                "spec": {"type": "REST", "rest": {"baseURL": "http://erp.invalid"}},
            },
        ]
        kubectl(cp.kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(base))
        operator = spawn_operator(cp.kubeconfig, nats.url, resync_seconds=resync)
        try:
            time.sleep(3)
            results: dict[str, Any] = {}
            offset = 0
            for n in sizes:
                results[f"n_{n}"] = await measure(cp, namespace, n, offset, operator.pid, timeout)
                offset += n
            return results
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            nats.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--resync", type=float, default=30, help="Operator timer interval (its default is 30 s).")
    args = parser.parse_args()
    result = asyncio.run(main([int(s) for s in args.sizes.split(",")], args.timeout, args.resync))
    print(f"# {env_note()}")
    for key, value in result.items():
        print(f"{key:8s} {value}")
    print(json.dumps(result))
