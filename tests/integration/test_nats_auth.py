"""NATS that requires credentials: the Secret named by the operator's config reaches runner pods as
environment (here through the local executor, which resolves secretKeyRef as a kubelet does), and
the runner connects with it to a real nats-server started with --user/--pass."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import aiohttp
import nats
import pytest

from onceflow_operator.build.objects import build_plan_configmap, build_runner_deployment
from onceflow_operator.clients import topology
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.compiler.planner import plan_from_integration
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import LocalExecutor
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters import natsio
from tests.conftest import Kubectl
from tests.integration.scenario import eventually, example_documents
from tests.unit.test_planner import load_examples

pytestmark = pytest.mark.controlplane


@pytest.fixture
def guarded_nats() -> Iterator[NatsServer]:
    server = NatsServer(extra=["--user", "onceflow", "--pass", "s3cret-pw"])
    server.start()
    yield server
    server.close()


async def test_connect_uses_the_credentials_from_the_environment(
    guarded_nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without credentials the server refuses the connection (spoken raw, so no client is left half-open).
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded_nats.port)
    assert (await reader.readline()).startswith(b"INFO ")
    writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
    await writer.drain()
    assert b"Authorization Violation" in await reader.readline()
    writer.close()
    await writer.wait_closed()
    monkeypatch.setenv("ONCEFLOW_NATS_USER", "onceflow")
    monkeypatch.setenv("ONCEFLOW_NATS_PASSWORD", "s3cret-pw")
    nc = await natsio.connect(guarded_nats.url, name="test")
    await topology.ensure_streams(nc.jetstream())
    await nc.close()


async def test_a_runner_pod_gets_the_nats_secret_and_connects(
    guarded_nats: NatsServer, kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    namespace = kubectl.namespace
    connectors, policies, integrations = load_examples()
    integration = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    plan = plan_from_integration(integration, connectors, policies.get("customer"), namespace=namespace)
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "uid": "0"}}
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "nats-auth"},
            "data": {
                "user": base64.b64encode(b"onceflow").decode(),
                "password": base64.b64encode(b"s3cret-pw").decode(),
            },
        },
        *(d for d in example_documents("customer-onboarding") if d["kind"] == "Secret"),
    )
    configmap = build_plan_configmap("onboard", namespace, plan.to_json(), owner, {})
    deployment = build_runner_deployment(
        plan,
        configmap["metadata"]["name"],
        owner,
        image="i",
        nats_url=guarded_nats.url,
        replicas=1,
        secrets_checksum="c",
        nats_auth_secret="nats-auth",
    )
    for obj in (configmap, deployment):
        obj["metadata"].pop("ownerReferences")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    from_secret = {e["name"] for e in env if "secretKeyRef" in e["valueFrom"]}
    assert from_secret == {"ONCEFLOW_NATS_USER", "ONCEFLOW_NATS_PASSWORD", "ONCEFLOW_NATS_TOKEN", "ONCEFLOW_NATS_CREDS"}
    assert all(e["valueFrom"]["secretKeyRef"]["name"] == "nats-auth" for e in env if e["name"] in from_secret)
    # The operator's part (the runner only binds): the streams, buckets and the lane's consumers.
    admin = await nats.connect(guarded_nats.url, user="onceflow", password="s3cret-pw")
    await topology.ensure_plan(admin.jetstream(), plan)
    await admin.close()
    kubectl.apply(configmap, deployment)
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    executor = LocalExecutor(kube, guarded_nats.url, namespace=namespace)
    stop = asyncio.Event()
    task = asyncio.create_task(executor.run(stop))
    try:

        async def ready() -> bool:
            name = deployment["metadata"]["name"]
            if (namespace, name) not in executor.replicas:
                return False
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.get(f"http://127.0.0.1:{executor.port_of(namespace, name)}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

        try:
            await eventually(ready, within=30, interval=0.3)
        except AssertionError:
            logs = "".join(p.read_text()[-1500:] for p in executor.workdir.rglob("*.log"))
            secrets = kubectl.run("get", "secrets", "-o", "name").stdout
            raise AssertionError(f"the runner never became ready: {logs[-600:]} secrets: {secrets}") from None
        nc = await nats.connect(guarded_nats.url, user="onceflow", password="s3cret-pw")
        js = nc.jetstream()

        async def pulling() -> bool:  # the runner's own pull requests, made through the guarded server
            info = await js.consumer_info(plan.nats.stream, plan.nats.consumer)
            return int(info.num_waiting or 0) >= 1

        assert await eventually(pulling, within=15, interval=0.2)
        await nc.close()
    finally:
        stop.set()
        await task
        await kube.close()
