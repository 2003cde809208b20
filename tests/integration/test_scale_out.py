"""Two runner processes on one Integration's durable consumer: each record settled by one of them.

Real gateway and runner processes (as two replicas, or two processes in a pod, run them), a real
nats-server and an ERP that ignores Idempotency-Key, so a record taken by both would show as two
customers. The ledger comes from the ERP's books; the split from each process's own /metrics.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.testing.sandbox import ErpSandbox
from tests.integration.test_delivery_faults import start, stop
from tests.integration.test_exactly_once import FORGETFUL, customer


async def processed(port: int) -> int:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.search(r"^onceflow_runner_processed_total\{[^}]*\} (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


async def test_two_runner_processes_share_the_consumer_and_every_record_has_one_effect(
    nats_server: NatsServer,
) -> None:
    h = await start(nats_server, erp=ErpSandbox(**FORGETFUL))
    try:
        second = await asyncio.to_thread(h.run.add_runner_process, "ledger")
        plain = [f"n{i}" for i in range(300)]
        twins = [f"t{i}" for i in range(20)]  # each sent three times under new delivery ids, at once
        await asyncio.gather(
            h.send_many(plain, concurrency=32),
            *(h.send(k, customer(k), delivery_id=f"{k}-{n}") for k in twins for n in range(3)),
        )
        ledger = await h.settled(len(h.accepted), within=120)  # checks: no key with two effects
        assert sum(ledger.effects.values()) == len(plain) + len(twins)
        assert len(h.erp.docs["Customer"]) == len(plain) + len(twins)
        counts = [await processed(h.run.health_ports[key]) for key in ("runner-ledger", second)]
        assert sum(counts) == len(plain) + len(twins), counts
        assert min(counts) > 0, f"one process took every record: {counts}"
    finally:
        await stop(h)
