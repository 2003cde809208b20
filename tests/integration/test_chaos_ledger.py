"""The chaos ledger (issue #12 item 3): signed webhooks through gateway -> runner -> sandbox ERP on
a three-node NATS cluster with R3 streams, while everything that can go wrong does.

Faults, each started when a share of the webhooks has been accepted (never on a timer): ERP 503
and 429 storms with Retry-After, a slow ERP, kill -9 of each runner process (and its restart),
the ONCEFLOW_IN stream leader killed with -9 and restarted mid-load; throughout, poison bodies,
duplicates inside JetStream's duplicate window (the same signed body again: the hmac scheme's
delivery id is the body's hash, so JetStream stores it once) and beyond it (the same business
key in a changed body, which JetStream stores again as it would any resend after its window, so
only the runner's key store can keep it to one effect).

The books, from the systems' own records: every key the gateway answered 2xx for has exactly one
outcome (one ERP effect, or one exception, or one dead letter), and nothing else has one: 0 lost,
0 doubled. A non-2xx answer (503, 429, a dropped connection) is a retry for the sender, never an
acceptance. The ERP honours `Idempotency-Key` as the design requires of targets, so an effect
repeated by a redelivery after a kill -9 is one effect; a second outcome of another kind (an
effect and an exception for one key) is still caught here.

`make test` runs 600 webhooks; `make chaos` runs ONCEFLOW_CHAOS_WEBHOOKS (10,000) and writes a
JSON summary to ONCEFLOW_CHAOS_SUMMARY, which docs/benchmarks.md records.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from onceflow_runner.contract import headers as h
from onceflow_runner.contract.subjects import IN_STREAM
from onceflow_runner.testing.sandbox import ErpSandbox, Fault
from tests.integration.nats_cluster import NatsCluster
from tests.integration.scenario import eventually, new_namespace, signed_post
from tests.integration.test_delivery_faults import SECRET, SIG, Harness, start, stop

WEBHOOKS = int(os.environ.get("ONCEFLOW_CHAOS_WEBHOOKS", "600"))
SUMMARY = os.environ.get("ONCEFLOW_CHAOS_SUMMARY", "")
#: Suffix of a record's delivery id when it is sent again as a new delivery (beyond the window).
AGAIN = "~again"


@dataclass
class Sender:
    """Posts webhooks like a real sender: a non-2xx or a dropped connection is retried, never counted."""

    h: Harness
    accepted: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    without_retry_after: int = 0
    posts: int = 0

    async def send(self, key: str, delivery_id: str, body: bytes, *, deadline: float) -> None:
        url = self.h.run.gateway_url("src")
        while True:
            self.posts += 1
            try:
                resp = await signed_post(self.h.client, url, "hmac", SECRET, body, delivery_id, **SIG)
            except httpx.TransportError:
                self.answers["transport error"] += 1
            else:
                self.answers[str(resp.status_code)] += 1
                if 200 <= resp.status_code < 300:
                    self.accepted.add(key)
                    self.h.accepted.add(key)  # the harness's ledger reads its own set
                    return
                assert resp.status_code in (429, 503), f"{key}: {resp.status_code} {resp.text}"
                if "Retry-After" not in resp.headers:
                    self.without_retry_after += 1
            assert time.monotonic() < deadline, f"record {key} never accepted"
            await asyncio.sleep(0.1)


def outcome_key(msg: Any) -> str:
    """The sender's key of a parked record: the delivery id it claimed, less a resend's suffix."""
    return str(msg.headers.get(h.SENDER_DELIVERY_ID, "")).removesuffix(AGAIN)


async def test_chaos_ledger_on_a_three_node_cluster_loses_and_doubles_nothing(nats_cluster: NatsCluster) -> None:
    began = time.monotonic()
    rng = random.Random(12)
    namespace = new_namespace()
    await nats_cluster.provision(namespace)
    erp = ErpSandbox()
    # 60 deliveries: a record may meet a storm, a kill and a leader election and still be in time.
    harness = await start(
        nats_cluster, erp=erp, namespace=namespace, max_deliver=60, backoff=["100ms", "200ms", "500ms"]
    )
    second = await asyncio.to_thread(harness.run.add_runner_process, "ledger")
    sender = Sender(harness)
    events: list[dict[str, Any]] = []

    def note(what: str, **detail: Any) -> None:
        events.append({"at": round(time.monotonic() - began, 1), "what": what, **detail})

    # What is sent: every record once, a share of them again (same id, or a new one), and poison.
    records = [f"c{i}" for i in range(WEBHOOKS)]
    poison = [f"poison{i}" for i in range(max(3, WEBHOOKS // 100))]
    again_same = rng.sample(records, WEBHOOKS // 10)
    again_new = rng.sample(records, WEBHOOKS // 10)
    sends: list[tuple[str, str, bytes]] = [
        (key, key, json.dumps({"key": key, "name": f"Customer {key}"}).encode()) for key in records
    ]
    sends += [(key, key, b"{not json " + key.encode()) for key in poison]
    rng.shuffle(sends)
    # Resends go after the first half, so some meet their original in flight and some after it settled.
    resends = [(key, key, json.dumps({"key": key, "name": f"Customer {key}"}).encode()) for key in again_same]
    # The hmac scheme's trusted delivery id is the body's hash: the same body again is a duplicate
    # JetStream drops inside its window; a changed body under the same business key is stored
    # again, as any resend after the window would be, and only the key store can stop it.
    resends += [
        (key, key + AGAIN, json.dumps({"key": key, "name": f"Customer {key}", "resent": True}).encode())
        for key in again_new
    ]
    half = len(sends) // 2
    sends = sends[:half] + rng.sample(sends[half:] + resends, len(sends) - half + len(resends))
    deadline = began + 60 + WEBHOOKS * 0.1

    async def sending() -> None:
        queue = list(reversed(sends))

        async def worker() -> None:
            while queue:
                key, delivery, body = queue.pop()
                await sender.send(key, delivery, body, deadline=deadline)

        await asyncio.gather(*(worker() for _ in range(24)))
        note("all sent", posts=sender.posts)

    async def accepted(share: float) -> None:
        await eventually(lambda: len(sender.accepted) >= share * WEBHOOKS, within=deadline - time.monotonic())

    async def settled(share: float) -> None:
        await eventually(lambda: len(erp.effects) >= share * WEBHOOKS, within=deadline - time.monotonic())

    async def erp_faults() -> None:
        await settled(0.1)
        erp.faults += [
            Fault(status=503, times=WEBHOOKS // 10, retry_after=0.2),
            Fault(status=429, times=WEBHOOKS // 10, retry_after=0.2),
        ]
        note("ERP 503 and 429 storm", refusals=2 * (WEBHOOKS // 10))
        await settled(0.2)
        erp.faults.append(Fault(status=200, times=WEBHOOKS // 10, delay_seconds=0.3))
        note("slow ERP", calls=WEBHOOKS // 10, seconds=0.3)
        await settled(0.8)
        erp.faults.append(Fault(status=503, times=WEBHOOKS // 20, retry_after=0.5))
        note("second ERP 503 storm", refusals=WEBHOOKS // 20)

    async def runner_kills() -> None:
        await settled(0.3)
        note("kill -9 runner-ledger")
        await asyncio.to_thread(harness.run.restart, "runner-ledger", kill=True)
        note("runner-ledger restarted")
        await settled(0.6)
        # A process added beside the first has no plan entry of its own: kill it and add one again.
        proc = harness.run.procs[second]
        proc.kill()
        note(f"kill -9 {second}")
        await asyncio.to_thread(proc.wait)
        again = await asyncio.to_thread(harness.run.add_runner_process, "ledger")
        note(f"{again} started in its place")

    async def leader_kill() -> None:
        await accepted(0.4)
        leader = await nats_cluster.wait_for_leader(IN_STREAM)
        nats_cluster.kill(leader)
        killed = time.monotonic()
        note("kill -9 stream leader", node=leader)
        successor = await nats_cluster.wait_for_leader(IN_STREAM, other_than=leader)
        note("new stream leader", node=successor, seconds=round(time.monotonic() - killed, 1))
        await accepted(0.6)
        nats_cluster.restart(leader)
        note("old leader restarted", node=leader)
        await nats_cluster.wait_until_current([IN_STREAM])
        note("old leader caught up", node=leader)

    try:
        await asyncio.gather(sending(), erp_faults(), runner_kills(), leader_kill())
        await nats_cluster.wait_until_current()  # every stream led again, so the books can be read
        expected = len(sender.accepted)
        ledger = await harness.settled(expected, within=max(120.0, deadline - time.monotonic()))
        seconds = round(time.monotonic() - began, 1)

        outcomes: Counter[str] = Counter(ledger.effects)
        outcomes.update(outcome_key(m) for m in ledger.exceptions + ledger.dead_letters)
        lost = sorted(sender.accepted - set(outcomes))
        doubled = sorted(k for k, n in outcomes.items() if n > 1)
        unasked = sorted(set(outcomes) - sender.accepted)
        summary = {
            "webhooks": WEBHOOKS,
            "poison": len(poison),
            "duplicatesInsideWindow": len(again_same),
            "duplicatesBeyondWindow": len(again_new),
            "posts": sender.posts,
            "answers": dict(sender.answers),
            "non2xxWithoutRetryAfter": sender.without_retry_after,
            "accepted": len(sender.accepted),
            "effects": len(ledger.effects),
            "exceptions": len(ledger.exceptions),
            "deadLetters": len(ledger.dead_letters),
            "lost": len(lost),
            "doubled": len(doubled),
            "outcomesNotAccepted": len(unasked),
            "erpRequests": erp.requests,
            "seconds": seconds,
            "faults": events,
        }
        print(json.dumps(summary))
        if SUMMARY:
            await asyncio.to_thread(Path(SUMMARY).write_text, json.dumps(summary, indent=2) + "\n")

        assert lost == [], f"lost: {lost[:20]}"
        assert doubled == [], f"doubled: {doubled[:20]}"
        assert unasked == [], f"an outcome for a record never accepted: {unasked[:20]}"
        assert len(sender.accepted) == WEBHOOKS + len(poison)
        assert {m.headers[h.REASON] for m in ledger.exceptions} <= {"MalformedInput"}, [
            (m.headers[h.REASON], m.headers.get(h.ERROR)) for m in ledger.exceptions
        ]
        assert sorted(outcome_key(m) for m in ledger.exceptions) == sorted(poison)
        assert sender.without_retry_after == 0
        assert {e["what"] for e in events} >= {"kill -9 stream leader", "kill -9 runner-ledger", "old leader caught up"}
    finally:
        await stop(harness)
