"""The runner's pull loop and its puller against a real nats-server: when it fetches, how much, split markers.

Why: with records in flight the loop fetches again only once a quarter of the plan's concurrency
is free (`process.REFILL_SHARE`), so a busy runner fetches in batches instead of one record per
freed slot. That must not delay a record that arrives while the runner has room, and the split
marker is still read after each fetch, so a marker stored between two fetches decides the lane of
every record after it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from onceflow_operator.clients.topology import ensure_plan
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.pulls import Puller
from onceflow_runner.contract.plan import PLAN_VERSION, Plan
from onceflow_runner.runner import Runner
from tests.integration.scenario import eventually


class Target:
    """An HTTP target on 127.0.0.1 that holds a request whose body says `hold` until released."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.held = 0
        self.release = asyncio.Event()
        self.jitter = 0.0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            if body.get("hold"):
                self.held += 1
                await self.release.wait()
            elif self.jitter:
                await asyncio.sleep(random.uniform(0, self.jitter))  # a target of uneven speed
            self.bodies.append(body)
            return web.json_response({"ok": True}, status=201)

        app = web.Application()
        app.router.add_post("/records", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


def _plan(namespace: str, target: str, concurrency: int) -> Plan:
    base = f"onceflow.{namespace}"
    return Plan.model_validate(
        {
            "planVersion": PLAN_VERSION,
            "namespace": namespace,
            "integration": "pull",
            "revision": "pull-1",
            "source": "src",
            "business_key": "'k/' + input.key",
            "concurrency": concurrency,
            "connectors": {"t": {"name": "t", "base_url": target, "requests_per_second": 1e6, "burst": 100000}},
            "steps": [
                {
                    "name": "send",
                    "kind": "call",
                    "request": {"connector": "t", "method": "POST", "path": '"/records"', "body": "input"},
                }
            ],
            "nats": {
                "stream": "ONCEFLOW_IN",
                "subject": f"{base}.in.src.pull",
                "consumer": f"{namespace}_pull",
                "exceptions_subject": f"{base}.exceptions.pull",
                "dlq_subject": f"{base}.dlq.pull",
                "audit_subject": f"{base}.audit.pull",
                "events_prefix": f"{base}.events",
                "stats_subject": f"{base}.stats.pull",
                "decisions_subject": f"{base}.decisions.pull",
                "kv_bucket": f"onceflow-keys-{namespace}",
            },
        }
    )


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    found = Target()
    await found.start()
    yield found
    await found.stop()


async def _runner(nats_server: NatsServer, nc: Client, target: Target, tmp_path: Path, concurrency: int) -> Runner:
    plan = _plan(f"pl{uuid.uuid4().hex[:8]}", target.url, concurrency)
    await ensure_plan(nc.jetstream(), plan)  # the operator's part
    runner = Runner(plan, nats_url=nats_server.url, secrets_dir=tmp_path, heartbeat_seconds=60)
    await runner.start()
    return runner


async def _send(nc: Client, runner: Runner, keys: list[str], **fields: object) -> None:
    js = nc.jetstream()
    for key in keys:
        await js.publish(runner.plan.nats.subject, json.dumps({"key": key, **fields}).encode())


def _count(runner: Runner, name: str) -> float:
    labels = {"integration": runner.plan.integration, "revision": runner.plan.revision}
    return runner.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_lone_record_settles_at_once_at_an_idle_runner_and_beside_records_in_flight(
    nats_server: NatsServer, nc: Client, target: Target, tmp_path: Path
) -> None:
    runner = await _runner(nats_server, nc, target, tmp_path, concurrency=8)  # fetches again at 2 free
    try:
        await _send(nc, runner, ["first"])
        await eventually(lambda: len(target.bodies) == 1)
        await _send(nc, runner, [f"held-{i}" for i in range(5)], hold=True)
        await eventually(lambda: target.held == 5)
        await _send(nc, runner, ["beside"])
        # Five in flight, three slots free (over the refill threshold): fetched and settled while
        # the five are still held, not after them.
        await eventually(lambda: len(target.bodies) == 2)
        assert [b["key"] for b in target.bodies] == ["first", "beside"]
        assert target.held == 5
        assert not target.release.is_set()
        target.release.set()
        await eventually(lambda: _count(runner, "onceflow_runner_processed_total") == 7)
    finally:
        await runner.stop()
    assert len({str(b["key"]) for b in target.bodies}) == len(target.bodies) == 7


async def test_a_busy_runner_refills_in_batches_and_settles_every_record_once(
    nats_server: NatsServer, nc: Client, target: Target, tmp_path: Path
) -> None:
    target.jitter = 0.2  # calls finish one by one, so a per-slot refill would fetch one record at a time
    runner = await _runner(nats_server, nc, target, tmp_path, concurrency=16)  # fetches again at 4 free
    keys = [f"r{i}" for i in range(240)]
    try:
        await _send(nc, runner, keys)
        await eventually(lambda: _count(runner, "onceflow_runner_processed_total") == len(keys))
    finally:
        await runner.stop()
    assert sorted(str(b["key"]) for b in target.bodies) == sorted(keys)  # each once
    assert runner.fetched == len(keys)
    # Fetches at the start (records still arriving) and at the tail bring fewer than 4; refilled per
    # freed slot, the same run took about three times as many fetches.
    assert runner.refill_at == 4
    assert runner.fetches <= len(keys) // 4 + 8, (runner.fetches, runner.fetched)


async def test_a_split_marker_stored_between_two_fetches_decides_the_lane_of_the_records_after_it(
    nats_server: NatsServer, nc: Client, target: Target, tmp_path: Path
) -> None:
    runner = await _runner(nats_server, nc, target, tmp_path, concurrency=8)
    try:
        await _send(nc, runner, ["a", "b", "c"])
        await eventually(lambda: _count(runner, "onceflow_runner_processed_total") == 3)
        # Everything after this marker belongs to the canary lane: the main lane acks it unprocessed.
        await natsio.publish_split(nc.jetstream(), runner.wiring.rollout_subject, None, 100)
        await _send(nc, runner, ["d", "e", "f"])
        await eventually(lambda: _count(runner, "onceflow_runner_skipped_total") == 4)  # the marker and d, e, f
        assert _count(runner, "onceflow_runner_processed_total") == 3
        assert runner.split is not None
        assert runner.split.weight == 100
    finally:
        await runner.stop()
    assert [b["key"] for b in target.bodies] == ["a", "b", "c"]


# -- The puller itself (adapters/pulls.py): one request per fetch, read where the client parses it --


async def _consumer(nc: Client, **config: Any) -> tuple[str, str]:
    """A stream and durable pull consumer of their own; returns (stream, consumer)."""
    name = f"pulls_{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
    await js.add_consumer(name, ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, **config))
    return name, "c"


