"""A three-node NATS cluster under the data plane: leader loss and quorum loss (issue #12 item 3).

The gateway and runner are the real processes (`onceflow gateway`, `onceflow runner`) given every
node's URL; streams and the namespace's key bucket have three replicas. With two of three nodes
down nothing can be stored, so every webhook must get 503 with Retry-After (never a 2xx for a
record JetStream did not keep) within a bounded time; when the nodes come back, the same gateway
and runner processes, never restarted, accept and settle again by themselves.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from onceflow_runner.contract.subjects import DLQ_STREAM, IN_STREAM
from onceflow_runner.gateway.server import Gateway
from tests.integration.gateway_harness import SECRET as GATEWAY_SECRET
from tests.integration.gateway_harness import gateway_plan, signed_headers
from tests.integration.nats_cluster import NatsCluster
from tests.integration.scenario import eventually, new_namespace, signed_post
from tests.integration.test_delivery_faults import SECRET, SIG, Harness, start, stop

#: The longest a gateway may take to answer while the cluster has no quorum: its 5 s publish
#: timeout and a little. A sender's own timeout is usually 10 to 30 s.
ANSWER_WITHIN = 8.0


async def post_once(h: Harness, key: str) -> httpx.Response:
    """One signed webhook for `key` (delivery id = key), no retry."""
    body = json.dumps({"key": key, "name": f"Customer {key}"}).encode()
    return await signed_post(h.client, h.run.gateway_url("src"), "hmac", SECRET, body, key, **SIG)


async def test_stream_leader_killed_a_new_one_is_elected_and_the_old_one_catches_up(
    nats_cluster: NatsCluster,
) -> None:
    await nats_cluster.provision()
    leader = await nats_cluster.wait_for_leader(IN_STREAM)
    nats_cluster.kill(leader)
    successor = await nats_cluster.wait_for_leader(IN_STREAM, other_than=leader)
    assert successor != leader
    nats_cluster.restart(leader)
    await nats_cluster.wait_until_current([IN_STREAM])


async def test_quorum_lost_gateway_answers_503_never_2xx_and_both_recover_by_themselves(
    nats_cluster: NatsCluster,
) -> None:
    namespace = new_namespace()
    await nats_cluster.provision(namespace)
    # Deliveries that outlast an election (about 5 s): a record that meets a stream or its key
    # bucket still electing is retried, not dead-lettered. (The defaults, 1s/10s/1m and 5
    # deliveries, outlast it by far; the ledger tests' 100 ms backoffs do not.)
    h = await start(nats_cluster, namespace=namespace, max_deliver=10, backoff=["200ms", "1s", "2s"])  # type: ignore[arg-type]
    gateway, runner = h.run.procs["gateway-src"], h.run.procs["runner-ledger"]
    try:
        # The gateway and runner starting (each ensures the streams) left them at three replicas.
        assert {s: await nats_cluster.replicas(s) for s in (IN_STREAM, DLQ_STREAM)} == {IN_STREAM: 3, DLQ_STREAM: 3}
        await h.send_many([f"before{i}" for i in range(20)])
        await h.settled(20)

        leader = await nats_cluster.wait_for_leader(IN_STREAM)
        down = [leader, next(n.name for n in nats_cluster.nodes if n.name != leader)]
        for name in down:
            nats_cluster.kill(name)

        answers: list[tuple[int, str | None, float]] = []
        for i in range(6):
            began = time.monotonic()
            try:
                resp = await asyncio.wait_for(post_once(h, f"during{i}"), ANSWER_WITHIN)
                answers.append((resp.status_code, resp.headers.get("Retry-After"), time.monotonic() - began))
            except httpx.TransportError:
                answers.append((0, None, time.monotonic() - began))  # no answer is a retry for a sender too
        print("answers without quorum (status, Retry-After, seconds):", answers)
        assert all(status == 503 for status, _, _ in answers), answers
        assert all(retry for _, retry, _ in answers), f"every 503 says when to retry: {answers}"

        for name in down:
            nats_cluster.restart(name)
        # No restart of the gateway or runner: the same processes take records again.
        await h.send_many([f"during{i}" for i in range(6)] + [f"after{i}" for i in range(20)], concurrency=4)
        await nats_cluster.wait_until_current()  # every stream led again, so the books can be read
        ledger = await h.settled(46, within=120)
        parked = [
            (m.headers.get("Onceflow-Reason"), m.headers.get("Onceflow-Error"))
            for m in ledger.exceptions + ledger.dead_letters
        ]
        assert set(ledger.effects) == h.accepted, (sorted(set(ledger.effects) ^ h.accepted), parked)
        assert gateway.poll() is None, "the gateway process was never restarted"
        assert h.run.procs["gateway-src"] is gateway
        assert runner.poll() is None, "the runner process was never restarted"
        assert h.run.procs["runner-ledger"] is runner
    finally:
        await stop(h)


async def test_a_gateway_started_without_quorum_waits_not_ready_and_accepts_once_quorum_returns(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    namespace = new_namespace()
    await nats_cluster.provision()
    # The survivor must be a follower of the intake stream: a stream leader left alone keeps its
    # leadership and answers stream info (nats-server 2.15 was seen doing so for 90 s), so a
    # gateway starting then binds, is ready, and answers 503 per webhook instead (the test above).
    leader = await nats_cluster.wait_for_leader(IN_STREAM)
    follower = next(node.name for node in nats_cluster.nodes if node.name != leader)
    for name in (leader, follower):
        nats_cluster.kill(name)
    await nats_cluster.wait_until_unavailable()  # the survivor noticed: a start now cannot bind
    (tmp_path / "sig").mkdir()
    (tmp_path / "sig" / "secret").write_text(GATEWAY_SECRET)
    gateway = Gateway(gateway_plan(namespace), nats_url=nats_cluster.url, secrets_dir=tmp_path)
    starting = asyncio.create_task(gateway.start())
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def readiness() -> str | None:
                if not gateway.metrics_port:
                    return None
                resp = await client.get(f"{gateway.operations_url}/readyz")
                return f"{resp.status_code} {resp.text}"

            # Alive and saying why it is not ready, while it waits for JetStream (not exited).
            assert await eventually(readiness, within=30) == "503 webhook listener not started"
            assert (await client.get(f"{gateway.operations_url}/healthz")).status_code == 200
            assert not starting.done()

            for name in (leader, follower):
                nats_cluster.restart(name)
            await asyncio.wait_for(starting, 90)
            assert await readiness() == "200 ready"
            body = b'{"id": "after-quorum"}'
            resp = await client.post(gateway.url, content=body, headers=signed_headers(body, "after-quorum"))
            assert resp.status_code == 202, resp.text
    finally:
        if not starting.done():
            starting.cancel()
        await gateway.stop()
