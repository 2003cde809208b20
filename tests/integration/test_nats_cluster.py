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

import httpx

from onceflow_runner.contract.subjects import DLQ_STREAM, IN_STREAM
from tests.integration.nats_cluster import NatsCluster
from tests.integration.scenario import new_namespace, signed_post
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
