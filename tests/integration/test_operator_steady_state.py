"""Reconcile cost proportional to change, counted by the real API server's audit log.

The operator runs as its own process (`onceflow operator -A`) with a user of its own, so every
request it makes is an audit event naming that user. There are no nodes: the test plays the
Deployment controller by writing Deployment status as the admin (not counted).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import spawn_operator
from onceflow_operator.dev.natsserver import NatsServer
from tests import cases
from tests.conftest import ROOT, Kubectl

pytestmark = pytest.mark.controlplane

OPERATOR_USER = "onceflow-operator-under-audit"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
#: The operator's resync period here: long enough that "Ready at once" cannot be the timer.
RESYNC = 8.0


def wait_for(check: Callable[[], Any], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {within}s: {last!r}")


@pytest.fixture(scope="module")
def audited() -> Iterator[ControlPlane]:
    with ControlPlane(audit=True) as cp:
        Kubectl(cp.kubeconfig).run("apply", "--server-side", "-k", str(ROOT / "crds"))
        Kubectl(cp.kubeconfig).run("wait", "--for=condition=Established", "crd/integrations.onceflow.io")
        yield cp


def operator_requests(cp: ControlPlane, since: float) -> list[dict[str, Any]]:
    """Audit events of the operator's user whose request arrived after `since` (epoch seconds)."""
    found = []
    for event in cp.audit_events():
        stamp = event.get("requestReceivedTimestamp", "")
        mine = event.get("user", {}).get("username") == OPERATOR_USER
        if mine and stamp and datetime.fromisoformat(stamp).timestamp() >= since:
            found.append(event)
    return found


def operator_writes(cp: ControlPlane, since: float) -> list[str]:
    """`verb resource/name` of every write the operator's user made after `since` (epoch seconds)."""
    found = []
    for event in operator_requests(cp, since):
        if event.get("verb") not in WRITES:
            continue
        ref = event.get("objectRef", {})
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        found.append(f"{event['verb']} {ref.get('resource')}{sub}/{ref.get('name', '')}")
    return found


def mark_available(kubectl: Kubectl, deployment: str) -> None:
    generation = kubectl.get("deployment", deployment)["metadata"]["generation"]
    status = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1}
    status.update(availableReplicas=1, readyReplicas=1)
    kubectl.run(
        "patch", "deployment", deployment, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )


def ready(kubectl: Kubectl, kind: str, name: str) -> bool:
    conditions = kubectl.get(kind, name).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_steady_state_makes_no_writes_and_ready_follows_availability_at_once(
    audited: ControlPlane, tmp_path: Path
) -> None:
    admin = Kubectl(audited.kubeconfig)
    admin.run("create", "namespace", "steady")
    kubectl = Kubectl(audited.kubeconfig, "steady")
    labels = {"onceflow.io/credentials": "true"}
    kubectl.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "crm", "labels": labels},
         "stringData": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "erp", "labels": labels},
         "stringData": {"token": "t"}},
        cases.connector_webhook(),
        cases.connector_rest(),
        *[cases.integration(f"flow-{i}") for i in range(3)],
    )  # fmt: skip
    kubeconfig = audited.user_kubeconfig(tmp_path / "operator.kubeconfig", OPERATOR_USER, ("system:masters",))
    nats = NatsServer()
    nats.start()
    log = tmp_path / "operator.log"
    operator: subprocess.Popen[bytes] | None = spawn_operator(kubeconfig, nats.url, resync_seconds=RESYNC, log=log)
    try:
        runners = [f"flow-{i}-runner" for i in range(3)]
        wait_for(lambda: all(kubectl.run("get", "deployment", d, check=False).returncode == 0 for d in runners))
        wait_for(lambda: kubectl.run("get", "deployment", "crm-gateway", check=False).returncode == 0)
        time.sleep(0.5 + RESYNC)  # a resync has passed, so the next Ready can only come from the watch
        started = time.monotonic()
        for deployment in [*runners, "crm-gateway"]:
            mark_available(kubectl, deployment)
        wait_for(lambda: all(ready(kubectl, "integration", f"flow-{i}") for i in range(3)), within=RESYNC)
        wait_for(lambda: ready(kubectl, "connector", "crm"), within=RESYNC)
        reacted = time.monotonic() - started
        assert reacted < RESYNC * 0.75, f"Ready took {reacted:.1f}s, about a resync: the Deployment watch did not act"

        time.sleep(2)  # what the last reconciles wrote (status) lands before the window opens
        window = time.time()
        time.sleep(RESYNC * 2 + 1)  # two resyncs of every kind
        assert operator_writes(audited, window) == []

        operator.terminate()
        operator.wait(timeout=30)
        restarted = time.time()
        operator = spawn_operator(kubeconfig, nats.url, resync_seconds=RESYNC, log=log)
        # Steady again: Kopf resumed every object (its watches run) and two resyncs passed, without one write.
        wait_for(lambda: [e for e in operator_requests(audited, restarted) if e.get("verb") == "list"])
        time.sleep(RESYNC * 2 + 1)
        writes = operator_writes(audited, restarted)
        assert writes == [], Counter(writes)
        assert all(ready(kubectl, "integration", f"flow-{i}") for i in range(3))
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait(timeout=30)
        nats.close()
        if log.exists():
            print(log.read_text()[-4000:])
