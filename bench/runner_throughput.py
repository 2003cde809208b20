"""Runner throughput beside raw baselines measured in the same run.

Prints messages/s for:
  1. raw nats-py pipeline (fetch, decode, validate with pydantic, republish, ack)  -- baseline
  2. the runner: validate -> map -> publish
  3. raw aiohttp client POSTing to the sandbox ERP                                 -- baseline
  4. the runner: validate -> map -> call(sandbox ERP)
  5. httpx AsyncClient (default transport) vs httpx over aiohttp, same load
and the runner's time from process start to /readyz. Last line: one JSON object.

Run: .venv/bin/python bench/runner_throughput.py [--records N]
Never part of the test suite; timings are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import VALIDATE_MAP, bench_plan, env_note, erp_state, record, start_sandbox, wait_http

from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.natsio import ensure_streams
from onceflow_runner.adapters.transport import AiohttpTransport
from onceflow_runner.engine.entities import Customer
from onceflow_runner.runner import Runner

CONCURRENCY = 64


async def publish_records(nc: nats.NATS, subject: str, n: int) -> None:
    js = nc.jetstream()
    futures = [
        await js.publish_async(subject, json.dumps(record(i)).encode(), headers={"Nats-Msg-Id": f"{subject}/{i}"})
        for i in range(n)
    ]
    await asyncio.gather(*futures)


async def raw_pipeline(url: str, n: int) -> float:
    """What a hand-written consumer does, with no idempotency store, audit or metrics."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    ns = f"raw{uuid.uuid4().hex[:6]}"
    subject = f"onceflow.{ns}.in.src.bench"
    await publish_records(nc, subject, n)
    sub = await js.pull_subscribe(subject, durable=f"{ns}_raw", stream="ONCEFLOW_IN")
    done = 0
    started = time.perf_counter()

    async def handle(msg: nats.aio.msg.Msg) -> None:
        data = json.loads(msg.data)
        Customer.model_validate(
            {
                "name": data["company"],
                "tax_id": data["tax"],
                "country": data["country"],
                "postal_code": data["zip"],
            }
        )
        await js.publish(f"onceflow.{ns}.events.customer.created", msg.data, headers={"Nats-Msg-Id": data["key"]})
        await msg.ack()

    while done < n:
        msgs = await sub.fetch(CONCURRENCY, timeout=5)
        await asyncio.gather(*(handle(m) for m in msgs))
        done += len(msgs)
    elapsed = time.perf_counter() - started
    await nc.close()
    return n / elapsed


async def runner_pipeline(
    url: str, n: int, steps: list[dict[str, object]], connectors: dict[str, object], secrets: Path
) -> float:
    ns = f"run{uuid.uuid4().hex[:6]}"
    plan = bench_plan(ns, steps, connectors, concurrency=CONCURRENCY)
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    await publish_records(nc, plan.nats.subject, n)
    runner = Runner(plan, nats_url=url, secrets_dir=secrets, heartbeat_seconds=60)
    started = time.perf_counter()
    await runner.start()
    counter = runner.metrics.processed.labels(integration="bench", revision="bench-1")
    while counter._value.get() < n:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await runner.stop()
    await nc.close()
    return n / elapsed


async def raw_aiohttp(erp: str, n: int) -> float:
    headers = {"Authorization": "token sandbox-key:sandbox-secret", "Content-Type": "application/json"}
    run = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> None:
            async with sem:
                body = json.dumps({"customer_name": f"raw-{run}-{i}"})
                async with session.post(
                    f"{erp}/api/resource/Customer", data=body, headers={"Idempotency-Key": f"{run}/{i}"}
                ) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


async def httpx_client(erp: str, n: int, transport: httpx.AsyncBaseTransport | None) -> float:
    headers = {"Authorization": "token sandbox-key:sandbox-secret", "Content-Type": "application/json"}
    run = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=erp, headers=headers, limits=limits, transport=transport) as client:

        async def one(i: int) -> None:
            async with sem:
                await client.post(
                    "/api/resource/Customer",
                    content=json.dumps({"customer_name": f"hx-{run}-{i}"}),
                    headers={"Idempotency-Key": f"{run}/{i}"},
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


def runner_start_seconds(url: str, secrets: Path) -> float:
    plan = bench_plan(f"st{uuid.uuid4().hex[:6]}", VALIDATE_MAP)
    path = secrets.parent / "plan.json"
    path.write_text(plan.to_json())
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onceflow_operator",
            "runner",
            "--plan",
            str(path),
            "--nats",
            url,
            "--secrets-dir",
            str(secrets),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()


async def main(n: int) -> dict[str, float]:
    server = NatsServer()
    server.start()
    sandbox, erp = start_sandbox()
    secrets = Path(tempfile.mkdtemp(prefix="onceflow-bench-")) / "secrets"
    (secrets / "erp").mkdir(parents=True)
    (secrets / "erp" / "key").write_text("sandbox-key")
    (secrets / "erp" / "secret").write_text("sandbox-secret")
    erp_connector = {
        "erp": {
            "name": "erp",
            "base_url": erp,
            "requests_per_second": 1e6,
            "burst": 100000,
            "auth": {
                "type": "ERPNextToken",
                "api_key": {"name": "erp", "key": "key"},
                "api_secret": {"name": "erp", "key": "secret"},
            },
        }
    }
    call = {
        "name": "create",
        "kind": "call",
        "request": {
            "connector": "erp",
            "method": "POST",
            "path": '"/api/resource/Customer"',
            "body": '{"customer_name": record.name + " " + meta.integration + string(meta.streamSequence)}',
        },
    }
    publish = {"name": "announce", "kind": "publish", "publish": {"entity": "customer", "verb": "created"}}
    try:
        nc = await nats.connect(server.url)
        await ensure_streams(nc.jetstream())
        await nc.close()
        out: dict[str, float] = {}
        out["raw_pipeline_per_s"] = await raw_pipeline(server.url, n)
        out["runner_publish_per_s"] = await runner_pipeline(server.url, n, [*VALIDATE_MAP, publish], {}, secrets)
        out["raw_aiohttp_per_s"] = await raw_aiohttp(erp, n)
        out["httpx_default_per_s"] = await httpx_client(erp, n, None)
        out["httpx_onceflow_transport_per_s"] = await httpx_client(erp, n, AiohttpTransport())
        before = len(erp_state(erp)["effects"])
        out["runner_call_per_s"] = await runner_pipeline(server.url, n, [*VALIDATE_MAP, call], erp_connector, secrets)
        out["erp_effects_added"] = len(erp_state(erp)["effects"]) - before
        out["runner_start_to_ready_s"] = runner_start_seconds(server.url, secrets)
        out["publish_ratio_vs_raw"] = out["runner_publish_per_s"] / out["raw_pipeline_per_s"]
        out["call_ratio_vs_raw_client"] = out["runner_call_per_s"] / out["raw_aiohttp_per_s"]
        out["httpx_default_ratio_vs_aiohttp"] = out["httpx_default_per_s"] / out["raw_aiohttp_per_s"]
        out["httpx_onceflow_ratio_vs_aiohttp"] = out["httpx_onceflow_transport_per_s"] / out["raw_aiohttp_per_s"]
        return {k: round(v, 3) for k, v in out.items()}
    finally:
        sandbox.terminate()
        sandbox.wait()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    result = asyncio.run(main(args.records))
    print(f"# {args.records} records, concurrency {CONCURRENCY}, {env_note()}")
    for key, value in result.items():
        print(f"{key:34s} {value}")
    print(json.dumps(result))