async def test_a_fetch_returns_what_is_there_at_once_and_waits_only_when_nothing_is(nc: Client) -> None:
    stream, consumer = await _consumer(nc)
    js = nc.jetstream()
    puller = Puller(js, stream, consumer)
    for i in range(3):
        await js.publish(f"{stream}.r", f"r{i}".encode(), headers={"Onceflow-Event": f"e{i}"})
    started = time.monotonic()
    got = await puller.fetch(10, timeout=5)
    assert [m.data for m in got] == [b"r0", b"r1", b"r2"]
    assert [(m.headers or {}).get("Onceflow-Event") for m in got] == ["e0", "e1", "e2"]
    assert time.monotonic() - started < 2.5  # ended by the server's "no more", not by the 5 s
    assert got[0].metadata.sequence.stream == 1
    for m in got:
        await m.ack()
    assert await puller.fetch(10, timeout=0.3) == []  # nothing there: the request expires
    waiting = asyncio.ensure_future(puller.fetch(10, timeout=5))
    await eventually(lambda: puller._ended is not None)
    await js.publish(f"{stream}.r", b"late")
    started = time.monotonic()
    assert [m.data for m in await waiting] == [b"late"]  # at once, not when the 5 s are up
    assert time.monotonic() - started < 2.5
    await puller.unsubscribe()


async def test_a_record_for_a_request_no_fetch_waits_on_is_kept_for_the_next_fetch(nc: Client) -> None:
    stream, consumer = await _consumer(nc)
    js = nc.jetstream()
    puller = Puller(js, stream, consumer)
    await puller.start()
    # A request the client gave up on while the server still holds it (as after a client timeout).
    orphan = json.dumps({"batch": 1, "expires": 5_000_000_000}).encode()
    await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", orphan, reply=puller._inbox)
    await nc.flush()
    await js.publish(f"{stream}.r", b"kept")
    await eventually(lambda: puller._early)
    assert [m.data for m in await puller.fetch(10, timeout=5)] == [b"kept"]
    await puller.unsubscribe()
