"""Backpressure a sender can see: past the Connector's maxBacklog the gateway answers 429.

Real gateway process, real nats-server, the runner in this interpreter with a Caller that holds
every call until the test lets go: its consumer lag stays put, its heartbeats carry it to the
gateway, and the ledger at the end shows that a refused webhook stored nothing.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.engine.ports import Response
from tests.integration.scenario import eventually, signed_post
from tests.integration.test_delivery_faults import SECRET, SIG, Harness, start, stop

MAX_BACKLOG = 30


class HeldCaller:
    """The real HTTP caller, behind a gate: calls wait until `release` (a runner stuck on its target)."""

    def __init__(self, real: HttpCaller) -> None:
        self.real, self.gate = real, asyncio.Event()

    async def request(self, *args: Any, **kw: Any) -> Response:
        await self.gate.wait()
        return await self.real.request(*args, **kw)

    async def aclose(self) -> None:
        await self.real.aclose()


async def gateway_backlog(h: Harness) -> float:
    """`onceflow_gateway_backlog` from the gateway's own /metrics."""
    port = h.run.health_ports["gateway-src"]
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.search(r'^onceflow_gateway_backlog\{connector="src"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else -1.0


async def post(h: Harness, key: str) -> httpx.Response:
    body = f'{{"key": "{key}", "name": "Customer {key}"}}'.encode()
    return await signed_post(h.client, h.run.gateway_url("src"), "hmac", SECRET, body, key, **SIG)  # type: ignore[no-any-return]


async def test_past_max_backlog_the_gateway_answers_429_with_retry_after_and_accepts_again_once_drained(
    nats_server: NatsServer,
) -> None:
    h = await start(nats_server, webhook={"maxBacklog": MAX_BACKLOG}, in_process=True)
    try:
        # No runner reports yet: the gateway accepts everything (the stream is the buffer).
        await h.send_many([f"a{i}" for i in range(80)])
        assert h.plan is not None
        held = HeldCaller(HttpCaller(h.plan.connectors, h.run.workdir / "secrets"))
        await h.start_runner(held)  # takes its concurrency (32) and holds them: 48 stay undelivered

        await eventually(lambda: _at_least(h, MAX_BACKLOG), within=30, interval=0.2)
        refused = await post(h, "late")
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "retry later" in refused.json()["error"]

        held.gate.set()
        await eventually(lambda: _below(h, MAX_BACKLOG), within=60, interval=0.2)
        await h.send("late")
        ledger = await h.settled(len(h.accepted), within=90)
        assert len(h.accepted) == 81
        assert ledger.effects["late"] == 1  # refused once, stored once when the runner caught up
    finally:
        await stop(h)


async def _at_least(h: Harness, n: int) -> bool:
    return await gateway_backlog(h) >= n


async def _below(h: Harness, n: int) -> bool:
    return 0 <= await gateway_backlog(h) < n
