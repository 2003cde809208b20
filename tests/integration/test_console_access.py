"""Whom the review console believes (issue 19, item 18): identity headers only from the trusted
proxy, decisions through a TLS-terminating proxy, one CSRF key for every replica and restart, and
bearer tokens reviewed for the console's own audience. Access is the real API server's RBAC."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import nats
import pytest
from aiohttp import web

from onceflow_operator.clients import topology
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.dev.controlplane import ControlPlane, free_port
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.console import Console
from tests.conftest import Kubectl
from tests.integration.review_streams import park
from tests.integration.test_console import reviewers

pytestmark = pytest.mark.controlplane

PUBLIC = "https://review.example.test"
BEHIND_TLS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "review.example.test"}


@dataclass
class Place:
    namespace: str
    kube: KubeClient
    nats_url: str
    kubectl: Kubectl

    async def park(self) -> int:
        nc = await nats.connect(self.nats_url)
        try:
            return await park(nc.jetstream(), self.namespace)
        finally:
            await nc.close()


@pytest.fixture
async def place(admin_kubectl: Kubectl, control_plane: ControlPlane, nats_server: NatsServer) -> AsyncIterator[Place]:
    namespace = f"c{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", namespace)
    kubectl = Kubectl(admin_kubectl.kubeconfig, namespace)
    kubectl.apply(*reviewers(namespace))
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    nc = await nats.connect(nats_server.url)
    await topology.ensure_streams(nc.jetstream())
    await nc.close()
    yield Place(namespace, kube, nats_server.url, kubectl)
    await kube.close()


@pytest.fixture
def no_console_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "ONCEFLOW_CONSOLE_PROXY_SECRET",
        "ONCEFLOW_CONSOLE_TRUSTED_PROXIES",
        "ONCEFLOW_CONSOLE_AUDIENCES",
        "ONCEFLOW_CONSOLE_CSRF_KEY",
        "ONCEFLOW_CONSOLE_CSRF_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@asynccontextmanager
async def serving(console: Console) -> AsyncIterator[str]:
    runner = web.AppRunner(console.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def csrf_of(page: str) -> str:
    found = re.search(r"name=csrf value=([0-9a-f]+)", page)
    assert found, page
    return found.group(1)


async def test_identity_headers_count_only_from_the_trusted_proxy(
    place: Place, no_console_settings: pytest.MonkeyPatch
) -> None:
    listing = f"/exceptions?namespace={place.namespace}"
    alice = {"X-Forwarded-User": "alice"}

    no_console_settings.setenv("ONCEFLOW_CONSOLE_TRUSTED_PROXIES", "10.9.0.0/16")
    async with serving(Console(place.nats_url, place.kube, auth="proxy")) as url, httpx.AsyncClient() as client:
        refused = await client.get(url + listing, headers=alice)
        assert refused.status_code == 401
        assert "identity headers count only from it" in refused.text

    no_console_settings.delenv("ONCEFLOW_CONSOLE_TRUSTED_PROXIES")
    async with serving(Console(place.nats_url, place.kube, auth="proxy")) as url, httpx.AsyncClient() as client:
        assert (await client.get(url + listing, headers=alice)).status_code == 200  # a sidecar on loopback

    no_console_settings.setenv("ONCEFLOW_CONSOLE_PROXY_SECRET", "only-the-proxy-knows")
    async with serving(Console(place.nats_url, place.kube, auth="proxy")) as url, httpx.AsyncClient() as client:
        assert (await client.get(url + listing, headers=alice)).status_code == 401
        wrong = {**alice, "X-Onceflow-Proxy-Secret": "guessed"}
        assert (await client.get(url + listing, headers=wrong)).status_code == 401
        right = {**alice, "X-Onceflow-Proxy-Secret": "only-the-proxy-knows"}
        assert (await client.get(url + listing, headers=right)).status_code == 200


async def test_a_decision_through_a_tls_terminating_proxy_is_accepted_and_a_foreign_origin_is_not(
    place: Place, no_console_settings: pytest.MonkeyPatch
) -> None:
    first, second = await place.park(), await place.park()
    alice = {"X-Forwarded-User": "alice", **BEHIND_TLS}
    async with serving(Console(place.nats_url, place.kube, auth="proxy")) as url, httpx.AsyncClient() as client:
        page = await client.get(f"{url}/exceptions/{place.namespace}/{first}", headers=alice)
        form = {"action": "discard", "why": "a test record", "csrf": csrf_of(page.text)}
        decided = await client.post(
            f"{url}/exceptions/{place.namespace}/{first}", data=form, headers={**alice, "Origin": PUBLIC}
        )
        assert decided.status_code == 303, decided.text
        foreign = await client.post(
            f"{url}/exceptions/{place.namespace}/{second}",
            data=form,
            headers={**alice, "Origin": "https://evil.test"},
        )
        assert foreign.status_code == 403
        assert "cross-site request refused" in foreign.text


async def test_a_form_from_one_replica_is_accepted_by_another_when_the_csrf_key_is_configured(
    place: Place, no_console_settings: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sequence = await place.park()
    alice = {"X-Forwarded-User": "alice"}
    no_console_settings.setenv("ONCEFLOW_CONSOLE_CSRF_KEY", "from-a-secret")
    one, other = (Console(place.nats_url, place.kube, auth="proxy") for _ in range(2))
    async with serving(one) as url_one, serving(other) as url_other, httpx.AsyncClient() as client:
        page = await client.get(f"{url_one}/exceptions/{place.namespace}/{sequence}", headers=alice)
        form = {"action": "discard", "why": "a test record", "csrf": csrf_of(page.text)}
        decided = await client.post(f"{url_other}/exceptions/{place.namespace}/{sequence}", data=form, headers=alice)
        assert decided.status_code == 303, decided.text

    no_console_settings.delenv("ONCEFLOW_CONSOLE_CSRF_KEY")
    with caplog.at_level(logging.WARNING, logger="onceflow.console"):
        Console(place.nats_url, place.kube, auth="proxy")
    assert "no CSRF key configured (ONCEFLOW_CONSOLE_CSRF_KEY" in caplog.text


async def test_bearer_tokens_are_reviewed_for_the_consoles_own_audience(
    place: Place, no_console_settings: pytest.MonkeyPatch
) -> None:
    place.kubectl.run("create", "serviceaccount", "reviewer")
    place.kubectl.run(
        "create",
        "rolebinding",
        "reviewer-looks",
        "--role=exceptions-alice",
        f"--serviceaccount={place.namespace}:reviewer",
    )
    for_console = place.kubectl.run("create", "token", "reviewer", "--audience=onceflow-console").stdout.strip()
    for_api_server = place.kubectl.run("create", "token", "reviewer").stdout.strip()
    no_console_settings.setenv("ONCEFLOW_CONSOLE_AUDIENCES", "onceflow-console")
    listing = f"/exceptions?namespace={place.namespace}"
    async with serving(Console(place.nats_url, place.kube, auth="token")) as url, httpx.AsyncClient() as client:
        ok = await client.get(url + listing, headers={"Authorization": f"Bearer {for_console}"})
        assert ok.status_code == 200, ok.text
        elsewhere = await client.get(url + listing, headers={"Authorization": f"Bearer {for_api_server}"})
        assert elsewhere.status_code == 401
