"""The operator's endpoint probe against real HTTP servers: it follows no redirect and refuses
link-local and metadata addresses, so a Connector cannot make the operator pod fetch for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from onceflow_operator.clients.probe import is_forbidden_address, probe_connector_endpoint, probe_endpoint
from onceflow_operator.controller.connector import probed_status
from onceflow_runner.contract.plan import ConnectorPlan


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that redirects to a second one, which records every request it gets."""
    hits: list[str] = []

    async def target(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="internal")

    inner = web.Application()
    inner.router.add_get("/{tail:.*}", target)
    inner_runner, inner_url = await _serve(inner)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{inner_url}/latest/meta-data/")

    outer = web.Application()
    outer.router.add_get("/{tail:.*}", redirect)
    outer_runner, outer_url = await _serve(outer)
    yield outer_url, hits
    for runner in (outer_runner, inner_runner):
        await runner.cleanup()


async def test_probe_reports_a_redirect_and_does_not_follow_it(servers: tuple[str, list[str]]) -> None:
    redirecting, hits = servers
    result = await probe_endpoint(f"{redirecting}/health")
    assert result.status == 302
    assert hits == []  # the redirect target was never asked
    status = probed_status({"metadata": {"generation": 1}, "status": {}}, result)
    assert status["lastHttpStatus"] == 302


def _assertion_plan(base_url: str) -> ConnectorPlan:
    """A Connector signing client assertions (NetSuite's shape) with the key in Secret `ns`."""
    auth = {
        "type": "OAuth2ClientCredentials",
        "client_id": {"name": "ns", "key": "client-id"},
        "token_url": f"{base_url}/token",
        "assertion_key": {"name": "ns", "key": "key"},
        "assertion_key_id": "cert-42",
        "assertion_algorithm": "PS256",
    }
    return ConnectorPlan.model_validate({"name": "netsuite", "base_url": base_url, "auth": auth})


async def test_a_key_that_is_no_usable_key_is_authenticated_false_naming_the_field_and_reachable_still_probed() -> None:
    """The documented example's placeholder key once raised out of the probe timer: a stack trace in
    the operator's log every minute and no word in the Connector's status."""
    asked: list[tuple[str, str | None]] = []

    async def health(request: web.Request) -> web.Response:
        asked.append((request.path, request.headers.get("Authorization")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", health)
    runner, url = await _serve(app)
    values = {("ns", "client-id"): "client-123", ("ns", "key"): "paste the PEM key here"}
    try:
        result = await probe_connector_endpoint(
            _assertion_plan(url), "/health", lambda ref: values[(ref.name, ref.key)]
        )
    finally:
        await runner.cleanup()
    assert result.status == 200
    assert asked == [("/health", None)]  # asked, without credentials
    status = probed_status({"metadata": {"generation": 1}, "status": {}}, result)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Reachable"]["status"] == "True"
    assert conditions["Authenticated"]["status"] == "False"
    assert (
        "oauth2.clientAssertion.privateKeyRef does not hold an unencrypted PEM private key"
        in (conditions["Authenticated"]["message"])
    )
    assert "paste the PEM" not in str(status)


async def test_an_unusable_key_and_an_unreachable_endpoint_say_both() -> None:
    values = {("ns", "client-id"): "client-123", ("ns", "key"): "not a key"}
    result = await probe_connector_endpoint(
        _assertion_plan("http://127.0.0.1:9"), "/health", lambda ref: values[(ref.name, ref.key)], seconds=2
    )
    status = probed_status({"metadata": {"generation": 1}, "status": {}}, result)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Reachable"]["status"] == "False"
    assert conditions["Reachable"]["reason"] == "ProbeFailed"
    assert conditions["Authenticated"]["status"] == "False"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
async def test_probe_refuses_link_local_and_metadata_addresses(url: str) -> None:
    result = await probe_endpoint(url, seconds=2)
    assert result.status is None
    assert result.error.startswith("refused")


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("169.254.169.254", True),
        ("169.254.0.1", True),
        ("fe80::1%eth0", True),
        ("::ffff:169.254.169.254", True),
        ("fd00:ec2::254", True),
        ("127.0.0.1", False),
        ("10.0.0.5", False),
        ("erp.example.test", False),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(address) is forbidden
