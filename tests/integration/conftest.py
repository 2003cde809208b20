"""Fixtures of the data-plane and end-to-end tests: sandboxes and scenario 1 under local run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client

from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import LocalExecutor
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from tests.conftest import Kubectl
from tests.integration.nats_cluster import NatsCluster
from tests.integration.scenario import (
    Sandboxes,
    example_documents,
    new_namespace,
    start_local_run,
    start_sandboxes,
)


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    """Fresh sandbox ERP and receiving systems on loopback."""
    sandboxes = await start_sandboxes()
    yield sandboxes
    await sandboxes.stop()


@pytest.fixture
async def onboarding(nats_server: NatsServer, boxes: Sandboxes) -> AsyncIterator[tuple[LocalRun, str]]:
    """Scenario 1's example manifests under `onceflow local run`, in a namespace of their own."""
    namespace = new_namespace()
    run = await start_local_run(example_documents("customer-onboarding"), namespace, nats_server.url, boxes)
    yield run, namespace
    run.stop()


@pytest.fixture
async def executor(
    control_plane: ControlPlane, nats_server: NatsServer, kubectl: Kubectl
) -> AsyncIterator[LocalExecutor]:
    """The local executor: runs the test namespace's runner and gateway Deployments as processes."""
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    runner = LocalExecutor(kube, nats_server.url, namespace=kubectl.namespace)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    yield runner
    stop.set()
    await task
    await kube.close()


@pytest.fixture
def nats_cluster() -> Iterator[NatsCluster]:
    """Three clustered nats-server processes with JetStream, on free 127.0.0.1 ports; stopped by PID."""
    cluster = NatsCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client of the session's nats-server, closed after the test (a module may define its own)."""
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()
