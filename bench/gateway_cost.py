"""The gateway alone: signed webhooks in, JetStream PubAcks out, CPU per webhook by process.

Why a bench of its own: end to end (bench/webhook_e2e.py) the gateway's share is mixed with the
runner's, the ERP's and the senders'. Here only `onceflow gateway` processes, a real nats-server
and a lean raw-HTTP sender run: `--connections` keep-alive connections each post their share of
`--webhooks` signed webhooks as fast as the answers come back (closed loop). The figure is the
gateway's CPU milliseconds per accepted webhook (/proc, user + system), and the stream's message
count must equal the accepted count (nothing lost, nothing doubled).

`--processes N` starts N gateway processes on one port (SO_REUSEPORT, `--processes` of
`onceflow gateway`); `--profile FILE` runs one gateway process under cProfile and writes FILE
when it stops (read with `python -m pstats FILE`).
Last line: one JSON object. Run: .venv/bin/python bench/gateway_cost.py [--webhooks 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RawSender, env_note, loop_name, post_request, wait_http

from onceflow_operator.clients.topology import ensure_streams
from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract.plan import PLAN_VERSION, GatewayPlan
from onceflow_runner.contract.subjects import IN_STREAM
from onceflow_runner.gateway.signatures import SignatureConfig, sign

SECRET = "bench-secret"


def plan(namespace: str) -> GatewayPlan:
    return GatewayPlan.model_validate(
        {
            "planVersion": PLAN_VERSION,
            "namespace": namespace,
            "connector": "src",
            "path": "/in",
            "signature": {"scheme": "hmac", "header": "X-Signature", "secret": {"name": "src", "key": "secret"}},
            "subject_prefix": f"onceflow.{namespace}.in.src",
        }
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """The gateway process and the gateway processes it started (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    extra = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [proc.pid, *(p for p in extra if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes())]


async def send_all(port: int, requests: list[bytes], connections: int) -> tuple[int, dict[int, int], float]:
    sender = RawSender("127.0.0.1", port, limit=connections)
    statuses: dict[int, int] = {}
    accepted = 0
    started = time.perf_counter()

    async def lane(share: list[bytes]) -> None:
        nonlocal accepted
        for request in share:
            status = await sender.send(request)
            statuses[status] = statuses.get(status, 0) + 1
            accepted += status == 202

    await asyncio.gather(*(lane(requests[i::connections]) for i in range(connections)))
    elapsed = time.perf_counter() - started
    sender.close()
    return accepted, statuses, elapsed


async def stream_messages(url: str, subject: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(IN_STREAM, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def prepare(url: str) -> None:
    import nats

    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    await nc.close()


def main(args: argparse.Namespace) -> dict[str, Any]:
    server = NatsServer()
    server.start()
    namespace = f"g{uuid.uuid4().hex[:6]}"
    gateway_plan = plan(namespace)
    folder = Path(tempfile.mkdtemp(prefix="onceflow-gwbench-"))
    (folder / "src").mkdir()
    (folder / "src" / "secret").write_text(SECRET)
    (folder / "plan.json").write_text(gateway_plan.to_json())
    asyncio.run(prepare(server.url))
    port, ops = free_port(), free_port()
    argv = [sys.executable, *(["-m", "cProfile", "-o", args.profile] if args.profile else [])]
    argv += ["-m", "onceflow_operator", "gateway", "--plan", str(folder / "plan.json"), "--nats", server.url]
    argv += ["--secrets-dir", str(folder), "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(ops)]
    if args.processes > 1:
        argv += ["--processes", str(args.processes)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{ops}/readyz")
        time.sleep(0.5)  # let every process of the group bind before the first connection
        config = SignatureConfig("hmac", header="X-Signature")

        def requests(tag: str, n: int) -> list[bytes]:
            out = []
            for i in range(n):
                key = f"{tag}-{i}"
                body = json.dumps({"key": key, "company": f"Customer {key}", "tax": f"DE{key}"}).encode()
                out.append(post_request("/in", body, sign(config, SECRET, body, delivery_id=key, timestamp=0)))
            return out

        asyncio.run(send_all(port, requests("warm", 1000), args.connections))
        load = requests(uuid.uuid4().hex[:8], args.webhooks)
        pids = gateway_pids(proc)
        nats_pid = server.proc.pid if server.proc else 0
        before = {pid: cpu_seconds(pid) for pid in [*pids, nats_pid]}
        sender_before = time.process_time()
        accepted, statuses, elapsed = asyncio.run(send_all(port, load, args.connections))
        sender_cpu = time.process_time() - sender_before
        after = {pid: cpu_seconds(pid) for pid in before}
        stored = asyncio.run(stream_messages(server.url, f"{gateway_plan.subject_prefix}.>")) - 1000
        per = max(accepted, 1)
        return {
            "processes": args.processes,
            "connections": args.connections,
            "webhooks": args.webhooks,
            "accepted": accepted,
            "statuses": statuses,
            "stored": stored,
            "webhooks_per_s": round(accepted / elapsed, 1),
            "cpu_ms_per_webhook": {
                "gateway": round(sum(after[p] - before[p] for p in pids) * 1e3 / per, 3),
                "per_gateway_process": [round((after[p] - before[p]) * 1e3 / per, 3) for p in pids],
                "nats": round((after[nats_pid] - before[nats_pid]) * 1e3 / per, 3),
                "sender": round(sender_cpu * 1e3 / per, 3),
            },
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webhooks", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--profile", default="", help="write a cProfile of the gateway process here")
    result = main(parser.parse_args())
    print(f"# gateway alone, loop {loop_name()}, {env_note()}")
    for key, value in result.items():
        print(f"{key:20s} {value}")
    print(json.dumps(result))
