"""How the operator copes with an MSP's cluster, on the real control plane.

N Integrations (default 1,000) across M namespaces (default 50), each namespace with its two
Connectors, applied in one `kubectl apply --server-side`, with the operator as its own process
(`onceflow operator -A`, its own user, so the API server's audit log says which requests are its
own). There are no nodes, so a small loop plays the Deployment controller and marks each
Deployment available. Three phases:

1. from the apply until every Integration is Ready: seconds, operator peak RSS, API requests per
   Integration (the operator's own from the audit log; all, including kubectl and this loop,
   from apiserver_request_total);
2. one resync period with nothing changing: the operator's writes (target 0);
3. the operator restarted with everything in place: seconds until it has looked at every
   Integration again (its reconcile counter), and its writes until one resync later (target 0).

Targets: Ready in < 60 s, RSS < 300 MB, 0 writes in 2 and 3, 3 steady in < 30 s. Last line: one
JSON object. The load average is printed with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, env_note, peak_rss_mb

from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.dev.controlplane import ControlPlane, free_port
from onceflow_operator.dev.executor import spawn_operator
from onceflow_operator.dev.natsserver import NatsServer

KUBECTL = str(Path(sys.executable).parent / "kubectl")
OPERATOR_USER = "onceflow-operator-bench"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


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


def operator_requests(cp: ControlPlane, since: float, until: float | None = None) -> list[dict[str, Any]]:
    """The operator user's audit events whose request arrived in [since, until)."""
    found = []
    for event in cp.audit_events():
        if event.get("user", {}).get("username") != OPERATOR_USER:
            continue
        stamp = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        if stamp >= since and (until is None or stamp < until):
            found.append(event)
    return found


def requests_by_kind(events: list[dict[str, Any]]) -> dict[str, int]:
    """The operator's requests counted by verb and resource (subresource), most first."""
    counted = Counter(
        f"{e['verb']} {e.get('objectRef', {}).get('resource')}"
        + (f"/{e['objectRef']['subresource']}" if e.get("objectRef", {}).get("subresource") else "")
        for e in events
    )
    return dict(counted.most_common(12))


def mean_reconcile_seconds(metrics_port: int) -> float | None:
    """Mean duration of the operator's Integration reconciles (its own histogram)."""
    text = operator_metrics(metrics_port) or ""
    values = {}
    for line in text.splitlines():
        if 'kind="Integration"' in line and line.startswith("onceflow_operator_reconcile_seconds_"):
            values[line.split("{", 1)[0]] = float(line.rsplit(" ", 1)[1])
    count = values.get("onceflow_operator_reconcile_seconds_count", 0.0)
    return round(values.get("onceflow_operator_reconcile_seconds_sum", 0.0) / count, 3) if count else None


def writes_of(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        f"{e['verb']} {e.get('objectRef', {}).get('resource')}"
        + (f"/{e['objectRef']['subresource']}" if e.get("objectRef", {}).get("subresource") else "")
        for e in events
        if e.get("verb") in WRITES
    )


