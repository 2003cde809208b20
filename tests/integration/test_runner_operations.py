"""What an SRE sees of a running runner and gateway: heartbeats, metrics, health, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import nats
import pytest

from onceflow_operator.dev.natsserver import NatsServer
from tests.integration.test_delivery_faults import Harness, start, stop


@pytest.fixture
async def harness(nats_server: NatsServer) -> AsyncIterator[Harness]:
    h = await start(nats_server)
    yield h
    await stop(h)


async def test_stats_heartbeat_reports_the_revisions_figures(harness: Harness) -> None:
    nc = await nats.connect(harness.nats.url)
    beats: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        await beats.put(json.loads(msg.data))

    await nc.subscribe(f"onceflow.{harness.namespace}.stats.ledger", cb=on_beat)
    await harness.send_many([f"h{i}" for i in range(10)])
    await harness.settled(10)
    try:
        while True:
            beat = await asyncio.wait_for(beats.get(), timeout=10)
            if beat["totals"].get("completed", 0) >= 10:  # type: ignore[union-attr]
                break
    finally:
        await nc.close()
    assert beat["integration"] == "ledger"
    assert str(beat["revision"]).startswith("ledger-")
    assert beat["errorRatio"] == 0.0
    assert float(beat["p95LatencyMs"]) > 0  # type: ignore[arg-type]
    assert beat["lastSuccessTime"]


async def test_metrics_health_and_readiness_endpoints(harness: Harness) -> None:
    await harness.send_many([f"m{i}" for i in range(5)])
    await harness.settled(5)
    _, port = harness.run.runners["ledger"]
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        gport = harness.run.health_ports["gateway-src"]  # the gateway's operations port, not its webhook port
        gateway_metrics = (await client.get(f"http://127.0.0.1:{gport}/metrics")).text
    assert 'onceflow_runner_processed_total{integration="ledger"' in metrics
    assert "onceflow_runner_call_seconds_bucket" in metrics
    assert 'onceflow_gateway_requests_total{code="202",connector="src"} 5.0' in gateway_metrics


async def test_gateway_refuses_bodies_over_the_cap_with_413(harness: Harness) -> None:
    body = b'{"key": "big", "pad": "' + b"x" * (1048576 + 10) + b'"}'
    async with httpx.AsyncClient() as client:
        resp = await client.post(harness.run.gateway_url("src"), content=body, headers={"X-Signature": "0"})
    assert resp.status_code == 413


async def test_logs_never_contain_secret_values(harness: Harness) -> None:
    harness.erp.faults.append(
        __import__("onceflow_runner.testing.sandbox", fromlist=["Fault"]).Fault(status=401, times=1)
    )
    await harness.send("secret-check")
    await harness.settled(1)
    logs = "".join(p.read_text(errors="replace") for p in (harness.run.workdir / "logs").glob("*.log"))
    assert "sandbox-secret" not in logs
    assert "ledger-secret" not in logs
