"""Signed webhooks end to end: senders -> gateway -> JetStream -> runner -> sandbox ERP.

For 1, 8 and 32 concurrent senders (each for --seconds): records accepted/s by the gateway,
ERP effects/s, p50/p99 latency from send to the ERP effect, peak RSS of every process involved
(gateway, runner, nats-server, sandbox), and lost / doubled counts from the ERP's own books.
The workflow is validate -> map -> call(ERP), the shape of scenario 1 without dedupe.
Last line: one JSON object. Run: .venv/bin/python bench/webhook_e2e.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import env_note, peak_rss_mb, start_sandbox

from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.gateway.signatures import SignatureConfig, sign

SECRET = "bench-secret"


def manifests(erp: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src"}, "stringData": {"secret": SECRET}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "erp-api"},
            "stringData": {"api-key": "sandbox-key", "api-secret": "sandbox-secret"},
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "src"},
            "spec": {
                "type": "Webhook",
                "webhook": {
                    "path": "/in",
                    "signature": {
                        "scheme": "hmac",
                        "header": "X-Signature",
                        "secretRef": {"name": "src", "key": "secret"},
                    },
                },
            },
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "erp"},
            "spec": {
                "type": "REST",
                "rest": {
                    "baseURL": erp,
                    "rateLimit": {"requestsPerSecond": 100000, "burst": 10000},
                    "auth": {
                        "type": "ERPNextToken",
                        "erpnextToken": {
                            "apiKeyRef": {"name": "erp-api", "key": "api-key"},
                            "apiSecretRef": {"name": "erp-api", "key": "api-secret"},
                        },
                    },
                },
            },
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": "e2e"},
            "spec": {
                "trigger": {"connector": {"name": "src"}},
                "businessKey": "'k/' + input.key",
                "concurrency": 64,
                "steps": [
                    {
                        "name": "canonical",
                        "map": {
                            "fields": {
                                "name": "input.company",
                                "tax_id": "input.tax",
                                "country": "input.country",
                            }
                        },
                    },
                    {"name": "check", "validate": {"entity": "customer"}},
                    {
                        "name": "create",
                        "call": {
                            "connector": "erp",
                            "path": '"/api/resource/Customer"',
                            "body": '{"customer_name": record.name, "tax_id": record.tax_id}',
                        },
                    },
                ],
            },
        },
    ]


async def sender_load(url: str, senders: int, seconds: float, run_id: str) -> dict[str, float]:
    config = SignatureConfig("hmac", header="X-Signature")
    sent: dict[str, float] = {}
    stop = time.monotonic() + seconds

    async def sender(session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while time.monotonic() < stop:
            key = f"{run_id}-{n}-{i}"
            body = json.dumps({"key": key, "company": f"Customer {key}", "tax": f"DE{key}", "country": "DE"}).encode()
            headers = sign(config, SECRET, body, delivery_id=key, timestamp=int(time.time()))
            t = time.time()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 202:
                    sent[f"k/{key}/create"] = t
            i += 1

    # The senders use aiohttp, the fastest client measured here, so they take little CPU from
    # the processes under test on this 2-core machine.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders)) as session:
        await asyncio.gather(*(sender(session, n) for n in range(senders)))
    return sent


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(seconds: float) -> dict[str, Any]:
    server = NatsServer()
    server.start()
    sandbox, erp = start_sandbox()
    run = LocalRun.from_documents(
        manifests(erp), namespace=f"b{uuid.uuid4().hex[:6]}", nats_url=server.url, first_port=free_port()
    )
    for table in (run.gateways, run.runners):
        for name, (plan, _) in list(table.items()):
            table[name] = (plan, free_port())
    run.start()
    results: dict[str, Any] = {}
    try:
        url = run.gateway_url("src")
        for senders in (1, 8, 32):
            run_id = uuid.uuid4().hex[:6]
            started = time.monotonic()
            sent = await sender_load(url, senders, seconds, run_id)
            accept_elapsed = time.monotonic() - started
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = json.loads(httpx.get(f"{erp}/_sandbox/state?times=1").text)
                done = [k for k in sent if k in state["effects"]]
                if len(done) == len(sent):
                    break
                await asyncio.sleep(0.2)
            effects, times = state["effects"], state["effectTimes"]
            ours = {k: v for k, v in effects.items() if k in sent}
            latencies = [(times[k] - sent[k]) * 1e3 for k in ours]
            last_effect = max((times[k] for k in ours), default=time.time())
            first_send = min(sent.values(), default=time.time())
            results[f"senders_{senders}"] = {
                "accepted_per_s": round(len(sent) / accept_elapsed, 1),
                "erp_effects_per_s": round(len(ours) / max(last_effect - first_send, 1e-9), 1),
                "p50_ms": round(quantile(latencies, 0.5), 1),
                "p99_ms": round(quantile(latencies, 0.99), 1),
                "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
                "accepted": len(sent),
                "lost": len(sent) - len(ours),
                "doubled": sum(1 for n in ours.values() if n > 1),
            }
        pids = [p.pid for p in run.procs.values()] + [sandbox.pid] + ([server.proc.pid] if server.proc else [])
        results["peak_rss_mb_all_processes"] = peak_rss_mb(pids)
        return results
    finally:
        run.stop()
        sandbox.terminate()
        sandbox.wait()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(main(args.seconds))
    print(f"# {args.seconds:.0f}s per sender count, {env_note()}")
    for key, value in result.items():
        print(f"{key:28s} {value}")
    print(json.dumps(result))
