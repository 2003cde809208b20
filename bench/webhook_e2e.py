"""Signed webhooks end to end: senders -> gateway -> JetStream -> runner -> sandbox ERP.

Open loop: webhooks are sent at a fixed offered rate whatever the answers take (as real senders
do), and each one's latency runs from the moment it was due, so a slow gateway cannot hide its
queue (no coordinated omission). Three parts:

  (a) capacity: offered rates rising by --step until ERP effects/s stop rising (less than 5%
      more than the best level); capacity is the most effects/s any level sustained;
  (b) latency at 50% and 80% of that capacity: p50/p99/p99.9 from due time to the ERP effect;
  (c) after each level's load stops, a drain: wait until every accepted webhook has its effect,
      or until no new effect arrived for --stall seconds (bounded by --drain-max). `backlog_at_end`
      counts accepted records still without an effect when the load stopped (queued, not lost);
      `lost` counts those still without one after the drain; `doubled` keys with two effects.

Refusals (429/503 with Retry-After, the gateway's backpressure) are counted, not retried.
The workflow is validate -> map -> call(ERP), the shape of scenario 1 without dedupe. The
senders share the machine with everything else; their CPU is part of the load, so they are
as cheap as honest: each level's requests are signed and encoded before it starts and written on
keep-alive connections by a raw HTTP/1.1 sender (bench/_common.py RawSender), and the CPU per
record of every process (gateway, runner, nats-server, sandbox ERP, senders) is reported.
--runner-processes N runs N runner processes on the Integration's one durable consumer;
--gateway-processes N serves the webhook port from N gateway processes (SO_REUSEPORT).
Last line: one JSON object. Run: .venv/bin/python bench/webhook_e2e.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RawSender, env_note, loop_name, peak_rss_mb, post_request, start_sandbox

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


@dataclass
class Level:
    """One open-loop load level: what was offered, accepted, refused, and when each record was due."""

    rate: float
    seconds: float
    run_id: str
    due: dict[str, float] = field(default_factory=dict)  # effect key -> wall-clock time it was due
    refused: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0


def signed_requests(path: str, run_id: str, total: int) -> list[tuple[str, bytes]]:
    """Every request of a level, signed and encoded before the level starts (the sender's CPU is not ours)."""
    config = SignatureConfig("hmac", header="X-Signature")
    out = []
    for i in range(total):
        key = f"{run_id}-{i}"
        body = json.dumps({"key": key, "company": f"Customer {key}", "tax": f"DE{key}", "country": "DE"}).encode()
        out.append((key, post_request(path, body, sign(config, SECRET, body, delivery_id=key, timestamp=0))))
    return out


async def offer(sender: RawSender, path: str, rate: float, seconds: float) -> Level:
    """Send signed webhooks at `rate` per second for `seconds`, each due at its own time.

    A request whose connection is busy waits for a free one (up to the sender's connection limit)
    and its latency still runs from its due time.
    """
    level = Level(rate, seconds, uuid.uuid4().hex[:8])
    requests = signed_requests(path, level.run_id, int(rate * seconds))

    async def one(key: str, request: bytes, due: float) -> None:
        try:
            status = await sender.send(request)
        except OSError:
            level.errors += 1
            return
        if status == 202:
            level.due[f"k/{key}/create"] = due
        else:
            level.refused[status] += 1

    tasks = []
    level.started, clock = time.time(), time.monotonic()
    for i, (key, request) in enumerate(requests):
        wait = clock + i / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(key, request, level.started + i / rate)))
    await asyncio.gather(*tasks)
    level.ended = time.time()
    return level