def operator_metrics(metrics_port: int) -> str | None:
    """The operator's /metrics text; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def reconciles(metrics_port: int) -> float:
    """Integration reconciles the operator has finished (its own counter)."""
    text = operator_metrics(metrics_port) or ""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("onceflow_operator_reconciles_total{") and 'kind="Integration"' in line
    )


def namespace_objects(namespace: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": namespace, "labels": {"onceflow.io/credentials": "true"}},
            "stringData": {"k": "a-signing-secret-long-enough"},
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "crm", "namespace": namespace},
            "spec": {
                "type": "Webhook",
                "webhook": {"signature": {"scheme": "hmac", "header": "X-S", "secretRef": {"name": "s", "key": "k"}}},
            },
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "erp", "namespace": namespace},
            "spec": {"type": "REST", "rest": {"baseURL": "http://erp.invalid"}},
        },
    ]


def integrations(namespaces: list[str], n: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": f"flow-{i}", "namespace": namespaces[i % len(namespaces)]},
            "spec": {
                "trigger": {"connector": {"name": "crm", "event": f"e{i}"}},
                "steps": [
                    {"name": "canonical", "map": {"fields": {"name": "input.company"}}},
                    {"name": "create", "call": {"connector": "erp", "path": '"/api/resource/Customer"'}},
                ],
            },
        }
        for i in range(n)
    ]


async def play_deployment_controller(kube: KubeClient, stop: asyncio.Event) -> None:
    """Every Onceflow Deployment, in every namespace, gets one available replica once it exists."""
    done: dict[str, int] = {}
    while not stop.is_set():
        for d in await kube.list("apps/v1", "Deployment", None, selector="app.kubernetes.io/part-of=onceflow"):
            meta = d["metadata"]
            key, generation = f"{meta['namespace']}/{meta['name']}", int(meta.get("generation", 1))
            if done.get(key) != generation:
                status = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1}
                status.update(readyReplicas=1, availableReplicas=1)
                await kube.patch_status("apps/v1", "Deployment", meta["namespace"], meta["name"], status)
                done[key] = generation
        await asyncio.sleep(0.5)


async def count_ready(kube: KubeClient) -> tuple[int, Counter[str]]:
    """Integrations Ready, and the reasons of those that are not."""
    ready, waiting = 0, Counter[str]()
    for item in await kube.list("onceflow.io/v1alpha1", "Integration", None):
        condition = next((c for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
        if condition and condition["status"] == "True":
            ready += 1
        else:
            waiting[condition["reason"] if condition else "NotReconciled"] += 1
    return ready, waiting


async def main(n: int, spread: int, timeout: float, resync: float) -> dict[str, Any]:
    load_before = os.getloadavg()
    nats = NatsServer()
    nats.start()
    work = Path(tempfile.mkdtemp(prefix="onceflow-bench-"))
    with ControlPlane(audit=True) as cp:
        kubectl(cp.kubeconfig, "apply", "--server-side", "-k", str(ROOT / "crds"))
        kubectl(cp.kubeconfig, "wait", "--for=condition=Established", "crd/integrations.onceflow.io")
        namespaces = [f"msp-{i:02d}" for i in range(spread)]
        base = [obj for ns in namespaces for obj in namespace_objects(ns)]
        kubectl(cp.kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(base))
        operator_kubeconfig = cp.user_kubeconfig(work / "operator.kubeconfig", OPERATOR_USER, ("system:masters",))
        port = free_port()
        log = work / "operator.log"
        operator = spawn_operator(operator_kubeconfig, nats.url, resync_seconds=resync, log=log, metrics_port=port)
        kube = KubeClient.from_environment(str(cp.kubeconfig))
        stop = asyncio.Event()
        controller = asyncio.create_task(play_deployment_controller(kube, stop))
        result: dict[str, Any] = {"integrations": n, "namespaces": spread, "resync_seconds": resync}
        try:
            while operator_metrics(port) is None and operator.poll() is None:
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # its watches have listed what exists

            # 1. One apply, until all are Ready.
            before = api_requests(cp.kubeconfig)
            since = time.time()
            started = time.monotonic()
            kubectl(
                cp.kubeconfig,
                "apply",
                "--server-side",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(integrations(namespaces, n)),
            )
            applied = time.monotonic() - started
            ready, waiting = 0, Counter[str]()
            while time.monotonic() - started < timeout:
                ready, waiting = await count_ready(kube)
                if ready >= n:
                    break
                await asyncio.sleep(1)
            elapsed = time.monotonic() - started
            all_ready_at = time.time()
            phase1 = operator_requests(cp, since, all_ready_at)
            result.update(
                all_ready=ready >= n,
                ready=ready,
                not_ready_reasons=dict(waiting),
                seconds_to_ready=round(elapsed, 1),
                apply_seconds=round(applied, 1),
                operator_peak_rss_mb=peak_rss_mb([operator.pid]),
                operator_requests_per_integration=round(len(phase1) / n, 1),
                operator_requests_by_kind=requests_by_kind(phase1),
                all_requests_per_integration=round((api_requests(cp.kubeconfig) - before) / n, 1),
                mean_reconcile_seconds=mean_reconcile_seconds(port),
                integration_reconciles=reconciles(port),
            )

            # 2. A resync period with nothing changing (after the reconciles in flight settle).
            await asyncio.sleep(3)
            quiet_from = time.time()
            await asyncio.sleep(resync + 1)
            quiet = writes_of(operator_requests(cp, quiet_from))
            result.update(quiet_writes=sum(quiet.values()), quiet_writes_by_kind=dict(quiet))

            # 3. A restart with everything in place.
            operator.terminate()
            operator.wait(timeout=60)
            restarted = time.time()
            started = time.monotonic()
            operator = spawn_operator(operator_kubeconfig, nats.url, resync_seconds=resync, log=log, metrics_port=port)
            while reconciles(port) < n and time.monotonic() - started < timeout:
                await asyncio.sleep(0.5)
            steady = time.monotonic() - started
            await asyncio.sleep(resync + 1)
            after = writes_of(operator_requests(cp, restarted))
            ready, _ = await count_ready(kube)
            result.update(
                restart_seconds_to_steady=round(steady, 1),
                restart_writes=sum(after.values()),
                restart_writes_by_kind=dict(after),
                ready_after_restart=ready,
                operator_peak_rss_mb_after_restart=peak_rss_mb([operator.pid]),
            )
            return result
        finally:
            stop.set()
            await controller
            await kube.close()
            operator.terminate()
            operator.wait(timeout=60)
            nats.close()
            result["load_average_before"] = [round(x, 2) for x in load_before]
            result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300, help="Longest wait for phases 1 and 3.")
    parser.add_argument("--resync", type=float, default=30, help="Operator timer interval (its default is 30 s).")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.integrations, args.namespaces, args.timeout, args.resync))
    print(f"# {env_note()}")
    for key, value in outcome.items():
        print(f"{key:36s} {value}")
    print(json.dumps(outcome))
