"""Runner throughput beside raw baselines measured in the same run.

Prints messages/s, and messages per CPU-second of this process (`*_per_cpu_s`), for:
  1. raw nats-py pipeline (fetch, decode, validate with pydantic, republish, ack)  -- baseline
  2. the runner: validate -> map -> publish
  3. raw aiohttp client POSTing to the sandbox ERP                                 -- baseline
  4. the runner: validate -> map -> call(sandbox ERP)
  5. httpx AsyncClient (default transport) vs httpx over aiohttp, same load
and the runner's time from process start to /readyz. Last line: one JSON object.

`--tracing` measures instead what spans cost on pipeline 4, alternating in the same run: tracing
off (the default: `tracing.span` returns a shared no-op), the OpenTelemetry API's no-op tracer
(tracing enabled with no SDK installed), and the SDK exporting every span over OTLP/HTTP to a real
Jaeger (the export thread runs in this process, so its CPU is counted). Jaeger is $ONCEFLOW_JAEGER
or the one hack/build-jaeger.sh built.

Everything measured runs in this one process on the same event loop (uvloop when installed, as
the runner's own process uses; `--loop asyncio` for the standard one), so the ratios compare
like with like. Per CPU-second is the steadier figure on a shared machine: wall-clock rates move
with whatever else runs, CPU time per record much less. nats-server and the sandbox ERP run in
their own processes and are not counted.

Run: .venv/bin/python bench/runner_throughput.py [--records N] [--loop uvloop|asyncio] [--tracing]
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import VALIDATE_MAP, bench_plan, env_note, erp_state, loop_name, record, start_sandbox, wait_http

from onceflow_operator.clients.topology import ensure_plan, ensure_streams
from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.transport import AiohttpTransport
from onceflow_runner.engine.entities import Customer
from onceflow_runner.runner import Runner

CONCURRENCY = 64


async def timed(work: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    """(records/s, records per CPU-second of this process) of `work`, which returns its record count."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = await work()
    return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


async def publish_records(nc: nats.NATS, subject: str, n: int) -> None:
    js = nc.jetstream()
    futures = [
        await js.publish_async(subject, json.dumps(record(i)).encode(), headers={"Nats-Msg-Id": f"{subject}/{i}"})
        for i in range(n)
    ]
    await asyncio.gather(*futures)


