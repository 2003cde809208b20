"""Two operator replicas with leader election on the real API server: one acts, the other stands by,
and when the active one is killed (SIGKILL, mid-rollout) the standby takes the Lease and finishes
the rollout. The audit log says who wrote what: the standby writes nothing but Lease attempts
until it holds the Lease, and no write of either is refused as a conflict.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from onceflow_operator.controller.election import LeaseTerms
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import spawn_operator
from onceflow_operator.dev.natsserver import NatsServer
from tests import cases
from tests.conftest import ROOT, Kubectl

pytestmark = pytest.mark.controlplane

WRITES = {"create", "update", "patch", "delete"}
#: The Lease's terms here (`onceflow operator --lease-*`): shorter than the defaults, the same rules.
TERMS = LeaseTerms(duration=6.0, renew_every=2.0, retry=1.0)


def wait_for(check: Callable[[], Any], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {within}s: {last!r}")


def writes(cp: ControlPlane, user: str, since: float = 0.0) -> list[tuple[str, str, int]]:
    """(verb, resource, HTTP code) of every write `user` made from `since` (epoch seconds)."""
    found = []
    for event in cp.audit_events():
        stamp = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        if event.get("user", {}).get("username") == user and event.get("verb") in WRITES and stamp >= since:
            code = int(event.get("responseStatus", {}).get("code", 0))
            found.append((event["verb"], str(event.get("objectRef", {}).get("resource")), code))
    return found


def lease_reads(cp: ControlPlane, user: str, since: float) -> int:
    """How often `user` read the election Lease from `since` (epoch seconds): a standby's tries to take it."""
    count = 0
    for event in cp.audit_events():
        stamp = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        ref = event.get("objectRef", {})
        if event.get("user", {}).get("username") == user and ref.get("resource") == "leases" and stamp >= since:
            count += event.get("verb") == "get" and event.get("stage") == "ResponseComplete"
    return count


def holder(kubectl: Kubectl) -> str:
    result = kubectl.run("get", "lease", "onceflow-operator", "-n", "default", "-o", "json", check=False)
    return str(json.loads(result.stdout)["spec"].get("holderIdentity", "")) if result.returncode == 0 else ""


def test_the_standby_takes_over_within_seconds_and_finishes_the_rollout(tmp_path: Path) -> None:
    with ControlPlane(audit=True) as cp:
        admin = Kubectl(cp.kubeconfig)
        admin.run("apply", "--server-side", "-k", str(ROOT / "crds"))
        admin.run("wait", "--for=condition=Established", "crd/integrations.onceflow.io")
        admin.run("create", "namespace", "ha")
        kubectl = Kubectl(cp.kubeconfig, "ha")
        labels = {"onceflow.io/credentials": "true"}
        kubectl.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "crm", "labels": labels},
             "stringData": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "erp", "labels": labels},
             "stringData": {"token": "t"}},
            cases.connector_webhook(),
            cases.connector_rest(),
        )  # fmt: skip
        nats = NatsServer()
        nats.start()
        replicas: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in ("op-a", "op-b"):
                config = cp.user_kubeconfig(tmp_path / f"{name}.kubeconfig", name, ("system:masters",))
                replicas[name] = spawn_operator(
                    config,
                    nats.url,
                    resync_seconds=60,
                    log=tmp_path / f"{name}.log",
                    elect=True,
                    identity=name,
                    lease=(TERMS.duration, TERMS.renew_every, TERMS.retry),
                )
                if name == "op-a":
                    wait_for(lambda: holder(kubectl) == "op-a")
            # The rollout starts: op-a compiles the revision and creates the runner Deployment.
            kubectl.apply(cases.integration())
            wait_for(lambda: kubectl.run("get", "deployment", "onboard-runner", check=False).returncode == 0)
            created = time.time()
            # op-b had every chance to act, and must not have: it looked at the Lease twice since.
            wait_for(lambda: lease_reads(cp, "op-b", created) >= 2)
            assert {resource for _, resource, _ in writes(cp, "op-b")} <= {"leases"}

            replicas["op-a"].send_signal(signal.SIGKILL)  # mid-rollout: the runners are not available yet
            replicas["op-a"].wait(timeout=10)
            killed = time.time()
            started = time.monotonic()
            wait_for(lambda: holder(kubectl) == "op-b", within=60)
            failover = time.monotonic() - started
            assert failover < TERMS.duration + 2 * TERMS.retry + 3, f"failover took {failover:.1f}s"

            # The Deployment controller's part: the pods are available; op-b (watching) finishes the rollout.
            generation = kubectl.get("deployment", "onboard-runner")["metadata"]["generation"]
            status = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1}
            status.update(availableReplicas=1, readyReplicas=1)
            kubectl.run(
                "patch", "deployment", "onboard-runner", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}),
            )  # fmt: skip
            ready = wait_for(
                lambda: next(
                    (
                        c
                        for c in kubectl.get("integration", "onboard").get("status", {}).get("conditions", [])
                        if c["type"] == "Ready" and c["status"] == "True"
                    ),
                    None,
                ),
                within=30,
            )
            assert ready["reason"] == "RunnersAvailable"
            assert kubectl.get("integration", "onboard")["status"]["revision"] == 1  # the same revision, not a second
            assert writes(cp, "op-a", since=killed + 1) == []
            conflicts = [w for w in writes(cp, "op-a") + writes(cp, "op-b") if w[2] == 409 and w[1] != "leases"]
            assert conflicts == []
            assert {resource for _, resource, _ in writes(cp, "op-b", since=killed)} - {"leases"}  # op-b did the work
        finally:
            for process in replicas.values():
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
            nats.close()
            for name in replicas:
                log = tmp_path / f"{name}.log"
                if log.exists():
                    print(name, log.read_text()[-3000:])