async def effects_of(erp: str, level: Level) -> tuple[dict[str, int], dict[str, float]]:
    """This level's keys in the ERP's books: effects per key and the time of each key's first effect."""
    async with aiohttp.ClientSession() as session:
        params = {"times": "1", "prefix": f"k/{level.run_id}-"}
        async with session.get(f"{erp}/_sandbox/state", params=params) as resp:
            state = await resp.json()
    return state["effects"], state["effectTimes"]


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def settle(erp: str, level: Level, stall: float, drain_max: float) -> dict[str, Any]:
    """Drain after the load: wait for every accepted record's effect, then read the books once."""
    effects, _ = await effects_of(erp, level)
    backlog = sum(1 for k in level.due if k not in effects)
    drain_started = last_progress = time.monotonic()
    arrived = len(effects)
    ended = "complete"
    while arrived < len(level.due):
        now = time.monotonic()
        if now - last_progress > stall:
            ended = "stalled"
            break
        if now - drain_started > drain_max:
            ended = "limit"
            break
        await asyncio.sleep(0.5)
        effects, _ = await effects_of(erp, level)
        if len(effects) > arrived:
            arrived, last_progress = len(effects), time.monotonic()
    drained = time.monotonic() - drain_started
    effects, times = await effects_of(erp, level)
    ours = [k for k in level.due if k in effects]
    latencies = [(times[k] - level.due[k]) * 1e3 for k in ours]
    in_window = sum(1 for k in ours if times[k] <= level.ended)
    return {
        "offered_per_s": level.rate,
        "accepted_per_s": round(len(level.due) / level.seconds, 1),
        "erp_effects_per_s": round(in_window / max(level.ended - level.started, 1e-9), 1),
        "p50_ms": round(quantile(latencies, 0.5), 1),
        "p99_ms": round(quantile(latencies, 0.99), 1),
        "p999_ms": round(quantile(latencies, 0.999), 1),
        "accepted": len(level.due),
        "refused": dict(level.refused),
        "send_errors": level.errors,
        "backlog_at_end": backlog,
        "drain_s": round(drained, 1),
        "drain": ended,
        "lost": len(level.due) - len(ours),
        "doubled": sum(1 for k in ours if effects[k] > 1),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_gateway_processes(pid: int) -> list[int]:
    """A gateway process and the gateway processes it started (--gateway-processes), not other children."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid, *(p for p in found if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes())]


def cpu_by_role(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far per role (several runner processes add up); this process as `senders`."""
    out = {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in roles.items()}
    out["senders"] = time.process_time()
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = NatsServer()
    server.start()
    sandbox, erp = start_sandbox()
    if args.gateway_processes > 1:  # read by `onceflow gateway`, which LocalRun starts with this environment
        os.environ["ONCEFLOW_GATEWAY_PROCESSES"] = str(args.gateway_processes)
    run = LocalRun.from_documents(
        manifests(erp), namespace=f"b{uuid.uuid4().hex[:6]}", nats_url=server.url, first_port=free_port()
    )
    for table in (run.gateways, run.runners):
        for name, (plan, _) in list(table.items()):
            table[name] = (plan, free_port())
    run.start()
    for _ in range(args.runner_processes - 1):
        await asyncio.to_thread(run.add_runner_process, "e2e")
    results: dict[str, Any] = {"runner_processes": args.runner_processes, "gateway_processes": args.gateway_processes}
    roles = {
        "gateway": [
            pid for k, p in run.procs.items() if k.startswith("gateway-") for pid in with_gateway_processes(p.pid)
        ],
        "runner": [p.pid for k, p in run.procs.items() if k.startswith("runner-")],
        "nats": [server.proc.pid] if server.proc else [],
        "erp": [sandbox.pid],
    }

    url = urllib.parse.urlsplit(run.gateway_url("src"))
    host, port, path = url.hostname or "127.0.0.1", url.port or 80, url.path

    async def level(rate: float, seconds: float) -> dict[str, Any]:
        before = cpu_by_role(roles)
        # Up to --connections keep-alive connections (one gateway process serves 512 at most).
        sender = RawSender(host, port, limit=args.connections)
        offered = await offer(sender, path, rate, seconds)
        sender.close()
        row = await settle(erp, offered, args.stall, args.drain_max)
        # CPU per settled record by process, load and drain included: what a node must provide.
        after, settled = cpu_by_role(roles), max(row["accepted"] - row["lost"], 1)
        row["cpu_ms_per_record"] = {role: round((after[role] - before[role]) * 1e3 / settled, 3) for role in after}
        # The product's share (what a node must provide) and the bench's (what sends and receives).
        spent = row["cpu_ms_per_record"]
        spent["product"] = round(spent["gateway"] + spent["runner"] + spent["nats"], 3)
        spent["bench"] = round(spent["erp"] + spent["senders"], 3)
        print(json.dumps(row), file=sys.stderr, flush=True)
        return row

    try:
        if args.warmup > 0:  # connections, CEL compiled, caches warm: not part of any level
            sender = RawSender(host, port, limit=args.connections)
            await settle(erp, await offer(sender, path, args.start_rate, args.warmup), 5, 60)
            sender.close()
        levels: list[dict[str, Any]] = []
        rate = args.start_rate
        while rate <= args.max_rate:
            row = await level(rate, args.seconds)
            best = max((r["erp_effects_per_s"] for r in levels), default=0.0)
            levels.append(row)
            if row["erp_effects_per_s"] < best * 1.05 and row["erp_effects_per_s"] < 0.9 * rate:
                break  # effects/s stopped rising: the level before was (about) the capacity
            rate += args.step
        capacity = max(r["erp_effects_per_s"] for r in levels)
        results["capacity"] = {"erp_effects_per_s": capacity, "levels": levels}
        for share in (0.5, 0.8):
            results[f"at_{int(share * 100)}pct_of_capacity"] = await level(
                round(capacity * share), args.latency_seconds
            )
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
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per capacity level")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="seconds per latency level")
    parser.add_argument("--start-rate", type=float, default=250.0)
    parser.add_argument("--step", type=float, default=250.0)
    parser.add_argument("--max-rate", type=float, default=6000.0)
    parser.add_argument("--stall", type=float, default=20.0, help="drain ends after this long without a new effect")
    parser.add_argument("--drain-max", type=float, default=600.0)
    parser.add_argument("--runner-processes", type=int, default=1)
    parser.add_argument("--gateway-processes", type=int, default=1, help="processes of the gateway on its port")
    parser.add_argument("--connections", type=int, default=512, help="sender connections at most")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at --start-rate before the levels")
    args = parser.parse_args()
    from onceflow_runner.main import run_loop

    result = run_loop(main(args))
    print(f"# open loop, {args.seconds:.0f}s per capacity level, loop {loop_name()}, {env_note()}")
    for key, value in result.items():
        print(f"{key:28s} {value}")
    print(json.dumps(result))