async def raw_pipeline(url: str, n: int) -> tuple[float, float]:
    """What a hand-written consumer does, with no idempotency store, audit or metrics."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    ns = f"raw{uuid.uuid4().hex[:6]}"
    subject = f"onceflow.{ns}.in.src.bench"
    await publish_records(nc, subject, n)
    sub = await js.pull_subscribe(subject, durable=f"{ns}_raw", stream="ONCEFLOW_IN")

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

    async def work() -> int:
        done = 0
        while done < n:
            msgs = await sub.fetch(CONCURRENCY, timeout=5)
            await asyncio.gather(*(handle(m) for m in msgs))
            done += len(msgs)
        return done

    rates = await timed(work)
    await nc.close()
    return rates


async def runner_pipeline(
    url: str, n: int, steps: list[dict[str, object]], connectors: dict[str, object], secrets: Path
) -> tuple[float, float]:
    ns = f"run{uuid.uuid4().hex[:6]}"
    plan = bench_plan(ns, steps, connectors, concurrency=CONCURRENCY)
    nc = await nats.connect(url)
    # What the operator does for a new Integration: the runner only binds to its consumer and bucket.
    await ensure_plan(nc.jetstream(), plan)
    await publish_records(nc, plan.nats.subject, n)
    runner = Runner(plan, nats_url=url, secrets_dir=secrets, heartbeat_seconds=60)

    async def work() -> int:
        await runner.start()
        counter = runner.metrics.processed.labels(integration="bench", revision="bench-1")
        while counter._value.get() < n:
            await asyncio.sleep(0.01)
        return n

    rates = await timed(work)
    await runner.stop()
    await nc.close()
    return rates


async def raw_aiohttp(erp: str, n: int) -> tuple[float, float]:
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

        async def work() -> int:
            await asyncio.gather(*(one(i) for i in range(n)))
            return n

        return await timed(work)


async def httpx_client(erp: str, n: int, transport: httpx.AsyncBaseTransport | None) -> tuple[float, float]:
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

        async def work() -> int:
            await asyncio.gather(*(one(i) for i in range(n)))
            return n

        return await timed(work)


async def runner_start_seconds(url: str, secrets: Path) -> float:
    plan = bench_plan(f"st{uuid.uuid4().hex[:6]}", VALIDATE_MAP)
    nc = await nats.connect(url)
    await ensure_plan(nc.jetstream(), plan)  # the operator's part; not counted in the start
    await nc.close()
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


async def tracing_costs(
    url: str, n: int, steps: list[dict[str, object]], connectors: dict[str, object], secrets: Path, rounds: int
) -> dict[str, tuple[float, float]]:
    """Pipeline 4 with tracing off, on the API's no-op tracer, and exporting to Jaeger; best of `rounds` each."""
    import os

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from onceflow_runner import tracing

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.jaeger import JaegerServer

    binary = (
        os.environ.get("ONCEFLOW_JAEGER")
        or subprocess.run(
            [str(Path(__file__).resolve().parents[1] / "hack" / "build-jaeger.sh")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    jaeger = JaegerServer(binary)
    provider = TracerProvider(resource=Resource.create({"service.name": "onceflow-bench"}))
    # A queue large enough that no span is dropped: every span of the run is exported.
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{jaeger.otlp_endpoint}/v1/traces"), max_queue_size=1 << 17
    )
    provider.add_span_processor(processor)
    best: dict[str, tuple[float, float]] = {}

    def keep(name: str, rates: tuple[float, float]) -> None:
        old = best.get(name, (0.0, 0.0))
        best[name] = (max(old[0], rates[0]), max(old[1], rates[1]))

    try:
        for _ in range(rounds):
            tracing.disable()
            keep("runner_call_tracing_off", await runner_pipeline(url, n, steps, connectors, secrets))
            tracing.enable()  # no SDK installed: the API's no-op tracer
            keep("runner_call_tracing_noop_api", await runner_pipeline(url, n, steps, connectors, secrets))
            tracing.enable(provider)

            async def exported() -> tuple[float, float]:
                wall, cpu = time.perf_counter(), time.process_time()
                await runner_pipeline(url, n, steps, connectors, secrets)
                processor.force_flush()  # the export's CPU belongs to these records
                return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)

            keep("runner_call_tracing_otlp", await exported())
    finally:
        tracing.disable()
        provider.shutdown()
        jaeger.stop()
    return best


async def main(n: int, *, tracing_only: bool = False, rounds: int = 2) -> dict[str, float]:
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

        def put(name: str, rates: tuple[float, float]) -> None:
            out[f"{name}_per_s"], out[f"{name}_per_cpu_s"] = rates

        if tracing_only:
            costs = await tracing_costs(server.url, n, [*VALIDATE_MAP, call], erp_connector, secrets, rounds)
            for name, rates in costs.items():
                put(name, rates)
            for variant in ("noop_api", "otlp"):
                for unit in ("per_s", "per_cpu_s"):
                    off = out[f"runner_call_tracing_off_{unit}"]
                    out[f"tracing_{variant}_ratio_vs_off_{unit}"] = out[f"runner_call_tracing_{variant}_{unit}"] / off
            return {k: round(v, 3) for k, v in out.items()}

        put("raw_pipeline", await raw_pipeline(server.url, n))
        put("runner_publish", await runner_pipeline(server.url, n, [*VALIDATE_MAP, publish], {}, secrets))
        put("raw_aiohttp", await raw_aiohttp(erp, n))
        put("httpx_default", await httpx_client(erp, n, None))
        put("httpx_onceflow_transport", await httpx_client(erp, n, AiohttpTransport()))
        before = len(erp_state(erp)["effects"])
        put("runner_call", await runner_pipeline(server.url, n, [*VALIDATE_MAP, call], erp_connector, secrets))
        out["erp_effects_added"] = len(erp_state(erp)["effects"]) - before
        out["runner_start_to_ready_s"] = await runner_start_seconds(server.url, secrets)
        for unit in ("per_s", "per_cpu_s"):
            out[f"publish_ratio_vs_raw_{unit}"] = out[f"runner_publish_{unit}"] / out[f"raw_pipeline_{unit}"]
            out[f"call_ratio_vs_raw_client_{unit}"] = out[f"runner_call_{unit}"] / out[f"raw_aiohttp_{unit}"]
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
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--tracing", action="store_true", help="measure tracing off / no-op API / OTLP export")
    parser.add_argument("--rounds", type=int, default=2, help="with --tracing: alternations, best of each kept")
    args = parser.parse_args()
    if args.loop == "uvloop":
        from onceflow_runner.main import run_loop

        result = run_loop(main(args.records, tracing_only=args.tracing, rounds=args.rounds))
    else:
        result = asyncio.run(main(args.records, tracing_only=args.tracing, rounds=args.rounds))
    loop = loop_name() if args.loop == "uvloop" else "asyncio"
    print(f"# {args.records} records, concurrency {CONCURRENCY}, loop {loop}, {env_note()}")
    for key, value in result.items():
        print(f"{key:34s} {value}")
    print(json.dumps(result))
