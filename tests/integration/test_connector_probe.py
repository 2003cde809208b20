"""The operator's endpoint probe against real HTTP servers: it follows no redirect and refuses
link-local and metadata addresses, so a Connector cannot make the operator pod fetch for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from onceflow_operator.clients.probe import is_forbidden_address, probe_endpoint
from onceflow_operator.controller.connector import probed_status


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
