"""A Connector's call over aiohttp without an httpx.Request (`AiohttpTransport.exchange`), against a real server.

The production path no longer builds an `httpx.Request`; what reaches the target and what the
step reads must not change: the same headers (the client's defaults, the Connector's, the
idempotency key, JSON content type), the URL with its query, a gzip answer decoded once, an
answer over maxResponseBytes dropped unread, and a target too slow for the read timeout turned
into a transient failure.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.engine.functions import path_segment
from onceflow_runner.errors import TransientFailure


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[web.Request], dict[str, bytes]]]:
    """A target on a free port of 127.0.0.1: records each request and its body."""
    seen: list[web.Request] = []
    bodies: dict[str, bytes] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        bodies[request.path] = await request.read()
        if request.path == "/gzip":
            packed = gzip.compress(json.dumps({"name": "zipped"}).encode())
            return web.Response(body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if request.path == "/large":
            return web.Response(body=b"x" * 4096)
        if request.path == "/bomb":  # 100 KiB that decode to 100 MiB of zeros
            packer = zlib.compressobj(9, zlib.DEFLATED, 31)
            packed = b"".join(packer.compress(bytes(1 << 20)) for _ in range(100)) + packer.flush()
            return web.Response(body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if request.path == "/slow":
            await asyncio.sleep(2)
        return web.json_response({"ok": True, "query": dict(request.query)}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen, bodies
    await runner.cleanup()


def _caller(base: str, tmp_path: Path, **extra: Any) -> HttpCaller:
    plan = ConnectorPlan.model_validate(
        {"name": "erp", "base_url": base, "headers": {"X-Tenant": "acme"}, "attempts": 1, **extra}
    )
    return HttpCaller({"erp": plan}, tmp_path)


async def test_request_reaches_the_target_as_httpx_would_send_it(
    target: tuple[str, list[web.Request], dict[str, bytes]], tmp_path: Path
) -> None:
    base, seen, bodies = target
    caller = _caller(base, tmp_path)
    answer = await caller.request(
        "erp",
        "POST",
        "/api/Customer",
        query={"a": "1 2"},
        body={"n": 1},
        idempotency_key="k/1/create",
        headers={},
        step="create",
    )
    assert answer.status == 201
    assert answer.body == {"ok": True, "query": {"a": "1 2"}}
    sent = seen[-1]
    assert sent.headers["Idempotency-Key"] == "k/1/create"
    assert sent.headers["X-Tenant"] == "acme"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "*/*"
    assert sent.headers["User-Agent"].startswith("python-httpx/")
    assert bodies["/api/Customer"] == b'{"n":1}'
    zipped = await caller.request(
        "erp", "GET", "/gzip", query={}, body=None, idempotency_key=None, headers={}, step="read"
    )
    assert zipped.body == {"name": "zipped"}
    await caller.aclose()


async def test_too_large_and_too_slow_answers_are_transient(
    target: tuple[str, list[web.Request], dict[str, bytes]], tmp_path: Path
) -> None:
    base, _, _ = target
    caller = _caller(base, tmp_path, max_response_bytes=1024, read_timeout=0.3)
    with pytest.raises(TransientFailure, match="maxResponseBytes"):
        await caller.request("erp", "GET", "/large", query={}, body=None, idempotency_key=None, headers={}, step="s")
    with pytest.raises(TransientFailure, match="timed out"):
        await caller.request("erp", "GET", "/slow", query={}, body=None, idempotency_key=None, headers={}, step="s")
    await caller.aclose()


async def test_a_path_segment_reaches_the_target_percent_encoded_as_built(
    target: tuple[str, list[web.Request], dict[str, bytes]], tmp_path: Path
) -> None:
    """`pathSegment("ACME;1")` is `ACME%3B1` on the wire, not `ACME;1`.

    aiohttp re-quotes a URL given as text and decodes the reserved characters it thinks safe
    (`;`, `=`, `&`, `@`, `:`, `,`, `$`, `!`, `'`, `(`, `)`, `*`): a Java ERP (Tomcat, Jetty,
    Spring) reads `;1` as a path parameter and strips it, so the call updated customer ACME
    instead of ACME;1. httpx sends the bytes the step built, and so must the aiohttp path.
    """
    base, seen, _ = target
    caller = _caller(base, tmp_path)
    built = "/api/Customer/" + path_segment("ACME;1") + "/" + path_segment("a=b&c@d:e,f$g!h'i(j)k*l")
    await caller.request(
        "erp", "PUT", built, query={"q": "x;y=z"}, body={"n": 1}, idempotency_key=None, headers={}, step="update"
    )
    expected = httpx.URL(base + built).copy_merge_params({"q": "x;y=z"})
    assert seen[-1].raw_path == expected.raw_path.decode()
    assert seen[-1].match_info["tail"] == "api/Customer/ACME;1/a=b&c@d:e,f$g!h'i(j)k*l"
    await caller.aclose()


async def test_a_gzip_bomb_is_refused_as_it_decodes_not_after(
    target: tuple[str, list[web.Request], dict[str, bytes]], tmp_path: Path
) -> None:
    """100 KiB of gzip under a 1 MiB maxResponseBytes that decode to 100 MiB.

    The limit counted the bytes on the wire; httpx then decoded the whole answer at once and only
    then was it found too large: at the default 10 MiB a target's answer could decode to 10 GiB
    and the runner was killed for its memory, again at every redelivery. Refused as it decodes,
    the call holds little more than the limit.
    """
    base, _, _ = target
    caller = _caller(base, tmp_path, max_response_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(TransientFailure, match="maxResponseBytes"):
            await caller.request("erp", "GET", "/bomb", query={}, body=None, idempotency_key=None, headers={}, step="s")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"{peak >> 20} MiB held while reading a 1 MiB-limited answer"
    await caller.aclose()


async def test_an_ipv6_literal_base_url_is_called_with_its_host_header_and_the_query_as_built(
    tmp_path: Path,
) -> None:
    """Attack test of what held: a Connector at http://[::1]:port/base, a query with a repeated key,
    '+', '%2B' and non-ASCII; the target sees the Host and request line httpx would send."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "::1", 0)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        pytest.skip("no IPv6 loopback on this machine")
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://[::1]:{port}/base"
    caller = _caller(base, tmp_path)
    path = "/api/x?tag=a&tag=b&plus=a+b&enc=%2B"
    await caller.request(
        "erp", "GET", path, query={"name": "Müller €"}, body=None, idempotency_key=None, headers={}, step="s"
    )
    expected = httpx.URL(base + path).copy_merge_params({"name": "Müller €"})
    assert seen[-1].headers["Host"] == f"[::1]:{port}"
    assert seen[-1].raw_path == expected.raw_path.decode()
    assert seen[-1].query.getall("tag") == ["a", "b"]
    await caller.aclose()
    await runner.cleanup()
